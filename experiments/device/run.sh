#!/usr/bin/env bash
# The GPU plan on one lent GPU machine: the next pending stages of plan.yaml within a budget,
# everything they produce packed into $OUT (at most 8 files: results.tgz with the stage
# records and rendered table, the ResNet-20 checkpoints with .sha256/.cmd (returned, not committed), plan.log).
#   OUT=/tmp/out BUDGET=520 LANES=3 bash experiments/device/run.sh --budget-scale 0.5
# (RESULTS=<folder> writes and packs another results folder; other options go to plan.py)
# Rehearse first on the CPU: python experiments/device/plan.py --smoke
# Needs the CIFAR-10 archive at $ARCHIVE (default .device/cifar10-jpeg.tar.gz, a git-ignored
# copy of ../shared/data/cifar10-jpeg.tar.gz) unless data/cifar10 exists. Pure-Python
# packages missing on the machine (hydra-core, omegaconf, antlr4, smp, timm) can travel in
# .devpkgs/ (experiments/device/pack_devpkgs.sh makes it).
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
OUT=${OUT:-/tmp/adacal_out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-520}; LANES=${LANES:-2}; PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
[ -d .devpkgs ] && export PYTHONPATH=$PWD/.devpkgs:$PYTHONPATH
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
RESULTS=${RESULTS:-experiments/results/cifar_classification}  # where plan.py writes and pack reads
log() { echo "[run.sh $(date +%H:%M:%S)] $*" | tee -a "$OUT/plan.log"; }
pack() {
  mkdir -p "$RESULTS"
  tar czf "$OUT/.results.tgz" --exclude='.work' -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")" \
    && mv "$OUT/.results.tgz" "$OUT/results.tgz"
  for f in checkpoints/cifar10_resnet20_wide.pt checkpoints/cifar100_resnet20_wide.pt; do
    [ -f "$f" ] && cp "$f" "$f.sha256" "$f.cmd" "$OUT/" 2>/dev/null
  done
  return 0
}

log "start on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU')"
mkdir -p data
[ -d data/cifar10 ] || tar -xzf "${ARCHIVE:-.device/cifar10-jpeg.tar.gz}" -C data/
$PY - <<'PY' 2>&1 | tee -a "$OUT/plan.log"
import time, torch
from adacal.data.cifar import CIFARDataModule
start = time.perf_counter()
dm = CIFARDataModule(root="data/cifar10", device_loader=True, batch_size=512)
dm.setup()
print(f"cache {time.perf_counter() - start:.1f}s; torch {torch.__version__}")
if torch.cuda.is_available():  # pre-flight: one augmented batch on the GPU
    from adacal.data.batch_augment import BatchAugment
    from adacal.data.device_loader import DeviceBatches
    x, y = dm.train_set.images, dm.train_set.labels
    aug = BatchAugment(dm.mean, dm.std, crop_padding=4, flip=True, cutout=8)
    b = next(iter(DeviceBatches(x, y, 512, aug, device="cuda")))
    print("pre-flight batch", tuple(b[0].shape), b[0].device, float(b[0].mean()))
import adacal.pipeline  # noqa: every stage imports it; fail here, once, if a package is missing
PY
( while true; do sleep 30; pack; done ) & PACKER=$!
LEFT=$(( BUDGET - ($(date +%s) - START) ))
log "plan with budget ${LEFT}s, $LANES lanes"
$PY experiments/device/plan.py --results "$RESULTS" --budget "$LEFT" --lanes "$LANES" "$@" 2>&1 \
  | tee -a "$OUT/plan.log"
RC=${PIPESTATUS[0]}
kill $PACKER 2>/dev/null; pack
timeout 40 $PY benchmarks/data_path.py --batches 20 --workers 6 2>&1 | tail -5 | tee -a "$OUT/plan.log"
if [ "${SIMBENCH:-0}" -gt 0 ]; then  # seconds for the neuron-loop benchmark on the GPU (fp32, bf16)
  for dtype in fp32 bf16; do
    timeout $(( SIMBENCH / 2 )) $PY benchmarks/simulation_speed.py --device cuda --dtype $dtype \
      --clock wall --models resnet20 vgg16 --neuron if burst --variants fused eager --repeats 3 \
      2>&1 | grep '^|' | tee -a "$OUT/plan.log"
  done
fi
cp "$RESULTS/plan_status.json" "$OUT/" 2>/dev/null
log "done (plan exit $RC) after $(( $(date +%s) - START ))s"
exit $RC
