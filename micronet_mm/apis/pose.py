"""Top-down keypoint inference with a MicroNet pose model, on top of mmpose's ``init_model`` /
``inference_topdown`` and ``PoseLocalVisualizer``.

    model = init_pose_model('configs/pose/td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py',
                            'work_dirs/.../best_coco_AP_epoch_250.pth')
    result = estimate_poses(model, 'person.jpg', boxes=[[x0, y0, x1, y1]])  # or boxes=None
    result.keypoints        # (N, 17, 2) pixel coordinates in the image
    result.keypoint_scores  # (N, 17)
    draw_poses(model, 'person.jpg', result, 'person_pose.jpg')

Inputs are checked first, so that bad input gets an error naming what was wrong:
a missing or unreadable file, an array that is not an image; grayscale and RGBA images are
turned into 3-channel ones; ``boxes=None`` means one person filling the whole image, an empty box
list means no person (an empty result); a box outside the image is an error.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from micronet_mm.errors import InvalidInputError, MissingInputError
from micronet_mm.limits import image_header_pixels

from ..fileio import atomic_write

ArrayLike = np.ndarray | list | tuple


@dataclass
class PoseResult:
    """Keypoints of N persons, in image pixels.

    Attributes:
        keypoints: (N, K, 2) float array, (x, y) per keypoint.
        keypoint_scores: (N, K) float array, heatmap maxima (higher is surer).
        boxes: (N, 4) float array, the person boxes used (x0, y0, x1, y1), clipped to the image.
        data_samples: mmpose's ``PoseDataSample`` per person (for visualisation).
    """
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    boxes: np.ndarray
    data_samples: list = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.keypoints)


def init_pose_model(config, checkpoint: str | None = None, *, device: str = 'cpu',
                    strict: bool = True) -> nn.Module:
    """Build a top-down pose model from a config (path or ``Config``) and load a checkpoint.

    Args:
        config: config file path or ``mmengine.Config``.
        checkpoint: checkpoint path; ``None`` keeps the initial (untrained) weights.
        device: torch device string.
        strict: refuse a checkpoint that lacks weights of the model or has other shapes
            (:func:`micronet_mm.checkpoint.check_weights`); ``False`` only warns.

    Raises:
        MissingInputError: the config or checkpoint does not exist.
        CheckpointError: the checkpoint is unreadable, unsafe or for another model.
    """
    import micronet_mm.models  # noqa: F401  (registers MicroNet in mmpose)
    from mmpose.apis import init_model

    from micronet_mm.checkpoint import check_weights
    if isinstance(config, str) and not osp.isfile(config):
        raise MissingInputError(f'init_pose_model: config file not found: {config}')
    if checkpoint is not None and '://' not in checkpoint and not osp.isfile(checkpoint):
        raise MissingInputError(f'init_pose_model: checkpoint not found: {checkpoint}')
    model = init_model(config, checkpoint, device=device)
    if checkpoint is not None:
        check_weights(model, checkpoint, source=checkpoint, strict=strict)
    return model


def load_image(image: str | np.ndarray) -> np.ndarray:
    """A (H, W, 3) uint8 BGR array (mmcv's order) from a file path or an RGB/gray/RGBA array."""
    import mmcv

    if isinstance(image, str):
        if not osp.isfile(image):
            raise MissingInputError(f'estimate_poses: image file not found: {image}')
        image_header_pixels(image)  # before OpenCV allocates
        try:
            img = mmcv.imread(image, flag='color')  # gray and RGBA files become BGR
        except Exception as e:  # noqa: BLE001  (decoders raise various types)
            raise InvalidInputError(f'estimate_poses: cannot read image file {image}: '
                                    f'{" ".join(str(e).split())[:200]}') from e
        if img is None:
            raise InvalidInputError(f'estimate_poses: cannot read image file {image} (not an '
                                    'image or an unsupported format)')
        return img
    if not isinstance(image, np.ndarray):
        raise TypeError(f'estimate_poses: image must be a file path or a numpy array, got '
                        f'{type(image).__name__}')
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:  # grayscale
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 1:
        raise InvalidInputError(f'estimate_poses: image array must be (H, W), (H, W, 1), '
                                f'(H, W, 3) or (H, W, 4), got shape {image.shape}')
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and np.nanmax(img) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., 2::-1])  # RGB(A) -> BGR, alpha dropped


