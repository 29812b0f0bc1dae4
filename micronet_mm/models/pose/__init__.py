"""Top-down pose estimation with MicroNet (arXiv v1 §6.1)."""
from mmpose.models import TopdownPoseEstimator

from ..auto_channels import with_auto_channels

#: mmpose's ``TopdownPoseEstimator`` with ``head.in_channels='auto'`` taken from the backbone
MicroNetTopdownPoseEstimator = with_auto_channels(TopdownPoseEstimator, 'head')

__all__ = ['MicroNetTopdownPoseEstimator']
