"""``backend='onnxruntime'``: what ``tools/deployment/export_onnx.py --deploy`` exports.

It differs from ``'pytorch'`` where ONNX Runtime's CPU kernels differ, each measured
(docs/deploy.md): grouped 1x1 convolutions stay grouped ``Conv`` (a batched ``MatMul`` was 4% slower);
depthwise pairs without channel multipliers stay kx1 + 1xk (ORT's NCHWc depthwise kernel runs
the two faster than one kxk plus the bias map); merged pairs add a full ``(1, C, H, W)`` bias
map, which ORT adds 2-4x faster than it broadcasts a ``(1, C, 1, W)`` one; and every dynamic
Shift-Max is prescaled so that its hard sigmoid fuses into fc2's ``Gemm``.
"""
from __future__ import annotations

from torch import nn

from ..rewrites.leaves import LeafRules, convert_leaves
from ..rewrites.prescale import prescale_shift_max
from ..rewrites.shuffles import merge_block_permutations

RULES = LeafRules(use_matmul=False, keep_factorized=True, full_map=True)


def convert(module: nn.Module) -> None:
    """Rewrite the MicroNet parts of ``module`` in place for ONNX Runtime."""
    convert_leaves(module, RULES)
    merge_block_permutations(module)
    prescale_shift_max(module)


def head_programs() -> bool:
    """No: ONNX Runtime has no program operator; the head stays two ``Gemm``."""
    return False
