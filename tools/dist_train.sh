#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG GPUS [train.py args]
#
# On GPUs: one process per GPU, NCCL (mmengine's default backend, env_cfg.dist_cfg), e.g.
#   bash tools/dist_train.sh configs/det/retinanet_micronet_m3.py 8
#   CUDA_VISIBLE_DEVICES=0,1,2,3 bash tools/dist_train.sh \
#       configs/seg/micronet-v1-m3-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py 4
# The detection and segmentation configs build their BN layers as SyncBN (norm_cfg), so the
# statistics are those of the whole batch over all GPUs. Mixed precision: --amp. Several nodes:
# NNODES, NODE_RANK, MASTER_ADDR and PORT, as torchrun. docs/gpu.md has the details.
# On a CPU-only machine the processes use the gloo backend (set by the config's env_cfg or
# with --cfg-options env_cfg.dist_cfg.backend=gloo); SyncBN layers then need CUDA tensors, so
# give --cfg-options model.backbone.norm_cfg.type=BN (and the head's) there.
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
