"""Standard-operator forms in 4-D tensors only, for the edge runtimes (ncnn via pnnx, MNN).

ncnn has no channel gather (``index_select`` / ONNX ``Gather``), no ``addcmul`` and no tensor
above 4-D (without the batch: 3-D ``Mat``); pnnx leaves such operators unconverted. Every
MicroNet part that uses them gets an exact equivalent here:

* a channel permutation (:class:`Permute4d`), recognised from its index table: a channel
  shuffle of ``(G, M)`` is ``reshape (N, G, M, H·W) -> transpose(1, 2) -> reshape`` (pure
  copies); the shift of Dynamic Shift-Max, a circular shift by ``r`` of the group and by ``s``
  inside it, is the same reshape with one circular roll along each of the two axes (a slice
  in two and a concat each); any other permutation is one split into its contiguous runs and
  one concat. Traced with TorchScript (pnnx's input), the grid forms are channel shuffles
  (``nn.ChannelShuffle``, which pnnx makes ncnn's ``ShuffleChannel``) and channel rolls
  instead, with no constant of the input size (:meth:`Permute4d._shuffles_and_rolls`);
* Dynamic Shift-Max (:class:`Shift4dMax`): the hyper-function as global average pooling and
  two 1x1 convolutions on ``(N, C, 1, 1)`` maps (no flatten, no reshape to a batch of -1), the
  coefficients cut by one channel split, the fusions as multiplies, adds and one ``maximum``;
* the stem (:class:`FactorizedStem`): its kx1 convolution, then the grouped 1xk convolution as a
  dense one with the shuffle folded into its output channels (exact: the weights outside the
  groups are zeros), so there is neither a shuffle nor a bias map;
* the spatial attention (:class:`PooledSpatialAttention`): the softmax over the positions of
  the one-channel logit map as ``exp(z - maxpool(z)) / avgpool(exp(z - maxpool(z)))``, which is
  ``H·W · softmax``: global pooling only, no flatten, and no constant of the input size.

Each form is exact up to float rounding (tests/test_edge_runtimes.py compares the converted
ncnn and MNN models with PyTorch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops import ChannelShuffle, DynamicShiftMax, MicroStem, SpatialAttention

from ..common import ChannelPermute, fold_bn
from .shift_max import DeployShiftMax, FastShiftMax


def _roll(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``torch.roll(x, -shift, dim)`` as two slices and a concat (``y[i] = x[(i + shift) % n]``)."""
    if shift == 0:
        return x
    lead = (slice(None),) * dim  # plain slicing: pnnx has no ncnn form of ``narrow``
    return torch.cat([x[lead + (slice(shift, None),)], x[lead + (slice(0, shift),)]], dim)


