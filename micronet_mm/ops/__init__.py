"""MicroNet operators: each module ties to an equation or figure of the paper."""
from .blocks import (BLOCKS, ActSettings, BlockSpec, ExpansionBlock, MicroBlockA, MicroBlockB,
                     MicroBlockC, make_activation)
from .depthwise import MicroFactorizedDepthwise
from .lite import LiteCombination
from .norm import DEFAULT_NORM_CFG, norm_layer
from .pointwise import ChannelShuffle, GroupPointwise, MicroFactorizedPointwise, adaptive_groups
from .shift_max import DynamicShiftMax, make_divisible, shift_index
from .spatial_attention import SpatialAttention
from .stem import MicroStem

__all__ = [
    'BLOCKS', 'DEFAULT_NORM_CFG', 'ActSettings', 'BlockSpec', 'ChannelShuffle', 'DynamicShiftMax',
    'ExpansionBlock',
    'GroupPointwise', 'LiteCombination', 'MicroBlockA', 'MicroBlockB', 'MicroBlockC',
    'MicroFactorizedDepthwise', 'MicroFactorizedPointwise', 'MicroStem', 'SpatialAttention',
    'adaptive_groups',
    'make_activation', 'make_divisible', 'norm_layer', 'shift_index',
]
