#!/usr/bin/env bash
# The Adaptive Calibration table on CIFAR-10 (committed thin ResNet-20), full test set, CPU:
# SNN Calibration baseline (IF + light) vs burst φ=4 vs AdaFire vs AdaFire + SSC vs
# AdaFire + SSC + IAT, T = 2, 4, 8, 16, 32.
#
# One run gives the three AdaFire rows: it searches φ, evaluates the network before SSC
# (compression.compare_uncompressed), compresses it, evaluates it with every sample running
# T steps (inference.compare_full) and with IAT exits. Two lanes of one thread each
# (a 2-core machine); about 2 h 30 min in total on 2 cores, most of it T = 32.
#
#   mkdir -p data && tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/
#   bash experiments/scripts/cifar10_adaptive_table.sh
set -euo pipefail
OUT=${OUT:-outputs/adaptive_cifar10_resnet20}
PY=${PY:-.venv/bin/python}
TS=${TS:-"[2,4,8,16,32]"}
COMMON=(experiment=cifar10_resnet20 calibration=light "snn.T=$TS" "snn.anytime=[1,2,4,8,16,32]"
        logger=none progress=false trainer.enable_progress_bar=false)
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
(
  $PY run.py "${COMMON[@]}" neuron=if hydra.run.dir="$OUT/if"
  $PY run.py "${COMMON[@]}" neuron=burst neuron.phi=4 snn.compare_baseline=false hydra.run.dir="$OUT/burst"
) > "$OUT/lane_a.log" 2>&1 &
(
  $PY run.py "${COMMON[@]}" neuron=adafire compression=ssc compression.compare_uncompressed=true \
    inference=iat snn.compare_baseline=false hydra.run.dir="$OUT/adafire_ssc_iat"
) > "$OUT/lane_b.log" 2>&1 &
wait
$PY experiments/render.py cifar10_local "$OUT" --out "$OUT"
