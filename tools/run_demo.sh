#!/usr/bin/env bash
# The main job on the embedded demo data: set up .venv/ (idempotent), make the demo data,
# train MicroNet-M0 on it with tools/train.py, then evaluate the last checkpoint with
# tools/test.py and print its top-1 accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
PY=.venv/bin/python
WORK=work_dirs/demo-shapes
CFG=configs/pretrain/micronet-m0_1xb32_demo-shapes.py
$PY tools/data/make_demo_data.py
$PY tools/train.py "$CFG" --work-dir "$WORK"
$PY tools/test.py "$CFG" "$WORK/epoch_30.pth" --work-dir "$WORK"
