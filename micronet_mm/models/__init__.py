"""MicroNet models, registered in the OpenMMLab toolboxes' ``MODELS`` registries.

Configs load them with ``custom_imports = dict(imports=['micronet_mm.models'])``.
"""
import importlib

from micronet_mm.registry import TOOLBOXES, register_in
from .auto_channels import refuse_unfilled_auto
from .backbones import ARCH_SETTINGS, MicroNet
from .classifiers import MicroNetImageClassifier, MutualLearningClassifier
from .detectors import MicroNetFasterRCNN, MicroNetRetinaNet
from .heads import MicroNetClsHead, MRASPPHead
from .heads.pose_head import MicroPoseHead
from .lraspp import PaperLRASPPHead, PaperMobileNetV3
from .pose import MicroNetTopdownPoseEstimator
from .segmentors import MicroNetEncoderDecoder

register_in(TOOLBOXES, MicroNet)
register_in(('mmpretrain',), MicroNetClsHead)
register_in(('mmpretrain',), MicroNetImageClassifier)
register_in(('mmpretrain',), MutualLearningClassifier)
register_in(('mmdet',), MicroNetRetinaNet)
register_in(('mmdet',), MicroNetFasterRCNN)
register_in(('mmseg',), MRASPPHead)
register_in(('mmseg',), MicroNetEncoderDecoder)
register_in(('mmpose',), MicroPoseHead)
register_in(('mmseg',), PaperMobileNetV3)  # the benchmark's LR-ASPP baseline
register_in(('mmseg',), PaperLRASPPHead)
register_in(('mmpose',), MicroNetTopdownPoseEstimator)
for _toolbox in TOOLBOXES:
    refuse_unfilled_auto(importlib.import_module(f'{_toolbox}.registry').MODELS)

__all__ = ['ARCH_SETTINGS', 'MRASPPHead', 'MicroNet', 'MicroNetClsHead', 'MicroNetEncoderDecoder',
           'MicroNetFasterRCNN', 'MicroNetImageClassifier', 'MicroNetRetinaNet',
           'MicroNetTopdownPoseEstimator', 'MicroPoseHead', 'MutualLearningClassifier']
