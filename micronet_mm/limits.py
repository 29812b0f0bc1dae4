"""Limits on untrusted input: what a file may make this process allocate or compute.

A checkpoint, a ``.pdparams`` file or an image is checked against these before it is decoded,
so that a small file cannot exhaust memory or time. Each limit has a default that fits every
legitimate file we know of with room to spare, and an environment variable to raise it:

=============================  ==========================================  ==============
environment variable           what                                        default
=============================  ==========================================  ==============
MICRONET_MM_MAX_INFLATE        records of a ``.pth`` zip, in total, over   4 (x the file
                               the file's size                             + 1 MiB)
MICRONET_MM_MAX_PICKLE_BYTES   the pickle of a ``.pth`` (``data.pkl``)     64 MiB
MICRONET_MM_MAX_PICKLE_OPS     pickle opcodes (each memo reuse is one)     10 million
MICRONET_MM_MAX_PICKLE_ITEMS   items given to one container at once        2 million
MICRONET_MM_MAX_IMAGE_PIXELS   width x height of an image                  128 Mi pixels
=============================  ==========================================  ==============

Errors name the file, the limit and its variable (:class:`LimitError`, one line).
"""
from __future__ import annotations

import io
import os
import pickletools
import re
import warnings
import zipfile

from .errors import InvalidInputError

_DEFAULTS = {
    'MICRONET_MM_MAX_INFLATE': 4,
    'MICRONET_MM_MAX_PICKLE_BYTES': 64 * 2**20,
    'MICRONET_MM_MAX_PICKLE_OPS': 10_000_000,
    'MICRONET_MM_MAX_PICKLE_ITEMS': 2_000_000,
    'MICRONET_MM_MAX_IMAGE_PIXELS': 128 * 2**20,
}
#: inflated bytes allowed on top of the ratio (small files: the zip's own directory)
INFLATE_SLACK = 2**20
#: pickles in a row at the start of torch's legacy (non-zip) format
_LEGACY_PICKLES = 5
#: opcodes that take the items pushed since the last MARK into one container
_MARK_CONSUMERS = {'APPENDS', 'SETITEMS', 'ADDITEMS', 'LIST', 'TUPLE', 'DICT', 'FROZENSET',
                   'OBJ', 'INST'}


class LimitError(InvalidInputError):
    """An input file is over a stated limit (one line: the file, the limit, how to raise it)."""


def limit(name: str) -> int:
    """The current value of the limit ``name`` (an environment variable, else its default)."""
    value = os.environ.get(name)
    if value is None:
        return _DEFAULTS[name]
    try:
        number = int(float(value))
    except ValueError:
        raise InvalidInputError(f'{name}={value!r} is not a number') from None
    if number <= 0:
        raise InvalidInputError(f'{name}={value!r} must be positive')
    return number


