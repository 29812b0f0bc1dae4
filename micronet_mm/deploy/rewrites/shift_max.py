"""Dynamic Shift-Max in deploy form: the fused C++ operator (:class:`FusedShiftMax`, PyTorch
when built) or the standard-operator graph (:class:`FastShiftMax`, the ONNX Runtime export and
the fallback), and their covariance under channel permutations (used to move a block's shuffle
past them). Which form runs where: docs/deploy.md, "Dynamic Shift-Max: which path runs where"."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops import DynamicShiftMax, fused_shift_max
from micronet_mm.ops.shift_max import hyper_function, shift_max_reference

from ..common import size_generic


def static_coefficients(dsm: DynamicShiftMax) -> torch.Tensor:
    """A static Shift-Max's coefficients ``a`` as a ``(1, K·J·C, 1, 1)`` tensor, rows
    ``[k][j][c]`` (:meth:`DynamicShiftMax.static_coefficients`)."""
    return dsm.static_coefficients().detach().reshape(1, -1, 1, 1)


class DeployShiftMax(nn.Module):
    """What every deploy form of :class:`DynamicShiftMax` keeps: the sizes and the shift index
    ``(J, C)`` (which :func:`conjugate_shift_max` rewrites)."""

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__()
        self.channels, self.num_shifts, self.num_fusions = (dsm.channels, dsm.num_shifts,
                                                             dsm.num_fusions)
        self.register_buffer('index', dsm.index.clone(), persistent=False)  # (J, C)

    def extra_repr(self) -> str:
        return f'channels={self.channels}, J={self.num_shifts}, K={self.num_fusions}'


class FastShiftMax(DeployShiftMax):
    """:class:`DynamicShiftMax` with the fewest standard operators (same arithmetic as Eq. 4):
    an export form, not a kernel. It is the one standard-operator graph of Dynamic Shift-Max in
    deploy mode: what the ONNX Runtime export holds, and what PyTorch deploy runs where the
    fused operator is not built. The hyper-function's constants are folded for that graph
    (below); the arithmetic is the reference's.

    ``y = max_k (a_k0 · x + a_k1 · x̂ + ...)``: one ``index_select`` per shift, one multiply and
    J-1 ``addcmul`` per fusion, K-1 ``maximum``. The hyper-function's pooling is a sum whose
    ``1/(H·W)`` is the ``alpha`` of the first FC's ``addmm``; the hard sigmoid and the rescaling
    to ``init ± act_max`` are one ``clamp`` (the scale folded into fc2) and one ``add``; the
    ``K·J`` coefficient vectors come from one reshape and one ``split``.

    Args:
        dsm: the trained activation.
    """

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__(dsm)
        # a = (relu6(z + 3) / 6 - 0.5) · 2·act_max + init = clamp(s·(z + 3), 0, 6·s) + offset
        # with s = act_max / 3 > 0 folded into fc2's weight and bias
        scale = dsm.act_max / 3
        self.high, self.act_max = 6 * scale, dsm.act_max
        offset = (dsm.init.view(1, -1, 1) - dsm.act_max).expand(1, -1, self.channels)
        self.register_buffer('offset', offset.reshape(1, -1).clone(), persistent=False)  # (1, K·J·C)
        if dsm.fc is None:
            self.register_buffer('static_a', static_coefficients(dsm))
            self.fc1 = self.fc2 = None
        else:  # Linear, ReLU, Linear, HSigmoid: the +3 of the hard sigmoid goes into fc2's bias
            fc1, fc2 = dsm.fc[0], dsm.fc[2]
            like = dict(device=fc1.weight.device, dtype=fc1.weight.dtype)
            self.fc1 = nn.Linear(fc1.in_features, fc1.out_features, **like)
            self.fc2 = nn.Linear(fc2.in_features, fc2.out_features, **like)
            self.fc1.load_state_dict(fc1.state_dict())
            self.fc2.weight.data.copy_(fc2.weight * scale)
            self.fc2.bias.data.copy_((fc2.bias + 3) * scale)
        self.input_scale = 1.0

    def prescale(self) -> float:
        """Expect the input multiplied by ``λ = 2·act_max`` (the caller scales the convolution
        before): then ``a / λ = hardsigmoid(fc2(·)) + offset / λ`` and the output is unchanged,
        since Eq. 4 is linear in x for given coefficients. The hard sigmoid is ONNX
        ``HardSigmoid``, which ONNX Runtime fuses into fc2's ``Gemm``: one ``Clip`` fewer. With
        ``act_max`` a power of two (the default, 2) the scaling is exact. Returns λ."""
        lam = 2 * self.act_max
        if self.fc1 is None or self.input_scale != 1.0:
            raise ValueError('prescale: dynamic Shift-Max only, once')
        s = self.high / 6
        self.fc2.weight.data = self.fc2.weight.data / s  # back to the trained fc2
        self.fc2.bias.data = self.fc2.bias.data / s - 3
        self.fc1.weight.data = self.fc1.weight.data / lam  # the pooled input is λ times larger
        self.offset = self.offset / lam
        self.input_scale = lam
        return lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.fc1 is None:
            a = self.static_a.expand(n, -1, -1, -1)
        elif size_generic():  # traced for every input size: the mean computed from x
            hid = self.fc1(x.mean((2, 3)))
        else:  # the mean's 1/(H·W) rides on the first FC's matrix product
            hid = torch.addmm(self.fc1.bias, x.sum((2, 3)), self.fc1.weight.t(),
                              alpha=1.0 / (int(h) * int(w)))
        if self.fc1 is not None:
            z = self.fc2(hid.relu_())  # (N, K·J·C): s·(z + 3), or z when prescaled
            a = F.hardsigmoid(z) if self.input_scale != 1.0 else z.clamp(0, self.high)
            # a constant target shape: no Shape/Gather/Concat subgraph with a dynamic batch
            a = (a + self.offset).view(-1, self.offset.shape[1], 1, 1)
        a = a.split(c, 1)  # K·J x (N, C, 1, 1): one Split, no Gather / Squeeze per coefficient
        shifted = [x] + [x.index_select(1, idx) for idx in self.index[1:]]  # J x (N, C, H, W)
        y = None
        for k in range(self.num_fusions):
            fused = shifted[0] * a[k * self.num_shifts]
            for j in range(1, self.num_shifts):
                fused = torch.addcmul(fused, shifted[j], a[k * self.num_shifts + j])
            y = fused if y is None else torch.maximum(y, fused)
        return y  # (N, C, H, W)


class FusedShiftMax(DeployShiftMax):
    """:class:`DynamicShiftMax` as ONE call of the fused C++ operator
    (:mod:`micronet_mm.ops.fused_shift_max`): ``micronet::shift_max_dynamic`` runs pooling,
    fc1, ReLU, fc2, hard sigmoid, rescaling and Eq. 4 together; a static Shift-Max is one
    ``micronet::shift_max`` with constant coefficients. Same arithmetic as the reference;
    inference only. The operator takes CPU float32 / float64 tensors; any other input (a model
    moved to CUDA, half precision) runs the same formula in standard ops.

    Args:
        dsm: the trained activation.
    """

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__(dsm)
        self.act_max = dsm.act_max
        self.register_buffer('init', dsm.init.view(self.num_fusions, self.num_shifts).clone(),
                             persistent=False)  # (K, J)
        if dsm.fc is None:
            self.register_buffer('static_a', static_coefficients(dsm))  # (1, K·J·C, 1, 1)
            self.fc1 = self.fc2 = None
        else:  # Linear, ReLU, Linear, HSigmoid: the operator takes both Linear layers as they are
            self.fc1, self.fc2 = copy.deepcopy(dsm.fc[0]), copy.deepcopy(dsm.fc[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fused_shift_max.supports(x):
            return shift_max_reference(x, self._coefficients(x), self.index)
        if self.fc1 is None:
            coef = self.static_a.view(1, self.num_fusions, self.num_shifts, self.channels)
            return fused_shift_max.shift_max(x, coef.expand(x.shape[0], -1, -1, -1), self.index)
        return fused_shift_max.shift_max_dynamic(
            x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, self.init,
            self.act_max, self.index)  # (N, C, H, W)

    def _coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """The final coefficients ``(K, J, N, C, 1, 1)`` from the reference hyper-function, in
        x's dtype."""
        k, j, c = self.num_fusions, self.num_shifts, self.channels
        if self.fc1 is None:
            a = self.static_a.view(1, k, j, c)
        else:
            pooled = x.mean((2, 3), dtype=self.fc1.weight.dtype)  # (N, C)
            a = hyper_function(pooled, self.fc1, self.fc2, self.act_max, self.init)
        return a.permute(1, 2, 0, 3)[..., None, None].to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', dynamic={self.fc1 is not None}'


