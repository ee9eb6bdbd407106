#!/usr/bin/env bash
# CIFAR-10 baselines on one GPU machine, in one go: train thin ResNet-20 and VGG-16 with the
# project's own command, then the SNN Calibration baseline table of each (4 rows x T=4..64),
# rows run in parallel on the same GPU. Results are tarred into $OUT/results.tgz as they land.
#   OUT=/tmp/out bash experiments/scripts/gpu_cifar10_baselines.sh
# Knobs (environment): R20_EPOCHS, VGG_EPOCHS, TRAINER (gpu|cpu), EXTRA (more overrides), WORKERS.
set -uo pipefail
OUT=${OUT:-/tmp/adacal_out}; mkdir -p "$OUT"
R20_EPOCHS=${R20_EPOCHS:-50}; VGG_EPOCHS=${VGG_EPOCHS:-40}; TRAINER=${TRAINER:-gpu}
WORKERS=${WORKERS:-6}; VGG_PRECISION=${VGG_PRECISION:-bf16-mixed}; EXTRA=${EXTRA:-}; W=${W:-$PWD/gpu_work}; PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} WANDB_MODE=disabled PYTHONUNBUFFERED=1
mkdir -p "$W/runs" "$W/ckpt" data
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/timeline.txt"; }
pack() { tar czf "$OUT/.results.tgz" --exclude='*.ckpt' --exclude='ann.pt' --exclude='*vgg16*.pt' -C "$W" runs ckpt 2>/dev/null \
         && mv "$OUT/.results.tgz" "$OUT/results.tgz"; }
( while true; do sleep 20; pack; done ) & PACKER=$!

log "start; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)"
[ -d data/cifar10 ] || tar -xzf "${ARCHIVE:-.device/cifar10-jpeg.tar.gz}" -C data/
$PY -c "from adacal.data.cifar import CIFARDataModule as D; D(root='data/cifar10').setup()"
log "cache built"

common="trainer=$TRAINER logger=csv trainer.enable_progress_bar=false progress=false dataset.num_workers=$WORKERS $EXTRA"
train() {  # name experiment epochs extra...
  local name=$1 exp=$2 epochs=$3; shift 3
  $PY run.py experiment=$exp $common ann.checkpoint=null stages=[ann] trainer.max_epochs=$epochs \
    ann.export_to=$W/ckpt/$exp.pt hydra.run.dir=$W/runs/train_$name "$@" > "$W/runs/train_$name.log" 2>&1
  local rc=$?
  log "trained $name (rc=$rc): $(ls "$W/ckpt/$exp.pt" 2>&1)"
  return $rc
}
table() {  # name experiment
  local name=$1 exp=$2
  for row in "none max" "light max" "light mse" "advanced mse"; do
    set -- $row
    $PY run.py experiment=$exp $common ann.checkpoint=$W/ckpt/$exp.pt calibration=$1 \
      calibration.threshold.method=$2 hydra.run.dir=$W/runs/${name}_$1_$2 \
      > "$W/runs/${name}_$1_$2.log" 2>&1 &
  done
  wait
  log "table $name done"
}
( train r20 cifar10_resnet20 "$R20_EPOCHS" && table r20 cifar10_resnet20 ) & P1=$!
( train vgg cifar10_vgg16 "$VGG_EPOCHS" trainer.precision=$VGG_PRECISION && table vgg cifar10_vgg16 ) & P2=$!
wait $P1 $P2
kill $PACKER 2>/dev/null; pack
cp "$W/ckpt/cifar10_resnet20.pt"* "$OUT/" 2>/dev/null
log "all done"
