"""The classifier head (:class:`MicroNetClsHead`) in deploy form.

BatchNorm1d is folded into each FC layer and the dropout dropped. With ``programs=True`` (the
``openvino`` backend, and ``pytorch`` where the operators are built: each backend's
``head_programs()``) the head then runs as two native programs
(:mod:`.native_block`, ``POOL`` and ``LINEAR`` layers of ``micronet_mm/csrc/program.h``):
``pool`` = ReLU6 -> pool -> h-swish -> fc1 -> h-swish, ``fc2`` = fc2 -> h-swish, so that
``pre_logits`` still returns fc1's activations. Each FC is one pass over its weight, stored
blocked so that 64 outputs stay in registers while the weight streams contiguously.

Why: at batch 1 the head is two matrix-vector products bound by reading their weights (M2:
768 -> 1024 -> 1000, 1.8M weights, 7.2 MB a call, from L3 since the backbone's weights and
activations pass through the cache in between). On one thread, batch 1:

* OpenVINO 2026.4.1 runs an FC on MLAS (``gemm_mlas_f32``; with an h-swish fused as a post-op
  on oneDNN ``brgemm_avx512_f32``, slower still) at about 45 GB/s; the two programs take about
  half its time (``python tools/analysis/profile_ops.py`` prints OpenVINO's per-node times);
* PyTorch eager: the two programs are faster than the per-layer ``addmm`` form.

Outputs change by float rounding only (float64: 1e-15 relative on M0-M3).
"""
from __future__ import annotations

import torch
from torch import nn

from ..common import fold_bn
from .native_block import HeadPart, NativeProgram


class PlanarLinear(nn.Module):
    """A :class:`NativeProgram` of a :class:`HeadPart` without a pool, on ``(N, C)`` tensors:
    ``(N, C) -> (N, C, 1, 1)``, the program, then flattened to ``(N, C')``."""

    def __init__(self, program: NativeProgram) -> None:
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x[:, :, None, None]).flatten(1)


def convert_cls_head(head: nn.Module, *, programs: bool = False) -> nn.Module:
    """Fold :class:`MicroNetClsHead`'s BatchNorm1d layers into its FC layers, drop the dropout.

    Args:
        head: the trained head; put in eval mode. A head converted before is left as it is.
        programs: also make the head two native programs (module doc): ``pool`` runs ReLU6,
            pool, h-swish, fc1 and its h-swish (``fc1``, ``act1`` become ``nn.Identity``, so
            ``pre_logits`` still returns fc1's activations), ``fc2`` runs fc2 and its h-swish
            (``act2`` becomes ``nn.Identity``).

    Returns:
        ``head``, converted, with no parameter requiring gradients.
    """
    head.eval()
    with torch.no_grad():
        for fc_name, bn_name in (('fc1', 'bn1'), ('fc2', 'bn2')):
            fc, bn = getattr(head, fc_name), getattr(head, bn_name)
            if isinstance(bn, nn.Identity):  # folded before
                continue
            weight, bias = fold_bn(fc.weight, fc.bias, bn)
            fused = nn.Linear(fc.in_features, fc.out_features, device=weight.device,
                              dtype=weight.dtype)
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
            setattr(head, fc_name, fused)
            setattr(head, bn_name, nn.Identity())
        head.dropout = nn.Identity()
        if programs and not isinstance(head.pool, NativeProgram):
            head.pool = NativeProgram(HeadPart(head.pool, [(head.fc1, head.act1)]),
                                      head.fc1.in_features)
            head.fc2 = PlanarLinear(NativeProgram(HeadPart(None, [(head.fc2, head.act2)]),
                                                  head.fc2.in_features))
            head.fc1 = head.act1 = head.act2 = nn.Identity()
    for p in head.parameters():
        p.requires_grad_(False)
    return head
