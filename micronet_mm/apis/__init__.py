"""Python APIs for using trained MicroNet models (pose and segmentation demos)."""
from .pose import PoseResult, draw_poses, estimate_poses, init_pose_model
from .seg import inference_segmentor, init_segmentor, load_rgb_image, segment

__all__ = ['PoseResult', 'draw_poses', 'estimate_poses', 'inference_segmentor',
           'init_pose_model', 'init_segmentor', 'load_rgb_image', 'segment']
