"""The classifier head (:class:`MicroNetClsHead`) in deploy form.

For OpenVINO (``backend='openvino'``) the h-swish after each FC layer is also rewritten
(:class:`ClampHSwish`), so that OpenVINO's CPU plugin runs the two batch-1 GEMVs with its MLAS
kernel instead of oneDNN's brgemm one. Why (OpenVINO 2026.4.1 sources and profile):

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

Measured (1 thread, batch 1, before and after interleaved in one run, per-node median):

* head alone, M2's shapes 768x7x7 -> 1024 -> 1000: fc1 0.064 -> 0.057 ms, fc2 0.086 -> 0.071 ms
  (MLAS 4-17% faster over 3 runs, more when the machine is loaded); the two elementwise
  nodes add 0.001 ms each;
* whole M2 deploy export, 4 runs (2 with MobileNetV3-Small x0.5 in the same run): head (pool
  + 2 FC + elementwise) 0.177 -> 0.165, 0.211 -> 0.194, 0.220 -> 0.196, 0.297 -> 0.260 ms,
  the whole model 0.3-1.2% faster (1.534 -> 1.529 ... 2.222 -> 2.196 ms, within the noise of
  some runs); M3, 1 run: head 0.288 -> 0.256 ms. fc2 then costs what MobileNetV3-Small's
  logits FC of the same shape does (0.103 against 0.103 ms in one run); fc1 stays dearer
  than MobileNetV3's 288 -> 1024 (0.080 against 0.039 ms): 2.7x its weights, memory-bound.

Outputs change by float rounding only (``x / 6 + 1/2`` against ``(x + 3) / 6``).

The pool is left as it is: averaging over the flattened ``(N, C, H*W)`` view makes its
``ReduceMean`` one-axis (0.013 -> 0.008 ms on M2, whose last native Shift-Max writes a planar
tensor), but on M3, whose last layer is a convolution writing a blocked tensor that the pool
reads as it is, the view costs a layout ``Reorder`` (0.006 -> 0.023 ms).
"""
from __future__ import annotations

import torch
from torch import nn

from ..common import fold_bn


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
        openvino: write the h-swish after each FC as :class:`ClampHSwish`, so that OpenVINO
            runs the FCs without a fused post-op, on MLAS (module doc).

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
        head.act1, head.act2 = ClampHSwish(), ClampHSwish()
    for p in head.parameters():
        p.requires_grad_(False)
    return head
