#!/usr/bin/env bash
# The main job on the embedded demo data: set up .venv/ (idempotent), write the demo data,
# train RetinaNet-MicroNet-M3 on it (configs/det/retinanet_micronet_m3_demo-shapes.py),
# evaluate the final checkpoint on the held-out split with tools/test.py (mmdet CocoMetric),
# draw the predictions as PNG, export the detector to ONNX (end to end, with its metadata) and
# print the exported model's mAP next to PyTorch's (tools/deployment/test_exported.py).
#   bash tools/run_demo.sh        # detection (the main job)
#   bash tools/run_demo.sh cls    # classification demo (MicroNet-M0 on demo shapes)
# Each run trains into a fresh folder work_dirs/demo-det/<timestamp>/ (demo-shapes/ for cls):
# tools/train.py refuses a work dir that already holds checkpoints, and a second run must not
# overwrite the first one's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
PY=.venv/bin/python
$PY tools/data/make_demo_data.py
STAMP="$(date +%Y%m%d_%H%M%S)"
if [[ "${1:-det}" == "cls" ]]; then
  CFG=configs/pretrain/micronet-m0_1xb32_demo-shapes.py
  WORK="work_dirs/demo-shapes/$STAMP"
  $PY tools/train.py "$CFG" --work-dir "$WORK"
  $PY tools/test.py "$CFG" "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK"
else
  CFG=configs/det/retinanet_micronet_m3_demo-shapes.py
  WORK="work_dirs/demo-det/$STAMP"
  $PY tools/train.py "$CFG" --work-dir "$WORK"
  CKPT="$(cat "$WORK/last_checkpoint")"
  $PY tools/test.py "$CFG" "$CKPT" --work-dir "$WORK" --show-dir "$PWD/$WORK/vis"
  echo "Drawn predictions (ground truth left, prediction right): $WORK/vis/"
  # the deployable file (end to end: boxes, scores, labels) and its mAP next to PyTorch's
  $PY tools/deployment/export_onnx.py "$CFG" "$CKPT" --out "$WORK/detector.onnx"
  $PY tools/deployment/test_exported.py "$CFG" "$WORK/detector.onnx" --checkpoint "$CKPT"
fi
