"""Python APIs for using trained MicroNet models (pose and segmentation demos)."""
from .image import load_rgb_image
from .pose import PoseResult, draw_poses, estimate_poses, init_pose_model
from .seg import inference_segmentor, init_segmentor, segment

__all__ = ['PoseResult', 'draw_poses', 'estimate_poses', 'inference_segmentor',
           'init_pose_model', 'init_segmentor', 'load_rgb_image', 'segment']
