"""Dynamic Shift-Max (ICCV paper §4, Eq. 4; arXiv v1 Eq. 5).

Channels are split into G groups of C/G. The j-th circular shift of x is ``x̂^j``; DY-Shift-Max
returns the best of K fusions of J shifts, with coefficients computed from x::

    y_i = max_{1<=k<=K} sum_{j=0}^{J-1} a^k_{i,j}(x) · x̂^j_i                             (Eq. 4)

The paper writes the shift as a pure group shift, ``x̂^j_i = x_{(i + j·C/G) mod C}``. The
reference implementation (and so every released checkpoint) also rotates the channels inside
each group by one per shift. With i = g·(C/G) + c (group g, position c)::

    paper:     x̂^j_i = x_{((g + j) mod G)·C/G + c}
    reference: x̂^j_i = x_{((g + j) mod G)·C/G + (c + j) mod C/G}      (``inner_shift=True``)

The coefficients come from a squeeze-excitation style hyper-function: average pooling, FC,
ReLU, FC to C·J·K outputs, hard sigmoid, rescaled to ``[-act_max, act_max]`` and offset by a fixed
initial value per (k, j) (``init_a`` for j = 0, ``init_b`` for j = 1), as in dynamic ReLU. Output
``C·J·K`` is laid out as ``[k][j][channel]``, the layout of the reference checkpoints.

When the fused operator is built (:mod:`micronet_mm.ops.fused_shift_max`), the forward after
the hyper-function runs as one C++ call with the same arithmetic; the code below is the
reference it is tested against, and the fallback.

Mixed precision (``torch.autocast``, float16 or bfloat16 activations): the hyper-function runs
with autocast off in the float32 of its weights (the pooling accumulates in float32 without a
float32 copy of x) and the coefficients are computed in float32, where a float16 fc layer would
round every coefficient to ~3 significant digits (bfloat16: ~2) before the ``(s - 0.5) · 2 ·
act_max`` rescaling enlarges the error. The fusion of Eq. 4 then runs in the activation's dtype
(|a| <= |init| + act_max bounds it: no overflow beyond that of the convolution before it), so the
output keeps x's dtype and no float32 ``(K, J, N, C, H, W)`` intermediate is made.

Which implementation runs is chosen per call from the input (:func:`fused_shift_max.choose`;
every path, deploy forms included: docs/deploy.md, "Dynamic Shift-Max: which path runs where"):
the fused C++ operator for CPU float32 / float64 tensors, otherwise this module's reference code
(on CUDA, under AMP, in an ONNX export); under ``torch.compile`` the reference code is what
Inductor fuses into generated kernels (Triton on GPU, C++ on CPU).

Special cases: J = 1 is dynamic ReLU (each channel activated alone); K = 1 drops the max (a
dynamic linear fusion); ``dynamic=False`` is the static Shift-Max of the ablations (Table 2):
the coefficients are learned parameters that do not depend on the input.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_shift_max


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% down (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def shift_index(channels: int, groups: int, shift: int, inner_shift: bool = True) -> torch.Tensor:
    """Index ``idx`` with ``x̂^shift = x[:, idx]``: shift by ``shift`` groups (see module doc)."""
    per_group = channels // groups
    g = torch.arange(groups).view(groups, 1)
    c = torch.arange(per_group).view(1, per_group)
    src_c = (c + shift) % per_group if inner_shift else c.expand(groups, per_group)
    return (((g + shift) % groups) * per_group + src_c).reshape(-1)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A block with autocast off on ``device_type`` (nothing to do where it is not on)."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def rescale(s: torch.Tensor, act_max: float, init: torch.Tensor) -> torch.Tensor:
    """The final coefficients from the hyper-function's output ``s`` in [0, 1] (or a static
    Shift-Max's learned ``static_coef``): ``(s - 0.5) · 2·act_max + init``.

    Args:
        s: ``(..., K·J·C)``, rows laid out ``[k][j][c]``.
        act_max: the coefficients vary in ``init ± act_max``.
        init: ``K·J`` offsets, ``(K, J)`` or any shape with ``K·J`` elements.

    Returns:
        ``(..., K, J, C)``, in s's dtype.
    """
    k, j = init.shape[0], init.numel() // init.shape[0]
    a = ((s - 0.5) * (2 * act_max)).unflatten(-1, (k, j, -1))
    return a + init.reshape(k, j, 1).to(a.dtype)


def hyper_function(pooled: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, act_max: float,
                   init: torch.Tensor) -> torch.Tensor:
    """The hyper-function of Eq. 4 after pooling: ``fc1 -> ReLU -> fc2 -> hard sigmoid``, then
    :func:`rescale`.

    Args:
        pooled: ``(N, C)``, the global average of x.
        fc1: ``C -> S``; fc2: ``S -> K·J·C`` (rows ``[k][j][c]``).
        act_max, init: as :func:`rescale`.

    Returns:
        ``(N, K, J, C)``.
    """
    return rescale(HSigmoid()(fc2(F.relu(fc1(pooled)))), act_max, init)


def shift_max_reference(x: torch.Tensor, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Eq. 4 in standard ops (the reference code; what ``torch.compile`` fuses).

    Args:
        x: ``(N, C, H, W)``.
        a: ``(K, J, N, C, 1, 1)``, the coefficients ``a^k_{i,j}``.
        index: ``(J, C)``, the source channel of each shift (row 0 is the identity).

    Returns:
        ``(N, C, H, W)``.
    """
    shifted = torch.stack([x] + [x[:, idx] for idx in index[1:]])  # (J, N, C, H, W)
    fused = (a * shifted.unsqueeze(0)).sum(1)  # (K, N, C, H, W)
    return fused.amax(0)  # (N, C, H, W)


