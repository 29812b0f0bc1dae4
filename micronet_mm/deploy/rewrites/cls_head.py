"""The classifier head (:class:`MicroNetClsHead`) in deploy form.

For OpenVINO (``backend='openvino'``) two more parts get the form that OpenVINO's CPU plugin
runs fastest, both exact up to float rounding:

* the global average pool averages over the flattened spatial positions (:class:`FlatPool`):
  OpenVINO runs ``GlobalAveragePool`` as a ``ReduceMean`` over two axes of the planar tensor the
  last native Shift-Max writes, 0.015 ms for M2's 768x7x7, and a ``ReduceMean`` over the one
  contiguous axis of the ``(N, C, H*W)`` view in 0.006 ms (the pool's h-swish stays fused into
  it);
* the h-swish after each FC layer is rewritten (:class:`ClampHSwish`), so that OpenVINO runs the
  two batch-1 GEMVs with its MLAS kernel instead of oneDNN's brgemm one. Why (OpenVINO 2026.4.1
  sources and profile):

* OpenVINO's common transformations recognise ``x * (relu6(x + 3) / 6)`` (the reference's
  order of operations, :class:`~micronet_mm.ops.shift_max.HSwish`) as one ``HSwish``
  (``HSigmoidFusionWithClampDiv`` then ``HSwishFusionWithHSigmoid``), and the CPU graph
  optimiser fuses that into the FC before it as a post-op
  (``GraphOptimizer::FuseFullyConnectedAndSimpleOperation``).
* A FullyConnected with a post-op cannot take the MLAS implementation
  (``fullyconnected_implementations.cpp``: ``fullyconnected_mlas`` requires ``noPostOps``) and
  runs ``brgemm_avx512_f32``. MobileNetV3's logits FC has no activation after it and gets
  ``gemm_mlas_f32``.
* ``x * clamp(x / 6 + 1/2, 0, 1)`` is the same function, matches none of the HSwish/HSigmoid
  patterns, and reads the FC's output twice, so the FC has two consumers and nothing is fused
  into it (the optimiser fuses only into an FC with one child). The h-swish then runs as one
  ~1-2 µs elementwise ``Subgraph`` of 1000 (1024) values.

Measured (head alone, M2's shapes 768x7x7 -> 1024 -> 1000, 1 thread, interleaved, per-node
median): fc1 0.064 -> 0.057 ms, fc2 0.086 -> 0.071 ms (MLAS 11-17% faster), the two elementwise
nodes +0.002 ms; README "Speed" has the whole-model figures. Outputs change by float rounding
only (``x / 6 + 1/2`` against ``(x + 3) / 6``; the mean's order of summation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops.shift_max import HSwish

from ..common import fold_bn


class FlatPool(nn.Module):
    """The head's pool, ReLU6 -> global average pool -> h-swish, averaging over the flattened
    ``H*W`` axis; returns ``(N, C)`` (module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.act = HSwish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.relu6(x).flatten(2).mean(-1))


class ClampHSwish(nn.Module):
    """h-swish as ``x * clamp(x / 6 + 1/2, 0, 1)``: equal to ``x * relu6(x + 3) / 6`` up to
    float rounding, in a form OpenVINO does not fuse into the layer before it (module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def convert_cls_head(head: nn.Module, *, openvino: bool = False) -> nn.Module:
    """Fold :class:`MicroNetClsHead`'s BatchNorm1d layers into its FC layers, drop the dropout.

    Args:
        head: the trained head; put in eval mode. A head converted before is left as it is
            (its activations may still be rewritten).
        openvino: the forms OpenVINO runs fastest (module doc): the pool as
            :class:`FlatPool`, the h-swish after each FC as :class:`ClampHSwish` (no post-op
            fused into the FCs, which then run on MLAS).

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
    if openvino:
        head.pool, head.act1, head.act2 = FlatPool(), ClampHSwish(), ClampHSwish()
    for p in head.parameters():
        p.requires_grad_(False)
    return head
