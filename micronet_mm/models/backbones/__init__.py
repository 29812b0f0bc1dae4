from .micronet import MicroNet, build_stage_specs
from .micronet_archs import ARCH_SETTINGS

__all__ = ['ARCH_SETTINGS', 'MicroNet', 'build_stage_specs']
