#!/usr/bin/env bash
# Re-render every committed table under experiments/results/ from its committed records into a
# scratch folder and compare it with the committed files (Markdown and CSV byte for byte; the
# PNG plots are listed when they differ, since matplotlib output may vary with its version).
# Exit 0 when every table re-renders identical. Used to prove a refactor changes no number:
#     bash experiments/checks/rerender.sh            # scratch: $TMPDIR/adacal-rerender
set -uo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
scratch=${1:-${TMPDIR:-/tmp}/adacal-rerender}
rm -rf "$scratch" && mkdir -p "$scratch"
r=experiments/results
# name | spec | committed output folder | record folders
jobs=(
  "camvid|camvid_local|$r/camvid_deeplabv3plus_resnet18|$r/camvid_deeplabv3plus_resnet18/sweep $r/camvid_deeplabv3plus_resnet18/sweep_burst_T64"
  "cifar10_adaptive|cifar10_local|$r/cifar10_resnet20_adaptive|$r/cifar10_resnet20_adaptive/if $r/cifar10_resnet20_adaptive/burst $r/cifar10_resnet20_adaptive/adafire_T32 $r/cifar10_resnet20_adaptive/adafire_ssc_iat $r/cifar10_resnet20_adaptive/adafire_ssc_iat_T32 $r/cifar10_resnet20_adaptive/extra_adafire_cost_sops"
  "cifar10_sweep|cifar10_local|$r/cifar10_resnet20_adaptive_sweep/tables|$r/cifar10_resnet20_adaptive_sweep"
  "digits_seeds|digits_seeds|$r/digits_seeds/tables|$r/digits_seeds"
  "cifar_classification|cifar_classification|$r/cifar_classification/tables|$r/cifar_classification"
)
status=0
for job in "${jobs[@]}"; do
  IFS='|' read -r name spec committed folders <<<"$job"
  out="$scratch/$name"
  # shellcheck disable=SC2086
  if ! "$py" experiments/render.py "$spec" $folders --out "$out" >"$scratch/$name.log" 2>&1; then
    echo "FAIL $name: render exited non-zero ($(tail -n 1 "$scratch/$name.log"))"; status=1; continue
  fi
  for f in "$out"/"$spec".md "$out"/"$spec".csv; do
    if cmp -s "$f" "$committed/$(basename "$f")"; then
      echo "same $name/$(basename "$f")"
    else
      echo "DIFF $name/$(basename "$f")"; diff "$committed/$(basename "$f")" "$f" | head -20; status=1
    fi
  done
  for f in "$out"/*.png; do
    cmp -s "$f" "$committed/$(basename "$f")" || echo "note $name/$(basename "$f"): plot bytes differ"
  done
done
exit $status
