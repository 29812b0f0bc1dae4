#!/usr/bin/env bash
# One-time set-up of .venv/ for micronet_mm. Idempotent: a second run with nothing changed
# returns in a few seconds (it checks that the fused Shift-Max operator is built).
#
#   bash tools/setup_env.sh            # build or update .venv/
#   bash tools/setup_env.sh --rebuild  # delete .venv/ and start over
#
# The environment counts as good only when .venv/.micronet_mm-ready holds the hash of the
# requirement files and of this script. The marker is removed before any install step and
# written after the last one, so an interrupted or failed run is never mistaken for a good one:
# the next run simply carries on from where it stopped.
#
# Each step says which problem of the OpenMMLab packages (mmcv from source, pinned versions)
# it works around.
# Environment variables:
#   PYTHON             interpreter for the venv (default: python3.11, else python3)
#   MICRONET_CACHE     where the built mmcv wheel and the fused Shift-Max operator are cached
#                      (default: ~/.cache/micronet_mm)
#   TORCH_CUDA_ARCH_LIST  GPU architectures mmcv's CUDA ops are built for (default: those of the
#                      GPUs that nvidia-smi lists)
#
# On a machine with an NVIDIA GPU (nvidia-smi lists one) and a CUDA toolkit (nvcc on PATH, in
# $CUDA_HOME/bin or /usr/local/cuda/bin), mmcv is built with its CUDA ops (mmdet's FocalLoss,
# RoIAlign and NMS on GPU tensors need them) and cached under a key that names the CUDA version
# and the architectures; without a GPU, exactly as before (CPU ops, the same cache key). One line
# says which was built.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
MARKER="$VENV/.micronet_mm-ready"
CACHE="${MICRONET_CACHE:-$HOME/.cache/micronet_mm}"
LOG_DIR="$CACHE/logs"
PY_BOOT="${PYTHON:-$(command -v python3.11 || command -v python3)}"
MMCV_VERSION=2.1.0
TORCH_VERSION=2.14.1

if [[ "${1:-}" == "--rebuild" ]]; then
  echo "[setup] --rebuild: removing $VENV"
  rm -rf "$VENV"
fi

# GPU and CUDA toolkit, found once: MMCV_CUDA is empty on a CPU-only machine (or a GPU machine
# without a toolkit), else "<cuda version>-sm<archs>", part of the mmcv wheel's cache key.
GPU_NAME=""
if command -v nvidia-smi >/dev/null 2>&1; then
  GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || true)"
fi
NVCC=""
for candidate in "$(command -v nvcc 2>/dev/null || true)" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" \
    /usr/local/cuda/bin/nvcc; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then NVCC="$candidate"; break; fi
done
MMCV_CUDA=""
if [[ -n "$GPU_NAME" && -n "$NVCC" ]]; then
  CUDA_VERSION="$("$NVCC" --version | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p')"
  if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
    TORCH_CUDA_ARCH_LIST="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
      | sort -u | paste -sd';' || true)"
  fi
  MMCV_CUDA="cuda$CUDA_VERSION-sm${TORCH_CUDA_ARCH_LIST//[;. ]/}"
fi

# The hash covers every file that decides what goes into the venv (and, on a GPU machine, the
# CUDA flavour of mmcv, so that a venv built without it is rebuilt).
want_hash="$( { cat "$ROOT"/requirements.txt "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" \
  "$ROOT/pyproject.toml"; if [[ -n "$MMCV_CUDA" ]]; then echo "$MMCV_CUDA"; fi; } \
  | sha256sum | cut -d' ' -f1)"
