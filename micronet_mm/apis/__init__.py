"""Python APIs for using trained MicroNet models (pose and segmentation demos) and exported
ones (:mod:`.exported`)."""
from .exported import ExportedModel, load_exported
from .image import load_rgb_image
from .pose import PoseResult, draw_poses, estimate_poses, init_pose_model
from .seg import inference_segmentor, init_segmentor, segment

__all__ = ['ExportedModel', 'PoseResult', 'draw_poses', 'estimate_poses', 'inference_segmentor',
           'init_pose_model', 'init_segmentor', 'load_exported', 'load_rgb_image',
           'segment']