def pytorch_shift_max(dsm: DynamicShiftMax) -> nn.Module:
    """The native PyTorch deploy form (``backend='native'``): :class:`FusedShiftMax` when the
    fused operator is built, switched on, and takes the module's device and dtype; else
    :class:`FastShiftMax` (warns once when the operator is not built)."""
    if fused_shift_max.supports(dsm.init) and fused_shift_max.active():
        return FusedShiftMax(dsm)
    return FastShiftMax(dsm)


def conjugate_shift_max(act: DeployShiftMax, perm: torch.Tensor) -> None:
    """Rewrite ``act`` so that ``act(v[:, perm]) == act'(v)[:, perm]`` (Shift-Max is covariant
    under channel permutations: shift index, hyper-function input columns and output rows)."""
    c = act.channels
    inv = torch.argsort(perm)  # the inverse permutation
    index = torch.empty_like(act.index)
    index[:, perm] = perm[act.index]  # idx'[P[c]] = P[idx[c]]
    act.index = index
    n_coef = act.num_fusions * act.num_shifts  # coefficient vectors, rows [k][j][c]
    rows = (torch.arange(n_coef).view(-1, 1) * c + inv.view(1, -1)).view(-1)
    if act.fc1 is None:
        act.static_a = act.static_a[:, rows]
    else:
        act.fc1.weight.data = act.fc1.weight.data[:, inv]
        act.fc2.weight.data = act.fc2.weight.data[rows]
        act.fc2.bias.data = act.fc2.bias.data[rows]


