"""Python APIs for using trained MicroNet models."""
from .seg import inference_segmentor, init_segmentor, load_rgb_image, segment

__all__ = ['inference_segmentor', 'init_segmentor', 'load_rgb_image', 'segment']