def check_zip_checkpoint(path: str) -> str | None:
    """Check a zip ``.pth``'s records before torch reads them; return the name of its pickle
    record (``<archive>/data.pkl``).

    Raises:
        LimitError: the records inflate to more than ``MICRONET_MM_MAX_INFLATE`` times the file
            (plus :data:`INFLATE_SLACK`), or the pickle is larger than
            ``MICRONET_MM_MAX_PICKLE_BYTES``.
    """
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > limit('MICRONET_MM_MAX_INFLATE') * size + INFLATE_SLACK:
        ratio = -(-max(total - INFLATE_SLACK, 0) // max(size, 1))
        raise LimitError(
            f'checkpoint {path}: its records inflate to {total} bytes from a {size}-byte file, '
            f'over the limit of {limit("MICRONET_MM_MAX_INFLATE")} x the file size + '
            f'{INFLATE_SLACK} bytes; refused before decoding. If you trust the file, raise '
            f'the ratio with the environment variable MICRONET_MM_MAX_INFLATE (this file '
            f'needs {ratio})')
    pickles = [info for info in infos if info.filename.endswith('data.pkl')]
    for info in pickles:
        if info.file_size > limit('MICRONET_MM_MAX_PICKLE_BYTES'):
            raise _pickle_over(path, f'its pickle ({info.filename}) has {info.file_size} bytes',
                               'MICRONET_MM_MAX_PICKLE_BYTES', info.file_size)
    return pickles[0].filename if pickles else None


def _pickle_over(path: str, what: str, name: str, value: int) -> LimitError:
    return LimitError(
        f'{path}: {what}, over the limit of {limit(name)}; refused before unpickling. If you '
        f'trust the file, raise the limit with the environment variable {name} (this file '
        f'needs {value})')


def scan_pickle(stream, path: str, count: int = 1) -> None:
    """Walk the opcodes of ``count`` pickles in a row without building anything.

    Raises:
        LimitError: more than ``MICRONET_MM_MAX_PICKLE_OPS`` opcodes (each reuse of a memoised
            object is one), or one container given more than ``MICRONET_MM_MAX_PICKLE_ITEMS``
            items at once.
        ValueError: not a pickle (truncated, an unknown opcode).
    """
    max_ops, max_items = limit('MICRONET_MM_MAX_PICKLE_OPS'), limit('MICRONET_MM_MAX_PICKLE_ITEMS')
    ops, marks = 0, []
    for _ in range(count):
        for opcode, _arg, _pos in pickletools.genops(stream):
            ops += 1
            if ops > max_ops:
                raise _pickle_over(path, f'its pickle has more than {max_ops} opcodes',
                                   'MICRONET_MM_MAX_PICKLE_OPS', ops)
            name = opcode.name
            if name == 'MARK':
                marks.append(ops)
            elif name in _MARK_CONSUMERS and marks:
                items = ops - marks.pop() - 1
                if items > max_items:
                    raise _pickle_over(path, f'its pickle gives {items} items to one container',
                                       'MICRONET_MM_MAX_PICKLE_ITEMS', items)
            elif name == 'POP_MARK' and marks:
                marks.pop()


def check_checkpoint_file(path: str, legacy: bool) -> None:
    """The limits of a ``.pth`` file (zip, or torch's legacy pickle format), before loading."""
    if legacy:
        with open(path, 'rb') as f:
            scan_pickle(f, path, count=_LEGACY_PICKLES)
        return
    record = check_zip_checkpoint(path)
    if record is not None:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(record)
        scan_pickle(io.BytesIO(data), path)


def check_image_pixels(path: str, width: int, height: int) -> None:
    """Refuse an image larger than ``MICRONET_MM_MAX_IMAGE_PIXELS`` (from its header)."""
    pixels = int(width) * int(height)
    if pixels > limit('MICRONET_MM_MAX_IMAGE_PIXELS'):
        raise LimitError(
            f'image {path} is {width}x{height} ({pixels} pixels), over the limit of '
            f'{limit("MICRONET_MM_MAX_IMAGE_PIXELS")} pixels; refused before decoding. Crop or '
            'resize it, or raise the limit with the environment variable '
            'MICRONET_MM_MAX_IMAGE_PIXELS')


def image_header_pixels(path: str) -> None:
    """Read an image file's size from its header (PIL, nothing decoded) and check it. Formats
    PIL does not know are left to the decoder: OpenCV's own limit
    (``OPENCV_IO_MAX_IMAGE_PIXELS``) is set to the same value when this module is imported
    before OpenCV."""
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the check below decides
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:  # PIL's own check: over twice MAX_IMAGE_PIXELS
        found = re.search(r'\((\d+) pixels\)', str(e))
        size = f'{found.group(1)} pixels' if found else \
            f'more than {2 * Image.MAX_IMAGE_PIXELS} pixels'
        raise LimitError(
            f'image {path} has {size}, over the limit of '
            f'{limit("MICRONET_MM_MAX_IMAGE_PIXELS")} pixels; refused before decoding. Crop '
            'or resize it, or raise the limit with the environment variable '
            'MICRONET_MM_MAX_IMAGE_PIXELS') from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # not a format PIL reads: the decoder reports it
    check_image_pixels(path, width, height)


def apply_to_decoders() -> None:
    """PIL warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that; OpenCV refuses above
    ``OPENCV_IO_MAX_IMAGE_PIXELS`` (read when it is loaded). Both follow the limit: the
    environment variable is set only if unset (it lowers OpenCV's default of 2^30), PIL's limit
    only ever raised, to the image limit. Called by :func:`micronet_mm.install`."""
    try:
        pixels = limit('MICRONET_MM_MAX_IMAGE_PIXELS')
    except InvalidInputError:  # reported where an image is checked
        return
    os.environ.setdefault('OPENCV_IO_MAX_IMAGE_PIXELS', str(pixels))
    try:
        from PIL import Image
    except ImportError:
        return
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, pixels)

