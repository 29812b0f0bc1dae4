"""The one image loader of the APIs (pose, segmentation) and the demos.

:func:`load_rgb_image` turns a file path or an array into an ``(H, W, 3)`` uint8 RGB array with
one set of rules: grayscale, palette and RGBA files and arrays become RGB (alpha dropped); 16-
and 32-bit integer grayscale files are scaled by 255 / 65535; float arrays in [0, 1] are scaled
to 0..255 (scikit-image's convention), other floats clipped; integer arrays must lie in 0..255
and are refused otherwise (never clipped). Bad input raises one error naming the problem.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
from PIL import Image, UnidentifiedImageError

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
        raise MissingInputError(f'image file not found: {path}')
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
        raise InvalidInputError(f'cannot read image file {path}: not an image file PIL can '
                                'read') from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, broken chunks
        if isinstance(e, InvalidInputError):
            raise
        raise InvalidInputError(f'cannot read image file {path}: {e} (truncated or corrupt); '
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
        raise TypeError(f'image must be a file path or a numpy array, got '
                        f'{type(image).__name__}')
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