def check_boxes(boxes: ArrayLike | None, height: int, width: int) -> np.ndarray:
    """(N, 4) float32 boxes x0, y0, x1, y1 clipped to the image; ``None`` is the whole image."""
    if boxes is None:
        return np.array([[0, 0, width, height]], dtype=np.float32)
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidInputError(f'estimate_poses: boxes must be (N, 4) as x0, y0, x1, y1, got '
                                f'shape {np.asarray(boxes).shape}')
    for i, (x0, y0, x1, y1) in enumerate(arr):
        if not np.isfinite([x0, y0, x1, y1]).all() or x1 <= x0 or y1 <= y0:
            raise InvalidInputError(f'estimate_poses: box {i} {arr[i].tolist()} is not a valid '
                                    'x0, y0, x1, y1 box (finite, x1 > x0, y1 > y0)')
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise InvalidInputError(f'estimate_poses: box {i} {arr[i].tolist()} lies outside '
                                    f'the {width}x{height} image')
    arr[:, 0::2] = arr[:, 0::2].clip(0, width)
    arr[:, 1::2] = arr[:, 1::2].clip(0, height)
    return arr


def estimate_poses(model: nn.Module, image: str | np.ndarray,
                   boxes: ArrayLike | None = None) -> PoseResult:
    """Keypoints with scores for each person box of an image.

    Args:
        model: a model from :func:`init_pose_model`.
        image: file path, or an array in RGB order (as scikit-image and PIL give), grayscale
            (H, W) or RGBA (H, W, 4) also accepted; floats in [0, 1] are scaled to [0, 255].
        boxes: person boxes (N, 4) as x0, y0, x1, y1 in pixels; ``None``: the whole image is one
            person; an empty list: no person, empty result.
    """
    from mmpose.apis import inference_topdown

    img = load_image(image)
    bboxes = check_boxes(boxes, *img.shape[:2])
    k = model.dataset_meta['num_keypoints'] if hasattr(model, 'dataset_meta') else 17
    if len(bboxes) == 0:
        return PoseResult(np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32), bboxes)
    samples = inference_topdown(model, img, bboxes, bbox_format='xyxy')
    keypoints = np.concatenate([s.pred_instances.keypoints for s in samples])
    scores = np.concatenate([s.pred_instances.keypoint_scores for s in samples])
    return PoseResult(keypoints.astype(np.float32), scores.astype(np.float32), bboxes, samples)


def draw_poses(model: nn.Module, image: str | np.ndarray, result: PoseResult,
               out_file: str | None = None, *, kpt_thr: float = 0.0,
               radius: int = 3, thickness: int = 2) -> np.ndarray:
    """Draw the skeletons of ``result`` on the image with mmpose's ``PoseLocalVisualizer``.

    Returns the drawn RGB image and writes it to ``out_file`` when given (folders are made).

    Args:
        model: the model (its ``dataset_meta`` gives the skeleton and colours).
        image: the image given to :func:`estimate_poses`.
        result: its result.
        out_file: where to write the image (any format OpenCV writes, from the extension).
        kpt_thr: keypoints with lower scores are not drawn.
        radius: keypoint radius in pixels.
        thickness: limb thickness in pixels.
    """
    import mmcv
    from mmpose.structures import merge_data_samples
    from mmpose.visualization import PoseLocalVisualizer

    rgb = mmcv.bgr2rgb(load_image(image))
    visualizer = PoseLocalVisualizer(radius=radius, line_width=thickness, kpt_color=None)
    visualizer.set_dataset_meta(model.dataset_meta)
    if len(result) == 0:
        drawn = rgb
    else:
        drawn = visualizer.add_datasample(
            'pose', rgb, data_sample=merge_data_samples(result.data_samples), draw_gt=False,
            draw_bbox=True, draw_heatmap=False, show=False, kpt_thr=kpt_thr)
    if out_file is not None:
        with atomic_write(out_file) as tmp:  # folders are made
            if not mmcv.imwrite(mmcv.rgb2bgr(drawn), tmp):
                raise ValueError(f'cannot write {out_file}: OpenCV does not know the format '
                                 'of its extension (use .jpg or .png)')
    return drawn
