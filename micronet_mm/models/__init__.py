"""MicroNet models, registered in the OpenMMLab toolboxes' ``MODELS`` registries.

Configs load them with ``custom_imports = dict(imports=['micronet_mm.models'])``.
"""
from micronet_mm.registry import TOOLBOXES, register_in
from .backbones import ARCH_SETTINGS, MicroNet
from .classifiers import MicroNetImageClassifier, MutualLearningClassifier
from .heads import MicroNetClsHead
from .heads.pose_head import MicroPoseHead
from .pose import MicroNetTopdownPoseEstimator

register_in(TOOLBOXES, MicroNet)
register_in(('mmpretrain',), MicroNetClsHead)
register_in(('mmpretrain',), MicroNetImageClassifier)
register_in(('mmpretrain',), MutualLearningClassifier)
register_in(('mmpose',), MicroPoseHead)
register_in(('mmpose',), MicroNetTopdownPoseEstimator)

__all__ = ['ARCH_SETTINGS', 'MicroNet', 'MicroNetClsHead', 'MicroNetImageClassifier',
           'MicroNetTopdownPoseEstimator', 'MicroPoseHead', 'MutualLearningClassifier']
