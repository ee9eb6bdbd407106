#!/usr/bin/env bash
# The segmentation table on CamVid (committed DeepLabV3+ ResNet-18, 144x192), all 233 test
# images, CPU: SNN Calibration baseline (IF + light) vs burst φ=4 vs AdaFire vs AdaFire + SSC,
# T = 4, 8, 16, 32, 64, mIoU, SOPs and energy per image, saving vs the IF baseline.
#
# One run gives both AdaFire rows: it searches φ (2 search images x 27,648 pixels, per-pixel
# symmetric KL), evaluates the network before SSC (compression.compare_uncompressed),
# compresses (SSC on a coarser grid of 9 ratios) and evaluates it again. Two lanes of one
# thread each (a 2-core machine).
#
#   mkdir -p data && tar -xzf ../shared/data/camvid.tar.gz -C data/
#   bash experiments/scripts/camvid_table.sh
set -euo pipefail
OUT=${OUT:-outputs/camvid_deeplabv3plus_resnet18}
PY=${PY:-.venv/bin/python}
COMMON=(experiment=camvid_deeplabv3plus_resnet18 calibration=light
        logger=none progress=false trainer.enable_progress_bar=false)
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
(
  $PY run.py "${COMMON[@]}" neuron=adafire compression=ssc compression.compare_uncompressed=true \
    "compression.ratios=[1.0,1.25,1.5,2.0,2.5,3.0,4.0,6.0,10.0]" \
    snn.compare_baseline=false hydra.run.dir="$OUT/adafire_ssc"
) > "$OUT/lane_a.log" 2>&1 &
(
  $PY run.py "${COMMON[@]}" neuron=if hydra.run.dir="$OUT/if"
  $PY run.py "${COMMON[@]}" neuron=burst neuron.phi=4 snn.compare_baseline=false hydra.run.dir="$OUT/burst"
) > "$OUT/lane_b.log" 2>&1 &
wait
$PY experiments/adaptive_table.py "$OUT"/*/ --T 4 8 16 32 64 | tee "$OUT/table.md"