class HSigmoid(nn.Module):
    """``relu6(x + 3) / 6``, computed as the reference code does (``nn.Hardsigmoid`` multiplies
    by 1/6 and differs in the last bit, which deep stacks of Shift-Max amplify)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class HSwish(nn.Module):
    """``x · relu6(x + 3) / 6``, with the reference code's order of operations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(x + 3.0) / 6.0)


class DynamicShiftMax(nn.Module):
    """Dynamic Shift-Max activation, Eq. 4.

    Args:
        channels: C.
        groups: G, the number of channel groups that the shift moves across.
        num_shifts: J, the number of shifted copies fused (J=1 gives dynamic ReLU).
        num_fusions: K, the number of fusions maxed over (K=1: no max).
        squeeze_channels: hidden width of the hyper-function (ignored when static).
        act_max: coefficients vary in ``init ± act_max``.
        init_a: offsets of the j=0 coefficient, one per fusion k.
        init_b: offsets of the j=1 coefficient, one per fusion k.
        dynamic: False gives static Shift-Max (input-independent learned coefficients).
        inner_shift: also rotate inside each group, as the reference code does (module doc).
    """

    def __init__(self, channels: int, *, groups: int, num_shifts: int = 2, num_fusions: int = 2,
                 squeeze_channels: int = 4, act_max: float = 2.0,
                 init_a: Sequence[float] = (1.0, 0.0), init_b: Sequence[float] = (0.0, 0.0),
                 dynamic: bool = True, inner_shift: bool = True) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f'DynamicShiftMax: channels={channels} is not divisible by '
                             f'groups={groups}')
        self.channels, self.groups = channels, groups
        self.num_shifts, self.num_fusions = num_shifts, num_fusions
        self.act_max = act_max
        init = torch.zeros(num_fusions, num_shifts)
        init[:, 0] = torch.tensor(list(init_a)[:num_fusions])
        if num_shifts > 1:
            init[:, 1] = torch.tensor(list(init_b)[:num_fusions])
        self.register_buffer('init', init.view(num_fusions, num_shifts, 1, 1, 1), persistent=False)
        index = torch.stack([shift_index(channels, groups, j, inner_shift)
                             for j in range(num_shifts)])
        self.register_buffer('index', index, persistent=False)  # (J, C)
        n_coef = channels * num_shifts * num_fusions
        if dynamic:
            self.fc = nn.Sequential(
                nn.Linear(channels, squeeze_channels), nn.ReLU(inplace=True),
                nn.Linear(squeeze_channels, n_coef), HSigmoid())
        else:
            self.register_parameter('static_coef', nn.Parameter(torch.full((n_coef,), 0.5)))
            self.fc = None

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """``a^k_{i,j}(x)`` as a ``(K, J, N, C, 1, 1)`` tensor (the hyper-function of Eq. 4), in
        the dtype of the module's parameters (float32 under AMP; module doc)."""
        n = x.shape[0]
        with _autocast_off(x.device.type):
            if self.fc is None:
                a = self.static_coefficients().expand(n, -1, -1, -1)
            else:
                a = hyper_function(self._pooled(x), self.fc[0], self.fc[2], self.act_max,
                                   self.init)
            return a.permute(1, 2, 0, 3)[..., None, None]  # (K, J, N, C, 1, 1)

    def static_coefficients(self) -> torch.Tensor:
        """A static Shift-Max's coefficients, ``(K, J, C)`` (learned; not clamped)."""
        return rescale(self.static_coef, self.act_max, self.init)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global average of x, ``(N, C)``, in the dtype of fc's weights: as the reference code
        when x has that dtype, else (AMP) accumulated in that dtype from x as it is."""
        dtype = self.fc[0].weight.dtype
        if x.dtype == dtype:
            return F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x.mean((2, 3), dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.coefficients(x)  # (K, J, N, C, 1, 1)
        if fused_shift_max.choose(x) == 'fused':  # the same Eq. 4 in C++
            return fused_shift_max.shift_max(x, a.flatten(3).permute(2, 0, 1, 3), self.index)
        return shift_max_reference(x, a.to(x.dtype), self.index)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, groups={self.groups}, J={self.num_shifts}, '
                f'K={self.num_fusions}, dynamic={self.fc is not None}')
