#!/usr/bin/env bash
# The Adaptive Calibration table on CIFAR-10 (committed thin ResNet-20), T = 2, 4, 8, 16, 32,
# full test set, on the CPU: SNN Calibration baseline (IF + light) vs burst φ=4 vs AdaFire vs
# AdaFire + SSC vs AdaFire + SSC + IAT. The IAT run also evaluates its network without exits,
# which is the AdaFire + SSC row. Two lanes of one thread each (2-core machine).
#
#   mkdir -p data && tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/
#   bash experiments/scripts/cifar10_adaptive_table.sh            # ~1 h on 2 CPU cores
set -euo pipefail
OUT=${OUT:-outputs/adaptive_cifar10_resnet20}
PY=${PY:-.venv/bin/python}
COMMON=(experiment=cifar10_resnet20 calibration=light "snn.T=[2,4,8,16,32]"
        "snn.anytime=[1,2,4,8,16,32]" logger=none progress=false
        trainer.enable_progress_bar=false)
export OMP_NUM_THREADS=1
(
  $PY run.py "${COMMON[@]}" neuron=if hydra.run.dir="$OUT/if"
  $PY run.py "${COMMON[@]}" neuron=burst neuron.phi=4 snn.compare_baseline=false hydra.run.dir="$OUT/burst"
  $PY run.py "${COMMON[@]}" neuron=adafire snn.compare_baseline=false hydra.run.dir="$OUT/adafire"
) > "$OUT.lane_a.log" 2>&1 &
(
  $PY run.py "${COMMON[@]}" neuron=adafire compression=ssc inference=iat snn.compare_baseline=false \
    hydra.run.dir="$OUT/adafire_ssc_iat"
) > "$OUT.lane_b.log" 2>&1 &
wait
$PY experiments/adaptive_table.py "$OUT"/*/ --T 2 4 8 16 32 | tee "$OUT/table.md"