# The fused Dynamic Shift-Max operator (micronet_mm/csrc): built once per (sources, torch,
# python) into $CACHE/ops/ (about 20 s on 2 cores), found there afterwards; one line either way.
# Its sources are not in the hash above, so a changed kernel is rebuilt without redoing the rest.
build_fused_op() {  # build_fused_op LOG: compiler output goes to LOG
  local line
  line="$(MICRONET_CACHE="$CACHE" "$VENV/bin/python" -m micronet_mm.csrc.build 2>>"$1")" || return 1
  echo "[setup] $line"
}
# The OpenVINO extension (micronet::ShiftMax, micronet_mm/csrc/openvino: the same kernel header)
# is compiled with cmake and g++ against the openvino wheel's headers and CMake config (about
# 15 s), cached in $CACHE/openvino/ per (sources, flags, openvino version); one line either way,
# also on the fast path.
build_openvino_ext() {  # build_openvino_ext LOG
  local line
  command -v cmake >/dev/null || apt-get install -y cmake >>"$1" 2>&1 \
    || { apt-get update >>"$1" 2>&1 && apt-get install -y cmake >>"$1" 2>&1; } || return 1
  line="$(MICRONET_CACHE="$CACHE" "$VENV/bin/python" -m micronet_mm.runtime.openvino 2>>"$1")" \
    || return 1
  echo "[setup] $line"
}
if [[ -x "$VENV/bin/python" && -f "$MARKER" && "$(cat "$MARKER")" == "$want_hash" ]]; then
  mkdir -p "$LOG_DIR"
  op_log="$LOG_DIR/build-fused-op.log"
  build_fused_op "$op_log" || {
    echo "[setup] FAILED building the fused Shift-Max operator. Log: $op_log" >&2
    tail -n 25 "$op_log" >&2
    exit 1
  }
  build_openvino_ext "$op_log" || {
    echo "[setup] FAILED building the OpenVINO extension. Log: $op_log" >&2
    tail -n 25 "$op_log" >&2
    exit 1
  }
  exit 0
fi

mkdir -p "$LOG_DIR"
step="start"
log="$LOG_DIR/setup-$(date +%Y%m%d-%H%M%S).log"
on_error() {
  echo "[setup] FAILED at step '$step'. Full log: $log" >&2
  tail -n 25 "$log" >&2 || true
  echo "[setup] .venv is marked not ready. Fix the cause and rerun: bash tools/setup_env.sh" >&2
  echo "[setup] (to start from scratch: bash tools/setup_env.sh --rebuild)" >&2
}
trap on_error ERR
run() {  # run STEP-NAME CMD...: log a command's output, keep the terminal quiet
  step="$1"; shift
  echo "[setup] $step"
  "$@" >>"$log" 2>&1
}

rm -f "$MARKER"
if [[ ! -x "$VENV/bin/python" ]]; then
  rm -rf "$VENV"
  run "create virtual environment with $PY_BOOT" "$PY_BOOT" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
export PIP_CONSTRAINT="$ROOT/requirements/torch.txt"  # nothing may move torch afterwards

run "build tools (setuptools<81 keeps pkg_resources for mmcv)" "${PIP[@]}" -r "$ROOT/requirements/build.txt"
run "torch $TORCH_VERSION + torchvision (local wheels)" "${PIP[@]}" -r "$ROOT/requirements/torch.txt"

# mmcv: only a source tarball exists. Build once per (mmcv, torch, python[, CUDA]), cache the wheel.
pytag="$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
wheel_dir="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$pytag"
mmcv_check="import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'"
mmcv_env=(MMCV_WITH_OPS=1)
if [[ -n "$MMCV_CUDA" ]]; then
  torch_cuda="$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")')"
  if [[ -z "$torch_cuda" ]]; then
    echo "[setup] GPU found ($GPU_NAME) but torch $TORCH_VERSION is a CPU-only build: mmcv gets CPU ops only; install a CUDA build of torch to train on the GPU" >&2
    MMCV_CUDA=""
  elif [[ "${torch_cuda%%.*}" != "${CUDA_VERSION%%.*}" ]]; then
    echo "[setup] GPU found ($GPU_NAME) but nvcc is CUDA $CUDA_VERSION and torch is built with CUDA $torch_cuda: install the CUDA $torch_cuda toolkit (or set CUDA_HOME to it) and rerun" >&2
    exit 2
  else
    wheel_dir="$wheel_dir-$MMCV_CUDA"
    mmcv_check="$mmcv_check; from mmcv.ops import get_compiling_cuda_version as v; assert v() != 'not available'"
    mmcv_env=(MMCV_WITH_OPS=1 FORCE_CUDA=1 "CUDA_HOME=$(dirname "$(dirname "$NVCC")")")
    if [[ -n "$TORCH_CUDA_ARCH_LIST" ]]; then
      mmcv_env+=("TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST")
    fi
  fi
