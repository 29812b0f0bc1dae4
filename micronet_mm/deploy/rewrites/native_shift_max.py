"""Dynamic Shift-Max as ONE native operation of the deployment runtime: the ONNX node
``micronet.ShiftMax`` (custom domain ``micronet``, version 1), which the OpenVINO extension
(``micronet_mm/csrc/openvino``, loaded by :mod:`micronet_mm.runtime.openvino`) converts to its
``micronet::ShiftMax`` operation. One node replaces the ~10 standard nodes of the ONNX Runtime
form (pooling, two ``Gemm``, hard sigmoid, ``Split``, shift ``Gather``, ``Mul``/``Add``/``Max``
over the feature map). Its ``evaluate()`` runs the native Shift-Max kernels that the layer
programs run too (``micronet_mm/csrc/shift_max_kernels.h``).
"""
from __future__ import annotations

import torch
from torch import nn

from micronet_mm.ops import DynamicShiftMax
from micronet_mm.ops.shift_max import shift_index


class _ShiftMaxNode(torch.autograd.Function):
    """The ``micronet.ShiftMax`` ONNX node, for the exporter only: its ``forward`` gives a
    placeholder of the output's shape (the tracer records the node, not the values)."""

    @staticmethod
    def forward(ctx, x, groups, num_shifts, num_fusions, inner_shift, act_max, *params):  # noqa: D102
        return x.clone()

    @staticmethod
    def symbolic(g, x, groups, num_shifts, num_fusions, inner_shift, act_max, *params):  # noqa: D102
        out = g.op('micronet::ShiftMax', x, *params, groups_i=groups, num_shifts_i=num_shifts,
                   num_fusions_i=num_fusions, inner_shift_i=inner_shift, act_max_f=act_max)
        out.setType(x.type())
        return out


class NativeShiftMax(nn.Module):
    """A trained :class:`DynamicShiftMax` that exports to ONNX as one ``micronet.ShiftMax`` node
    (the native OpenVINO operation; export with ``custom_opsets={'micronet': 1}``); in PyTorch
    it runs the module as it was.

    Inputs of the node: ``x`` and the hyper-function ``fc1.weight (S, C), fc1.bias, fc2.weight
    (K·J·C, S), fc2.bias, init (K, J)``, or for static Shift-Max ``x`` and the final coefficients
    ``(K, J, C)``.

    Args:
        dsm: the trained activation.
    """

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__()
        self.reference = dsm
        self.channels, self.groups = dsm.channels, dsm.groups
        self.num_shifts, self.num_fusions, self.act_max = (dsm.num_shifts, dsm.num_fusions,
                                                           dsm.act_max)
        self.inner_shift = dsm.num_shifts < 2 or torch.equal(
            dsm.index[1], shift_index(dsm.channels, dsm.groups, 1, inner_shift=True))
        if not self.inner_shift and not torch.equal(
                dsm.index[1], shift_index(dsm.channels, dsm.groups, 1, inner_shift=False)):
            raise ValueError('NativeShiftMax: the shift index is neither of the two variants')
        if dsm.fc is None:
            params = [dsm.static_coefficients()]  # (K, J, C)
        else:
            fc1, fc2 = dsm.fc[0], dsm.fc[2]
            params = [fc1.weight, fc1.bias, fc2.weight, fc2.bias,
                      dsm.init.view(dsm.num_fusions, dsm.num_shifts)]
        self.num_params = len(params)
        for i, p in enumerate(params):
            self.register_buffer(f'p{i}', p.detach().clone().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return self.reference(x)
        params = [getattr(self, f"p{i}") for i in range(self.num_params)]
        return _ShiftMaxNode.apply(x, self.groups, self.num_shifts, self.num_fusions,
                                   int(self.inner_shift), float(self.act_max), *params)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, groups={self.groups}, J={self.num_shifts}, '
                f'K={self.num_fusions}, inner_shift={self.inner_shift}')
