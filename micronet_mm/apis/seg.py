"""Semantic segmentation with a MicroNet + MR-ASPP model: image in, class map out.

    from micronet_mm.apis import inference_segmentor
    classes = inference_segmentor(CONFIG, CHECKPOINT, 'street.png')  # (H, W) int64 train ids

Built on mmseg's ``init_model`` / ``inference_model``, so the config's test pipeline and
``test_cfg`` apply (``slide=(h, w)`` switches to sliding-window inference for large images).
Images are read here, not by mmseg, so that grayscale, palette and RGBA files and arrays are all
turned into RGB the same way; bad input raises an error that says what was wrong.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image, UnidentifiedImageError

import micronet_mm  # noqa: F401  (safe checkpoint loading)
from micronet_mm.errors import InvalidInputError, MissingInputError
from micronet_mm.limits import image_header_pixels

ImageLike = str | os.PathLike | np.ndarray


def read_image_file(path: str) -> np.ndarray:
    """The pixels of an image file: ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` uint8 for 16-bit and
    32-bit integer grayscale files, scaled by 255 / 65535 (PIL would clip them to 255).

    Raises:
        MissingInputError: the file does not exist.
        InvalidInputError: not an image, truncated or corrupt, or float / out-of-range pixels.
        LimitError: more pixels than ``MICRONET_MM_MAX_IMAGE_PIXELS`` (read from the header).
    """
    if not osp.isfile(path):
        raise MissingInputError(f'image file not found: {path!r}')
    image_header_pixels(path)  # before anything is decoded
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith('I'):  # 'I;16', 'I;16B', ... and 32-bit 'I'
                gray = np.asarray(im).astype(np.int64)
                if gray.min() < 0 or gray.max() > 65535:
                    raise InvalidInputError(
                        f'{path!r}: {im.mode} pixel values {gray.min()}..{gray.max()} lie '
                        'outside 0..65535; save it as an 8-bit or 16-bit image')
                return np.round(gray * (255 / 65535)).astype(np.uint8)
            if im.mode == 'F':
                raise InvalidInputError(f'{path!r} has float pixels (mode F); save it as an '
                                        '8-bit or 16-bit image')
            return np.asarray(im.convert('RGB'))
    except UnidentifiedImageError:
        raise InvalidInputError(f'{path!r} is not an image file PIL can read') from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, broken chunks
        if isinstance(e, InvalidInputError):
            raise
        raise InvalidInputError(f'cannot read image {path!r}: {e} (truncated or corrupt); '
                                'replace the file') from None


def load_rgb_image(image: ImageLike) -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 RGB array.

    Args:
        image: a file path (see :func:`read_image_file`), or an array ``(H, W)`` (grayscale),
            ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA; alpha is dropped). Arrays
            may be uint8, or float in [0, 1] (as scikit-image returns them).

    Raises:
        MissingInputError: the path does not exist.
        InvalidInputError: the file is not an image, or the array has a shape or dtype we
            cannot read.
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_image_file(os.fspath(image))
    if not isinstance(image, np.ndarray):
        raise TypeError(f'image must be a path or a numpy array, got {type(image).__name__}')
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidInputError(f'image array must be (H, W), (H, W, 1), (H, W, 3) or '
                                f'(H, W, 4); got shape {image.shape}')
    arr = arr[..., :3]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f'image is empty: shape {image.shape}')
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool:
        arr = arr.astype(np.float64)
        if np.nanmax(arr) <= 1.0:  # scikit-image convention
            arr = arr * 255.0
        return np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise InvalidInputError(f'integer image values must lie in 0..255; got '
                                    f'{arr.min()}..{arr.max()} ({arr.dtype})')
        return arr.astype(np.uint8)
    raise InvalidInputError(f'unsupported image dtype {arr.dtype}')


def init_segmentor(config: str | Config, checkpoint: str | None = None, *, device: str = 'cpu',
                   slide: tuple[int, int] | None = None, cfg_options: dict | None = None,
                   strict: bool = True):
    """Build the segmentor of an mmseg config and load its weights.

    Args:
        config: config file or ``Config``.
        checkpoint: weights file; ``None`` leaves the model untrained (for tests).
        device: torch device, e.g. ``'cpu'`` or ``'cuda:0'``.
        slide: crop size ``(h, w)`` of sliding-window inference, windows overlapping by a
            quarter; ``None`` keeps the config's ``test_cfg``.
        cfg_options: further config overrides.
        strict: refuse a checkpoint that lacks weights of the model or has other shapes
            (:func:`micronet_mm.checkpoint.check_weights`); ``False`` only warns.

    Raises:
        MissingInputError: the config or checkpoint file does not exist.
        CheckpointError: the checkpoint is unreadable, unsafe or for another model.
    """
    from mmseg.apis import init_model
    import micronet_mm.models  # noqa: F401  (registers MicroNet, MRASPPHead, ...)
    from micronet_mm.checkpoint import check_weights, safe_load, state_dict_of
    if isinstance(config, (str, os.PathLike)) and not osp.isfile(config):
        raise MissingInputError(f'config file not found: {config!r}')
    if checkpoint is not None and '://' not in str(checkpoint) and not osp.isfile(checkpoint):
        raise MissingInputError(f'checkpoint file not found: {checkpoint!r}')
    cfg = Config.fromfile(config) if not isinstance(config, Config) else config.copy()
    options = dict(cfg_options or {})
    if slide is not None:
        h, w = slide
        options['model.test_cfg'] = dict(mode='slide', crop_size=(h, w),
                                         stride=(max(1, h * 3 // 4), max(1, w * 3 // 4)))
    local = checkpoint is not None and '://' not in str(checkpoint)
    loaded = safe_load(checkpoint, map_location='cpu') if local else None
    # mmseg's init_model reads checkpoint['meta'] (a bare KeyError without it); a bare state
    # dict, or one without meta, is loaded here and takes its classes from the config's dataset
    bare = local and not isinstance(loaded.get('meta') if isinstance(loaded, dict) else None,
                                    dict)
    model = init_model(cfg, None if bare else checkpoint, device=device,
                       cfg_options=options or None)
    if checkpoint is not None:
        check_weights(model, loaded if local else checkpoint, source=str(checkpoint),
                      strict=strict)
    if bare:
        model.load_state_dict(state_dict_of(loaded), strict=False)
        model.dataset_meta = config_dataset_meta(cfg)
    return model


def config_dataset_meta(cfg: Config) -> dict:
    """Classes and palette of the config's test dataset (its class's ``METAINFO`` updated by
    the config's ``metainfo``)."""
    from mmseg.registry import DATASETS
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    meta = dict(getattr(DATASETS.get(dataset.get('type', '')), 'METAINFO', {}))
    meta.update(dataset.get('metainfo') or {})
    return meta


#: images more elongated than this are padded (edge pixels) to it for inference, the class map
#: cropped back: a 10000x10 image resized to the test scale would be a few pixels thin, less
#: than the network's stride
MAX_ASPECT = 4
#: largest image (after that padding) accepted, in pixels
MAX_PIXELS = 64 * 2**20


def _pad_to_aspect(rgb: np.ndarray, name: str) -> np.ndarray:
    """``rgb`` padded at the bottom or right to an aspect ratio of at most :data:`MAX_ASPECT`."""
    h, w = rgb.shape[:2]
    ph, pw = max(h, -(-w // MAX_ASPECT)), max(w, -(-h // MAX_ASPECT))
    if ph * pw > MAX_PIXELS:
        raise InvalidInputError(
            f'{name}: {w}x{h} image is too large ({ph * pw} pixels, after padding to an aspect '
            f'ratio of {MAX_ASPECT}; the limit is {MAX_PIXELS}); crop or resize it')
    if (ph, pw) == (h, w):
        return rgb
    return np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode='edge')


def segment(model, image: ImageLike, *, return_sample: bool = False):
    """Class map of one image with a model from :func:`init_segmentor`.

    Args:
        model: the segmentor.
        image: see :func:`load_rgb_image`; images more elongated than :data:`MAX_ASPECT` are
            padded for inference and the result cropped back.
        return_sample: also return mmseg's ``SegDataSample`` (for its visualizer).

    Returns:
        ``(H, W)`` int64 array of class indices at the image's own size (and the sample).

    Raises:
        InvalidInputError: the image cannot be read or is larger than :data:`MAX_PIXELS`.
    """
    from mmengine.registry import DefaultScope
    from mmengine.structures import PixelData
    from mmseg.apis import inference_model
    rgb = load_rgb_image(image)
    h, w = rgb.shape[:2]
    padded = _pad_to_aspect(rgb, repr(os.fspath(image)) if isinstance(
        image, (str, os.PathLike)) else 'image array')
    # mmseg builds the test pipeline from the *current* default scope, which another toolbox
    # used in the same process (e.g. the pose API) may have changed since init_segmentor.
    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope', 'mmseg')):
        sample = inference_model(model, np.ascontiguousarray(padded[..., ::-1]))  # BGR
    if padded is not rgb:
        for key in ('pred_sem_seg', 'seg_logits'):
            if key in sample:
                sample.set_data({key: PixelData(data=sample.get(key).data[:, :h, :w])})
    classes = sample.pred_sem_seg.data[0].to(torch.int64).cpu().numpy()
    return (classes, sample) if return_sample else classes


def inference_segmentor(config: str | Config, checkpoint: str | None, image: ImageLike, *,
                        device: str = 'cpu', slide: tuple[int, int] | None = None) -> np.ndarray:
    """One call: build the model, load the checkpoint, return the ``(H, W)`` class map."""
    return segment(init_segmentor(config, checkpoint, device=device, slide=slide), image)
