from .cls_head import MicroNetClsHead

__all__ = ['MicroNetClsHead']
