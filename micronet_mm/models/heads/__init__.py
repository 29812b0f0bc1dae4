from .cls_head import MicroNetClsHead
from .mr_aspp_head import MRASPPHead

__all__ = ['MRASPPHead', 'MicroNetClsHead']
