"""Deploy mode: rewrite a trained MicroNet into an equivalent model with fewer, faster operators.

The conversion runs after the weights are loaded (as mmpretrain's RepVGG / MobileOne
``switch_to_deploy``) and changes no output beyond float rounding. Each rewrite was measured on
a 2-core x86 CPU, one thread, batch 1 (README, "Speed"):

* BatchNorm is folded into the convolution or FC layer before it.
* A Micro-Factorized depthwise convolution (kx1 + BN, then 1xk + BN) becomes ONE kxk depthwise
  convolution whose kernel is the outer product of the two factors. oneDNN spends ~100 µs per
  depthwise call whatever its size, so one kxk call costs half of two kx1/1xk calls although it
  has k/2 times the multiply-adds. The first BN's bias meets the 1xk convolution's zero padding,
  so the bias of the merged convolution is a per-column map ``(1, C, 1, W_out)``, exact at the
  borders (:class:`MergedDepthwise`).
* A group-adaptive 1x1 convolution runs as one batched matrix product over its groups
  (``baddbmm``) in PyTorch: 2-5x faster than ``conv2d`` with groups, which splits the call per
  group. For ONNX Runtime it stays a grouped ``Conv`` (``backend='onnxruntime'``).
* A channel shuffle becomes one ``index_select`` with a precomputed permutation, and
  consecutive shuffles are composed into one (the C block's last two, the lite combination's
  two): 6-20 µs instead of 16-26 µs per view-transpose-copy.
* Dynamic Shift-Max computes its fusions with explicit multiply-adds and one ``maximum``
  (``K`` fusions of ``J`` shifts), the shifted copy by ``index_select``: no stacked
  ``(K, J, N, C, H, W)`` intermediate, no advanced indexing (:class:`FastShiftMax`).
* The classifier head folds its two BatchNorm1d into the FC layers and drops the dropout.

``backend='onnxruntime'`` (what ``tools/deployment/export_onnx.py --deploy`` exports) differs
where ONNX Runtime's CPU kernels differ, each measured (README, "Speed"):

* grouped 1x1 convolutions stay grouped ``Conv`` (a batched ``MatMul`` was 4% slower overall);
* a Micro-Factorized depthwise pair without channel multipliers stays kx1 + 1xk
  (:class:`FactorizedDepthwise`, BN folded, no bias map): ORT's NCHWc depthwise kernel runs the
  two faster than one kxk plus the map ``Add``; merged pairs add a full ``(1, C, H, W)`` bias
  map, which ORT adds 2-4x faster than it broadcasts a ``(1, C, 1, W)`` one;
* the shuffle before a block's depthwise convolution is moved past it and past the conjugated
  Shift-Max after it, and composed with the next shuffle (one ``Gather`` per block fewer);
* every (convolution, Dynamic Shift-Max) pair is prescaled (:meth:`FastShiftMax.prescale`) so
  that the hard sigmoid is an ONNX ``HardSigmoid`` that ORT fuses into fc2's ``Gemm``;
* the coefficient tensor is reshaped once with a constant shape and cut by one ``Split`` (no
  ``Gather``/``Squeeze`` per coefficient, no ``Shape`` subgraph with a dynamic batch).

Dense-task heads: the MR-ASPP head's Micro-Factorized pointwise convolutions get their BN
folded and their shuffle as one permutation; the pose head's Micro-Blocks convert as the
backbone's. A :class:`SpatialAttention` (around each pose-head activation, and once in MR-ASPP)
keeps its form: its logit's conv + BN is folded and its Shift-Max converted, but a slot
``SpatialAttention(Shift-Max)`` is neither prescaled nor moved past a shuffle (exact, one rewrite
fewer there).

Use :func:`switch_to_deploy` on a classifier, a backbone, or any model that contains MicroNet
parts (detectors, segmentors and pose models included): it rewrites every part it knows, in
place, and returns the model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops import (ChannelShuffle, DynamicShiftMax, GroupPointwise, LiteCombination,
                             ExpansionBlock, MicroBlockA, MicroBlockC, MicroFactorizedDepthwise,
                             MicroFactorizedPointwise, MicroStem)

BACKENDS = ('pytorch', 'onnxruntime')


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(layer(x))`` as one layer; the output channel is dim 0."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale.view(shape), bn.bias + (b - bn.running_mean) * scale


class ChannelPermute(nn.Module):
    """``x[:, index]`` as one ``index_select``: a channel shuffle, or several composed.

    Args:
        index: the permutation, ``y[:, i] = x[:, index[i]]``.
    """

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer('index', index.long(), persistent=False)

    @classmethod
    def from_shuffle(cls, shuffle: ChannelShuffle, channels: int) -> 'ChannelPermute':
        return cls(shuffle(torch.arange(channels).view(1, channels, 1, 1)).view(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f'channels={self.index.numel()}'


class FusedPointwise(nn.Module):
    """A (grouped) 1x1 convolution with its BN folded into weight and bias.

    Args:
        weight: ``(C_out, C_in / G, 1, 1)``.
        bias: ``(C_out,)``.
        groups: G.
        use_matmul: run as one batched matrix product over the groups (fast in PyTorch eager);
            else ``conv2d`` (exported to ONNX as one ``Conv``).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, groups: int,
                 use_matmul: bool) -> None:
        super().__init__()
        self.groups, self.use_matmul = groups, use_matmul
        self.out_channels, self.in_channels = weight.shape[0], weight.shape[1] * groups
        if use_matmul:  # (G, C_out/G, C_in/G) and (G, C_out/G, 1)
            weight = weight.reshape(groups, self.out_channels // groups, -1)
            bias = bias.reshape(groups, -1, 1)
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())

    @classmethod
    def from_group_pointwise(cls, module: GroupPointwise, use_matmul: bool) -> 'FusedPointwise':
        weight, bias = fold_bn(module.conv.weight, module.conv.bias, module.bn)
        return cls(weight, bias, module.conv.groups, use_matmul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_matmul:
            return F.conv2d(x, self.weight, self.bias, groups=self.groups)
        n, _, h, w = x.shape
        g, (_, co, ci) = self.groups, self.weight.shape
        y = torch.baddbmm(self.bias.expand(n, g, co, 1).reshape(n * g, co, 1),
                          self.weight.expand(n, g, co, ci).reshape(n * g, co, ci),
                          x.reshape(n * g, ci, h * w))  # (N·G, C_out/G, H·W)
        return y.view(n, g * co, h, w)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, groups={self.groups}, '
                f'use_matmul={self.use_matmul}')