def _grid_index(channels: int, groups: int, transpose: bool, shift: tuple[int, int]
                ) -> torch.Tensor:
    """The channel index of a :class:`Permute4d` form: channels as a ``(G, M)`` grid,
    optionally transposed, then rolled by ``shift`` along the (new) two axes."""
    grid = torch.arange(channels).view(groups, channels // groups)
    if transpose:
        grid = grid.t()
    grid = grid.roll((-shift[0], -shift[1]), (0, 1))
    return grid.reshape(-1)


class Permute4d(nn.Module):
    """``x[:, index]`` for a channel permutation ``index``, in 4-D standard operators.

    Built by :meth:`from_index`, which picks the cheapest form that reproduces the index:
    identity; a grid form (channels viewed as ``(N, G, M, H·W)``, transposed and/or circularly
    rolled along the group and in-group axes: a channel shuffle, or a Shift-Max shift); else
    one split into the index's contiguous runs and one concat of them in order.

    Args:
        channels: C (``None``: any, for a grid form; a channel shuffle's ``G`` fixes it).
        groups: G of the grid form (0: the runs form).
        transpose: the grid form transposes ``(G, M)`` (a channel shuffle).
        shift: the grid form's rolls ``(along axis 0, along axis 1)`` after the transpose.
        runs: the runs form's ``(start, length)`` pieces of the source, in output order.
    """

    def __init__(self, channels: int | None, groups: int = 0, transpose: bool = False,
                 shift: tuple[int, int] = (0, 0),
                 runs: list[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.channels, self.groups, self.transpose, self.shift = (channels, groups, transpose,
                                                                  tuple(shift))
        self.runs = runs
        # the TorchScript form (:meth:`_shuffles_and_rolls`): channel shuffles and channel rolls
        if runs is None:
            rows = groups if not transpose or channels is None else channels // groups
            self.transposer = nn.ChannelShuffle(groups) if transpose else None
            if shift[1]:  # a roll along the grid's axis 1: shuffle, roll, shuffle back
                self.to_cols = nn.ChannelShuffle(rows)
                self.from_cols = nn.ChannelShuffle(channels // rows)

    @classmethod
    def from_index(cls, index: torch.Tensor) -> nn.Module:
        """The cheapest :class:`Permute4d` (or ``nn.Identity``) equal to ``x[:, index]``."""
        index = index.long().view(-1)
        c = index.numel()
        if torch.equal(index, torch.arange(c)):
            return nn.Identity()
        for g in range(2, c):
            if c % g:
                continue
            m = c // g
            for transpose in (False, True):
                rows = m if transpose else g
                cols = g if transpose else m
                # the candidate shift is read off the index's first entry
                first = int(index[0])
                src = (first % m, first // m) if transpose else (first // m, first % m)
                shift = (src[0] % rows, src[1] % cols)
                if torch.equal(_grid_index(c, g, transpose, shift), index):
                    return cls(c, g, transpose, shift)
        starts = [0] + [i for i in range(1, c) if int(index[i]) != int(index[i - 1]) + 1]
        bounds = starts + [c]
        runs = [(int(index[a]), b - a) for a, b in zip(bounds[:-1], bounds[1:])]
        return cls(c, runs=runs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.runs is None and torch.jit.is_tracing()
                and not torch.onnx.is_in_onnx_export()):
            return self._shuffles_and_rolls(x)
        n, c, h, w = x.shape
        if self.runs is not None:  # split at the run boundaries of the source, concat in order
            order = sorted(range(len(self.runs)), key=lambda i: self.runs[i][0])
            pieces = x.split([self.runs[i][1] for i in order], 1)
            by_run = {i: pieces[k] for k, i in enumerate(order)}
            return torch.cat([by_run[i] for i in range(len(self.runs))], 1)
        g, m = self.groups, c // self.groups
        v = x.reshape(n, g, m, h * w)  # (N, G, M, H·W)
        if self.transpose:
            v = v.transpose(1, 2)  # (N, M, G, H·W)
        v = _roll(_roll(v, self.shift[0], 1), self.shift[1], 2)
        return v.reshape(n, c, h, w)

    def _shuffles_and_rolls(self, x: torch.Tensor) -> torch.Tensor:
        """The grid form in channel shuffles (``nn.ChannelShuffle``, which pnnx makes ONE ncnn
        ``ShuffleChannel`` layer) and circular rolls of the channels: no reshape, so no constant
        of the input size in a TorchScript trace (the ONNX exporter has no channel shuffle).
        With the grid ``(R, K)`` after the transpose, a roll by ``a`` along axis 0 is a channel
        roll by ``a·K``; a roll by ``b`` along axis 1 is shuffle(R), a channel roll by ``b·R``,
        shuffle(K)."""
        if self.transposer is not None:
            x = self.transposer(x)
        if self.shift != (0, 0):  # then the width is known (the form came from an index)
            c = self.channels
            rows = c // self.groups if self.transpose else self.groups
            x = _roll(x, self.shift[0] * (c // rows), 1)
            if self.shift[1]:
                x = self.from_cols(_roll(self.to_cols(x), self.shift[1] * rows, 1))
        return x

    def extra_repr(self) -> str:
        if self.runs is not None:
            return f'channels={self.channels}, runs={len(self.runs)}'
        return (f'channels={self.channels}, groups={self.groups}, transpose={self.transpose}, '
                f'shift={self.shift}')


def permute4d(module: nn.Module) -> nn.Module:
    """A :class:`ChannelShuffle` (for any width) or :class:`ChannelPermute` as a
    :class:`Permute4d` (or ``Identity``); anything else as it is."""
    if isinstance(module, ChannelShuffle):
        return Permute4d(None, module.groups, transpose=True)
    if isinstance(module, ChannelPermute):
        return Permute4d.from_index(module.index)
    return module


class Shift4dMax(DeployShiftMax):
    """:class:`DynamicShiftMax` in 4-D standard operators (module doc).

    The coefficient arithmetic is :class:`FastShiftMax`'s (hard sigmoid's +3 and scale folded
    into fc2, one clamp, one offset): its two Linear layers become 1x1 convolutions on the
    pooled ``(N, C, 1, 1)`` map, so the coefficients stay ``(N, K·J·C, 1, 1)`` and are cut by one
    channel split; each shift is a :class:`Permute4d`.

    Args:
        dsm: the trained activation.
    """

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__(dsm)
        fast = FastShiftMax(dsm)
        self.high = fast.high
        if fast.fc1 is None:
            self.register_buffer('static_a', fast.static_a.clone())  # (1, K·J·C, 1, 1)
            self.fc1 = self.fc2 = None
        else:
            self.fc1, self.fc2 = _as_conv1x1(fast.fc1), _as_conv1x1(fast.fc2)
            self.register_buffer('offset', fast.offset.view(1, -1, 1, 1).clone())
        self.shifts = nn.ModuleList(Permute4d.from_index(i) for i in self.index[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc1 is None:
            a = self.static_a
        else:
            z = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))  # (N, K·J·C, 1, 1)
            a = z.clamp(0, self.high) + self.offset
        a = a.split(self.channels, 1)  # K·J x (N, C, 1, 1)
        shifted = [x] + [shift(x) for shift in self.shifts]  # J x (N, C, H, W)
        y = None
        for k in range(self.num_fusions):
            fused = shifted[0] * a[k * self.num_shifts]
            for j in range(1, self.num_shifts):
                fused = fused + shifted[j] * a[k * self.num_shifts + j]
            y = fused if y is None else torch.maximum(y, fused)
        return y  # (N, C, H, W)


def _as_conv1x1(linear: nn.Linear) -> nn.Conv2d:
    """A Linear layer as the 1x1 convolution that applies it to ``(N, C, 1, 1)`` maps."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, device=linear.weight.device,
                     dtype=linear.weight.dtype)
    conv.weight.data.copy_(linear.weight.data.view(*linear.weight.shape, 1, 1))
    conv.bias.data.copy_(linear.bias.data)
    return conv


class FactorizedStem(nn.Module):
    """:class:`MicroStem` as a kx1 convolution (BN folded) and a dense 1xk convolution (BN
    folded, the grouped weights placed on the block diagonal, the shuffle folded into the
    output channels), then ReLU6: exact, with no shuffle and no bias map.

    Args:
        stem: the stem, weights loaded.
    """

    def __init__(self, stem: MicroStem) -> None:
        super().__init__()
        k1, k2 = stem.conv_k1, stem.conv_1k
        w1, b1 = fold_bn(k1.weight, None, stem.bn1)  # (C1, 3, k, 1)
        w2, b2 = fold_bn(k2.weight, None, stem.bn2)  # (C1·m, 1, 1, k)
        c1, out = k2.in_channels, k2.out_channels
        dense = w2.new_zeros(out, c1, 1, w2.shape[-1])
        group = torch.arange(out) // (out // k2.groups)  # each output's input channel
        dense[torch.arange(out), group] = w2[:, 0]
        perm = ChannelPermute.from_shuffle(stem.shuffle, out).index
        self.conv_k1 = nn.Conv2d(k1.in_channels, c1, k1.kernel_size, k1.stride, k1.padding,
                                 bias=True, device=w1.device, dtype=w1.dtype)
        self.conv_1k = nn.Conv2d(c1, out, k2.kernel_size, k2.stride, k2.padding, bias=True,
                                 device=w1.device, dtype=w1.dtype)
        self.conv_k1.weight.data.copy_(w1)
        self.conv_k1.bias.data.copy_(b1)
        self.conv_1k.weight.data.copy_(dense[perm])
        self.conv_1k.bias.data.copy_(b2[perm])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.conv_1k(self.conv_k1(x)))  # (N, C1·m, H/2, W/2)


class PooledSpatialAttention(nn.Module):
    """:class:`SpatialAttention` with the softmax over positions in global pooling (module doc):
    ``pi = min(e / mean(e), 3) / 3``, ``e = exp(z - max(z))``, which equals the original's
    ``min(H·W · softmax(z), 3) / 3``.

    Args:
        attention: the spatial attention, its ``act`` and ``logit`` already in deploy form.
    """

    def __init__(self, attention: SpatialAttention) -> None:
        super().__init__()
        self.act, self.logit = attention.act, attention.logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logit(x)  # (N, 1, H, W)
        e = torch.exp(z - F.adaptive_max_pool2d(z, 1))
        pi = (e / F.adaptive_avg_pool2d(e, 1)).clamp(max=3.0) / 3
        return self.act(x) * pi  # (N, C, H, W)