fi
if [[ -n "$MMCV_CUDA" ]]; then
  echo "[setup] mmcv: CUDA ops (CUDA $CUDA_VERSION, arch $TORCH_CUDA_ARCH_LIST) for $GPU_NAME"
elif [[ -n "$GPU_NAME" && -z "$NVCC" ]]; then
  torch_cuda="$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "none")')"
  echo "[setup] mmcv: CPU ops only; GPU found ($GPU_NAME) but no CUDA toolkit (nvcc): install the CUDA $torch_cuda toolkit that torch is built with (e.g. apt-get install cuda-toolkit-${torch_cuda//./-}) or set CUDA_HOME to one, then rerun bash tools/setup_env.sh"
else
  echo "[setup] mmcv: CPU ops (no GPU found)"
fi
if ! "$VENV/bin/python" -c "$mmcv_check" >/dev/null 2>&1; then
  if ! compgen -G "$wheel_dir/mmcv-*.whl" >/dev/null; then
    src="$(mktemp -d)"
    run "download mmcv $MMCV_VERSION source" "$VENV/bin/python" -m pip download --no-deps --no-binary :all: \
      -d "$src" "mmcv==$MMCV_VERSION"
    run "unpack mmcv source" tar -xzf "$src"/mmcv-$MMCV_VERSION.tar.gz -C "$src"
    # torch 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/mmcv-$MMCV_VERSION/setup.py"
    grep -q -- '-std=c++20' "$src/mmcv-$MMCV_VERSION/setup.py"
    echo "[setup] (building mmcv with its CPU ops takes about 10 minutes on 2 cores, with CUDA ops longer; it is cached after)"
    run "build mmcv $MMCV_VERSION wheel" env "${mmcv_env[@]}" MAX_JOBS="${MAX_JOBS:-2}" \
      "$VENV/bin/python" -m pip wheel --no-build-isolation --no-deps -w "$src/dist" "$src/mmcv-$MMCV_VERSION"
    mkdir -p "$wheel_dir"
    mv "$src"/dist/mmcv-*.whl "$wheel_dir/"
    rm -rf "$src"
  fi
  if [[ -n "$MMCV_CUDA" ]]; then  # a CPU-only mmcv of the same version would stay installed
    run "remove the CPU-only mmcv" "$VENV/bin/python" -m pip uninstall -y mmcv
  fi
  run "install cached mmcv wheel" "${PIP[@]}" "$wheel_dir"/mmcv-*.whl
  run "check mmcv ops" "$VENV/bin/python" -c "import mmcv.ops; mmcv.ops.nms; $mmcv_check"
fi

run "chumpy (needs --no-build-isolation)" "${PIP[@]}" --no-build-isolation chumpy==0.70
run "xtcocotools (rebuilt from source against numpy 2)" "${PIP[@]}" --no-build-isolation \
  --no-binary xtcocotools xtcocotools==1.14.3
run "OpenMMLab toolboxes and test tools" "${PIP[@]}" -r "$ROOT/requirements.txt"
run "micronet_mm (editable)" "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
step="fused Shift-Max operator"
build_fused_op "$log"
step="OpenVINO extension"
build_openvino_ext "$log"
run "import check" "$VENV/bin/python" -c \
  "import torch, mmcv.ops, mmdet, mmpose, mmseg, mmpretrain, xtcocotools.coco, micronet_mm; \
assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"

echo "$want_hash" >"$MARKER"
trap - ERR
echo "[setup] .venv is ready"