class _RowBiasMap(nn.Module):
    """Bias of a merged kx1 + BN + 1xk + BN pair: the 1xk convolution pads the first BN's bias
    ``row_bias`` with zeros, so the exact bias is the map ``conv_1k(row_bias · 1) + out_bias``
    over one row (``(1, C_out, 1, W_out)``), computed once per input width. Subclasses set
    ``row_weight``, ``row_bias``, ``out_bias``, ``stride``, ``padding``, ``dilation`` and
    ``full_map``."""

    def __init__(self, full_map: bool) -> None:
        super().__init__()
        self.full_map = full_map
        self._bias_maps: dict[tuple[int, int], torch.Tensor] = {}

    def bias_map(self, width: int, height: int = 1) -> torch.Tensor:
        """``(1, C_out, 1, W_out)``: the exact bias of every output column; ``height`` > 1
        repeats it over that many rows, ``(1, C_out, height, W_out)``."""
        if (height, width) not in self._bias_maps:
            row = self.row_bias.expand(1, -1, 1, width)  # (1, C_in of the 1xk conv, 1, W)
            bias = F.conv2d(row, self.row_weight, self.out_bias, (1, self.stride[1]),
                            (0, self.padding[1]), (1, self.dilation[1]),
                            groups=row.shape[1]).detach()
            self._bias_maps[(height, width)] = bias.expand(-1, -1, height, -1).contiguous()
        return self._bias_maps[(height, width)]

    def add_bias(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y`` (the bias-free convolution of ``x``) plus the bias map; with ``full_map`` over
        all of ``y``'s rows (what ONNX Runtime adds fastest)."""
        return y + self.bias_map(int(x.shape[-1]), int(y.shape[-2]) if self.full_map else 1)


class MergedDepthwise(_RowBiasMap):
    """kx1 + BN + 1xk + BN (:class:`MicroFactorizedDepthwise`) as one kxk depthwise convolution.

    The kernel of output channel o is ``P_o Q_o^T`` (the kx1 factor of its input channel times its
    1xk factor, BN scales included). The bias is not a constant: the 1xk convolution pads the
    first BN's bias with zeros, so columns within ``pad`` of the border get part of it. The bias
    is therefore the map ``bn2(conv_1k(b1 · 1))`` over one row, computed once per input width.

    Args:
        module: the factorized convolution, weights loaded.
    """

    def __init__(self, module: MicroFactorizedDepthwise, full_map: bool = False) -> None:
        super().__init__(full_map)
        k1, k2 = module.conv_k1, module.conv_1k
        w1, b1 = fold_bn(k1.weight, None, module.bn1)  # (C·m1, 1, k, 1), (C·m1,)
        w2, b2 = fold_bn(k2.weight, None, module.bn2)  # (C·m1·m2, 1, 1, k), (C·m1·m2,)
        m2 = k2.out_channels // k2.in_channels
        self.weight = nn.Parameter(w1.repeat_interleave(m2, 0) * w2)  # (C·m1·m2, 1, k, k)
        self.groups = k1.groups
        self.stride, self.padding = (k1.stride[0], k2.stride[1]), (k1.padding[0], k2.padding[1])
        self.dilation = (k1.dilation[0], k2.dilation[1])
        # what the 1xk factor needs to map the first bias b1 over a row of any width
        self.register_buffer('row_weight', w2.detach().clone())
        self.register_buffer('row_bias', b1.detach().clone().view(1, -1, 1, 1))
        self.register_buffer('out_bias', b2.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation,
                     self.groups)  # (N, C_out, H/s, W/s)
        return self.add_bias(y, x)

    def extra_repr(self) -> str:
        return (f'{self.groups}, {self.weight.shape[0]}, kernel={tuple(self.weight.shape[2:])}, '
                f'stride={self.stride}, dilation={self.dilation}')


class FactorizedDepthwise(nn.Module):
    """kx1 + BN + 1xk + BN (:class:`MicroFactorizedDepthwise` without channel multipliers) as two
    depthwise convolutions with the BN folded into their biases: exact at the borders with no
    bias map. What ``backend='onnxruntime'`` uses for multiplier-1 pairs: ONNX Runtime's NCHWc
    depthwise kernel runs kx1 then 1xk (k = 3, 5) 1.0-1.6x faster than one kxk convolution plus
    the bias-map ``Add``. Pairs with multipliers stay :class:`MergedDepthwise` (as fast either way).

    Args:
        module: the factorized convolution, weights loaded.
    """

    def __init__(self, module: MicroFactorizedDepthwise) -> None:
        super().__init__()
        self.conv_k1 = _fold_conv_bn(nn.Sequential(module.conv_k1, module.bn1))
        self.conv_1k = _fold_conv_bn(nn.Sequential(module.conv_1k, module.bn2))
        self.groups = self.conv_k1.groups

    @staticmethod
    def applies(module: MicroFactorizedDepthwise) -> bool:
        k1, k2 = module.conv_k1, module.conv_1k
        return k1.in_channels == k1.out_channels == k2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1k(self.conv_k1(x))  # (N, C, H/s, W/s)


class MergedStem(_RowBiasMap):
    """:class:`MicroStem` (3x1 conv + BN, 1x3 group conv + BN, shuffle, ReLU6) as one dense 3x3
    convolution with the shuffle folded into its output channels, a bias map, and ReLU6.

    Args:
        stem: the stem, weights loaded.
    """

    def __init__(self, stem: MicroStem, full_map: bool = False) -> None:
        super().__init__(full_map)
        k1, k2 = stem.conv_k1, stem.conv_1k
        w1, b1 = fold_bn(k1.weight, None, stem.bn1)  # (C1, 3, k, 1)
        w2, b2 = fold_bn(k2.weight, None, stem.bn2)  # (C1·m, 1, 1, k)
        m = k2.out_channels // k2.in_channels
        weight = w1.repeat_interleave(m, 0) * w2  # (C1·m, 3, k, k)
        perm = ChannelPermute.from_shuffle(stem.shuffle, weight.shape[0]).index
        self.weight = nn.Parameter(weight[perm])
        self.stride, self.padding = (k1.stride[0], k2.stride[1]), (k1.padding[0], k2.padding[1])
        self.dilation = (1, 1)
        self.register_buffer('row_weight', w2.detach()[perm].clone())
        self.register_buffer('row_bias', b1.detach().repeat_interleave(m)[perm].view(1, -1, 1, 1))
        self.register_buffer('out_bias', b2.detach()[perm].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, None, self.stride, self.padding)  # (N, C1·m, H/2, W/2)
        return F.relu6(self.add_bias(y, x))


class FastShiftMax(nn.Module):
    """:class:`DynamicShiftMax` with the fewest operators (same arithmetic as Eq. 4).

    ``y = max_k (a_k0 · x + a_k1 · x̂ + ...)``: one ``index_select`` per shift, one multiply and
    J-1 ``addcmul`` per fusion, K-1 ``maximum``. The hyper-function's pooling is a sum whose
    ``1/(H·W)`` is the ``alpha`` of the first FC's ``addmm``; the hard sigmoid and the rescaling
    to ``init ± act_max`` are one ``clamp`` (the scale folded into fc2) and one ``add``; the
    ``K·J`` coefficient vectors come from one reshape and one ``split``.

    Args:
        dsm: the trained activation.
    """

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__()
        self.channels, self.num_shifts, self.num_fusions = (dsm.channels, dsm.num_shifts,
                                                             dsm.num_fusions)
        self.register_buffer('index', dsm.index.clone(), persistent=False)  # (J, C)
        # a = (relu6(z + 3) / 6 - 0.5) · 2·act_max + init = clamp(s·(z + 3), 0, 6·s) + offset
        # with s = act_max / 3 > 0 folded into fc2's weight and bias
        scale = dsm.act_max / 3
        self.high, self.act_max = 6 * scale, dsm.act_max
        offset = (dsm.init.view(1, -1, 1) - dsm.act_max).expand(1, -1, self.channels)
        self.register_buffer('offset', offset.reshape(1, -1).clone(), persistent=False)  # (1, K·J·C)
        if dsm.fc is None:
            static = (dsm.static_coef.detach() - 0.5) * (2 * dsm.act_max)  # not clamped
            self.register_buffer('static_a', (static.view(1, -1, self.channels)
                                              + dsm.init.view(1, -1, 1)).reshape(1, -1, 1, 1))
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
        else:  # the mean's 1/(H·W) rides on the first FC's matrix product
            hid = torch.addmm(self.fc1.bias, x.sum((2, 3)), self.fc1.weight.t(),
                              alpha=1.0 / (int(h) * int(w)))
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

    def extra_repr(self) -> str:
        return f'channels={self.channels}, J={self.num_shifts}, K={self.num_fusions}'


def _as_permutation(index: torch.Tensor) -> nn.Module:
    """``ChannelPermute(index)``, or ``Identity`` when ``index`` leaves every channel in place."""
    if torch.equal(index, torch.arange(index.numel())):
        return nn.Identity()
    return ChannelPermute(index)


def _permute(module: nn.Module, channels: int) -> nn.Module:
    if isinstance(module, ChannelShuffle):
        return ChannelPermute.from_shuffle(module, channels)
    return module


def _compose(first: nn.Module, second: nn.Module, channels: int) -> tuple[nn.Module, nn.Module]:
    """``second(first(x))`` as ``(one permutation or Identity, Identity)``."""
    first, second = _permute(first, channels), _permute(second, channels)
    index = torch.arange(channels)
    for m in (first, second):
        if isinstance(m, ChannelPermute):
            index = index[m.index]
        elif not isinstance(m, nn.Identity):
            raise TypeError(f'cannot compose {type(m).__name__} as a permutation')
    return _as_permutation(index), nn.Identity()


def _width(module: nn.Module) -> int:
    """Output channels of a block part just converted."""
    if isinstance(module, FusedPointwise):
        return module.out_channels
    if isinstance(module, MergedDepthwise):
        return module.weight.shape[0]
    if isinstance(module, FactorizedDepthwise):
        return module.conv_1k.out_channels
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    raise TypeError(type(module).__name__)


def _fold_conv_bn(seq: nn.Sequential) -> nn.Conv2d:
    conv, bn = seq[0], seq[1]
    weight, bias = fold_bn(conv.weight, conv.bias, bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=weight.device, dtype=weight.dtype)
    fused.weight.data.copy_(weight)
    fused.bias.data.copy_(bias)
    return fused


def _convert_leaves(module: nn.Module, backend: str) -> None:
    """Replace, recursively, every convertible leaf part by its deploy form."""
    use_matmul = backend == 'pytorch'
    # ONNX Runtime: factorized pairs without multipliers stay two convolutions, and merged ones
    # get a full (1, C, H, W) bias map, which ORT adds 2-4x faster than it broadcasts (1, C, 1, W)
    ort = not use_matmul
    for name, child in list(module.named_children()):
        if isinstance(child, GroupPointwise):
            new = FusedPointwise.from_group_pointwise(child, use_matmul)
        elif isinstance(child, MicroFactorizedDepthwise):
            new = (FactorizedDepthwise(child) if ort and FactorizedDepthwise.applies(child)
                   else MergedDepthwise(child, full_map=ort))
        elif isinstance(child, MicroStem):
            new = MergedStem(child, full_map=ort)
        elif isinstance(child, DynamicShiftMax):
            new = FastShiftMax(child)
        elif (isinstance(child, nn.Sequential) and len(child) == 2
              and isinstance(child[0], nn.Conv2d) and isinstance(child[1], nn.BatchNorm2d)):
            new = _fold_conv_bn(child)  # the full-rank partner's kxk depthwise
        else:
            _convert_leaves(child, backend)
            continue
        setattr(module, name, new)


def _conjugate_depthwise(dw: nn.Module, perm: torch.Tensor) -> None:
    """Rewrite a per-channel ``dw`` so that ``dw(z[:, perm]) == dw'(z)[:, perm]``."""
    inv = torch.argsort(perm)  # the inverse permutation
    if isinstance(dw, FactorizedDepthwise):
        for conv in (dw.conv_k1, dw.conv_1k):
            conv.weight.data, conv.bias.data = conv.weight.data[inv], conv.bias.data[inv]
        return
    dw.weight.data = dw.weight.data[inv]
    dw.row_weight, dw.out_bias = dw.row_weight[inv], dw.out_bias[inv]
    dw.row_bias = dw.row_bias[:, inv]
    dw._bias_maps = {}


def _conjugate_shift_max(act: 'FastShiftMax', perm: torch.Tensor) -> None:
    """Rewrite ``act`` so that ``act(v[:, perm]) == act'(v)[:, perm]`` (Shift-Max is covariant
    under channel permutations: shift index, hyper-function input columns and output rows)."""
    c = act.channels
    inv = torch.argsort(perm)  # the inverse permutation
    index = torch.empty_like(act.index)
    index[:, perm] = perm[act.index]  # idx'[P[c]] = P[idx[c]]
    act.index = index
    rows = (torch.arange(act.offset.shape[1] // c).view(-1, 1) * c + inv.view(1, -1)).view(-1)
    if act.fc1 is None:
        act.static_a = act.static_a[:, rows]
    else:
        act.fc1.weight.data = act.fc1.weight.data[:, inv]
        act.fc2.weight.data = act.fc2.weight.data[rows]
        act.fc2.bias.data = act.fc2.bias.data[rows]


def _sink_shuffle1(block: nn.Module) -> None:
    """Block C / B: ``shuffle2(act2(depthwise(shuffle1(x))))`` with a per-channel depthwise and a
    Shift-Max or ReLU6 ``act2`` equals ``(shuffle1 ∘ shuffle2)(act2'(depthwise'(x)))``: the two
    permutations become one ``Gather``."""
    dw, act, p1 = block.depthwise, block.act2, block.shuffle1
    per_channel = ((isinstance(dw, MergedDepthwise) and dw.groups == dw.weight.shape[0])
                   or isinstance(dw, FactorizedDepthwise))
    if not (isinstance(p1, ChannelPermute) and per_channel and isinstance(act, (FastShiftMax, nn.ReLU6))
            and isinstance(block.shuffle2, (ChannelPermute, nn.Identity))):
        return
    perm = p1.index
    _conjugate_depthwise(dw, perm)
    if isinstance(act, FastShiftMax):
        _conjugate_shift_max(act, perm)
    if isinstance(block.shuffle2, ChannelPermute):
        perm = perm[block.shuffle2.index]
    block.shuffle1 = nn.Identity()
    block.shuffle2 = _as_permutation(perm)


def _scale_output(conv: nn.Module, lam: float) -> bool:
    """Multiply the output of a converted convolution by ``lam`` (weights and biases)."""
    if isinstance(conv, FactorizedDepthwise):
        conv = conv.conv_1k
    if isinstance(conv, (FusedPointwise, nn.Conv2d)):
        conv.weight.data, conv.bias.data = conv.weight.data * lam, conv.bias.data * lam
    elif isinstance(conv, MergedDepthwise):
        conv.weight.data = conv.weight.data * lam
        conv.row_weight, conv.out_bias = conv.row_weight * lam, conv.out_bias * lam
        conv._bias_maps = {}
    else:
        return False
    return True


def _prescale_shift_max(module: nn.Module) -> None:
    """Every (convolution, Dynamic Shift-Max) pair of the blocks: the convolution outputs λ·x and
    the activation takes the hard sigmoid as is (:meth:`FastShiftMax.prescale`)."""
    pairs = []  # (convolution, the activation right after it)
    for m in module.modules():
        if isinstance(m, LiteCombination):
            pairs.append((m.depthwise, m.act))
        elif isinstance(m, MicroBlockA):
            pairs.append((m.lite.compress, m.act2))
        elif isinstance(m, MicroBlockC):
            pairs += [(m.expand, m.act1), (m.depthwise, m.act2), (m.compress, m.act3)]
        elif isinstance(m, ExpansionBlock):
            pairs.append((m.expand, m.act))
    for conv, act in pairs:
        if (isinstance(act, FastShiftMax) and act.fc1 is not None
                and act.act_max > 0 and act.input_scale == 1.0  # not twice
                and isinstance(conv, (FusedPointwise, MergedDepthwise, FactorizedDepthwise))):
            _scale_output(conv, act.prescale())


def _merge_block_permutations(module: nn.Module) -> None:
    """Compose the consecutive shuffles of every block (their forwards call them in a row);
    the shuffle inside a Micro-Factorized pointwise convolution (MR-ASPP head) becomes one
    permutation too."""
    for m in module.modules():
        if isinstance(m, MicroFactorizedPointwise):
            m.shuffle = _permute(m.shuffle, _width(m.q))
        if isinstance(m, LiteCombination):
            m.shuffle, m.shuffle2 = _compose(m.shuffle, m.shuffle2, _width(m.depthwise))
        elif isinstance(m, MicroBlockA):
            m.shuffle2, m.shuffle2b = _compose(m.shuffle2, m.shuffle2b,
                                               m.lite.compress.out_channels)
        elif isinstance(m, MicroBlockC):  # B too
            m.shuffle1 = _permute(m.shuffle1, m.expand.out_channels)
            m.shuffle2 = _permute(m.shuffle2, _width(m.depthwise))
            m.shuffle3, m.shuffle3b = _compose(m.shuffle3, m.shuffle3b, m.compress.out_channels)
            _sink_shuffle1(m)


def convert_backbone(backbone: nn.Module, backend: str = 'pytorch') -> nn.Module:
    """Rewrite a MicroNet backbone (or any module holding MicroNet parts) in place.

    Args:
        backbone: the trained module; put in eval mode.
        backend: ``'pytorch'`` (grouped 1x1 convolutions as batched matmuls) or
            ``'onnxruntime'`` (as grouped ``Conv``; what ``tools/deployment/export_onnx.py
            --deploy`` exports).
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend={backend!r}; legal values: {list(BACKENDS)}')
    backbone.eval()
    with torch.no_grad():
        _convert_leaves(backbone, backend)
        _merge_block_permutations(backbone)
        if backend == 'onnxruntime':
            _prescale_shift_max(backbone)
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone


def convert_cls_head(head: nn.Module) -> nn.Module:
    """Fold :class:`MicroNetClsHead`'s BatchNorm1d layers into its FC layers, drop the dropout."""
    head.eval()
    with torch.no_grad():
        for fc_name, bn_name in (('fc1', 'bn1'), ('fc2', 'bn2')):
            fc, bn = getattr(head, fc_name), getattr(head, bn_name)
            weight, bias = fold_bn(fc.weight, fc.bias, bn)
            fused = nn.Linear(fc.in_features, fc.out_features, device=weight.device,
                              dtype=weight.dtype)
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
            setattr(head, fc_name, fused)
            setattr(head, bn_name, nn.Identity())
        head.dropout = nn.Identity()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def switch_to_deploy(model: nn.Module, backend: str = 'pytorch') -> nn.Module:
    """Rewrite every MicroNet part of ``model`` (backbone, classifier head, or a whole
    classifier / detector / segmentor / pose model) into its deploy form, in place.

    The result is for inference only (eval mode, no gradients); outputs equal the original's up
    to float rounding.

    Args:
        model: the trained model, weights loaded.
        backend: ``'pytorch'`` or ``'onnxruntime'``, see :func:`convert_backbone`.

    Returns:
        ``model``, converted.
    """
    from micronet_mm.models.heads.cls_head import MicroNetClsHead
    model.eval()
    heads = [m for m in model.modules() if isinstance(m, MicroNetClsHead)]
    for head in heads:
        convert_cls_head(head)
    convert_backbone(model, backend)
    if hasattr(model, 'deploy'):
        model.deploy = True
    return model
