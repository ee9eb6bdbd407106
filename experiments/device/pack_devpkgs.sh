#!/usr/bin/env bash
# Copy the pure-Python packages the project needs and a lent GPU machine lacks (its image has
# torch, lightning, torchmetrics, rich, yaml, ...) from .venv into the git-ignored .devpkgs/,
# to be named in the device tool's carry list and put on PYTHONPATH by run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf .devpkgs && mkdir -p .devpkgs
for p in hydra omegaconf antlr4 segmentation_models_pytorch timm; do
  cp -r "$SITE/$p" .devpkgs/
done
find .devpkgs -name __pycache__ -prune -exec rm -rf {} +
du -sh .devpkgs
