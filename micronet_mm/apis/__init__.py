"""User-facing inference APIs."""
from .pose import PoseResult, draw_poses, estimate_poses, init_pose_model

__all__ = ['PoseResult', 'draw_poses', 'estimate_poses', 'init_pose_model']
