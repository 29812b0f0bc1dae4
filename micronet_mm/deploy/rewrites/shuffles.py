"""Channel shuffles in deploy form: each one permutation, consecutive ones composed, and the
shuffle before a block's depthwise convolution moved past it (one ``Gather`` fewer)."""
from __future__ import annotations

from torch import nn

from micronet_mm.ops import LiteCombination, MicroBlockA, MicroBlockC, MicroFactorizedPointwise

from ..common import ChannelPermute, as_permutation, compose, permute
from .depthwise import FactorizedDepthwise, MergedDepthwise, conjugate_depthwise
from .pointwise import FusedPointwise
from .shift_max import DeployShiftMax, conjugate_shift_max


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


def _sink_shuffle1(block: nn.Module) -> None:
    """Block C / B: ``shuffle2(act2(depthwise(shuffle1(x))))`` with a per-channel depthwise and a
    Shift-Max or ReLU6 ``act2`` equals ``(shuffle1 ∘ shuffle2)(act2'(depthwise'(x)))``: the two
    permutations become one ``Gather``."""
    dw, act, p1 = block.depthwise, block.act2, block.shuffle1
    per_channel = ((isinstance(dw, MergedDepthwise) and dw.groups == dw.weight.shape[0])
                   or isinstance(dw, FactorizedDepthwise))
    if not (isinstance(p1, ChannelPermute) and per_channel
            and isinstance(act, (DeployShiftMax, nn.ReLU6))
            and isinstance(block.shuffle2, (ChannelPermute, nn.Identity))):
        return
    perm = p1.index
    conjugate_depthwise(dw, perm)
    if isinstance(act, DeployShiftMax):
        conjugate_shift_max(act, perm)
    if isinstance(block.shuffle2, ChannelPermute):
        perm = perm[block.shuffle2.index]
    block.shuffle1 = nn.Identity()
    block.shuffle2 = as_permutation(perm)


def merge_block_permutations(module: nn.Module) -> None:
    """Compose the consecutive shuffles of every block (their forwards call them in a row);
    the shuffle inside a Micro-Factorized pointwise convolution (MR-ASPP head) becomes one
    permutation too."""
    for m in module.modules():
        if isinstance(m, MicroFactorizedPointwise):
            m.shuffle = permute(m.shuffle, _width(m.q))
        if isinstance(m, LiteCombination):
            m.shuffle, m.shuffle2 = compose(m.shuffle, m.shuffle2, _width(m.depthwise))
        elif isinstance(m, MicroBlockA):
            m.shuffle2, m.shuffle2b = compose(m.shuffle2, m.shuffle2b,
                                               m.lite.compress.out_channels)
        elif isinstance(m, MicroBlockC):  # B too
            m.shuffle1 = permute(m.shuffle1, m.expand.out_channels)
            m.shuffle2 = permute(m.shuffle2, _width(m.depthwise))
            m.shuffle3, m.shuffle3b = compose(m.shuffle3, m.shuffle3b, m.compress.out_channels)
            _sink_shuffle1(m)


