"""Convert an official MicroNet checkpoint (github liyunsheng13/micronet release) into one that
our mmpretrain classifier configs load with no missing or unexpected keys.

    python tools/model_converters/micronet_official_to_mmpretrain.py micronet-m3.pth \\
        checkpoints/micronet-m3_in1k.pth [--arch m3] [--force]

The arch is detected from the tensor shapes unless given. The output is never overwritten
unless --force is given.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections.abc import Callable

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from micronet_mm.checkpoint import safe_load  # noqa: E402
from micronet_mm.converters import ConversionError, convert_checkpoint  # noqa: E402
from micronet_mm.errors import run_cli  # noqa: E402
from micronet_mm.fileio import atomic_write, refuse_overwrite  # noqa: E402


def load_official(path: str):
    """Load through :func:`micronet_mm.checkpoint.safe_load`: plain data only."""
    if not osp.isfile(path):
        raise ConversionError(f'input checkpoint not found: {path}')
    return safe_load(path, map_location='cpu')


def save_converted(state: dict, meta: dict, dst: str, *, force: bool) -> None:
    """Write ``{'state_dict': state, 'meta': meta}`` to ``dst`` atomically.

    Args:
        state: the converted state dict.
        meta: what to record about the conversion (arch, source file, ...).
        dst: the output checkpoint; an existing file is replaced only with ``force``.
        force: replace an existing ``dst``.

    Raises:
        UserError: ``dst`` is a directory, or exists and ``force`` is false.
    """
    refuse_overwrite(dst, force)
    with atomic_write(dst) as tmp:
        torch.save({'state_dict': state, 'meta': meta}, tmp)


def convert_cli(argv, *, description: str, src_help: str,
                load: Callable[[str], dict], source: str | None = None) -> str:
    """The command line of both converters: ``SRC DST [--arch A] [--force]``.

    Args:
        argv: the arguments (None: ``sys.argv``).
        description: the tool's one-line description.
        src_help: help text of ``SRC``.
        load: reads ``SRC`` into an official-layout state dict.
        source: recorded as ``meta['source']`` when given.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help='output checkpoint for micronet_mm')
    parser.add_argument('--arch', choices=['m0', 'm1', 'm2', 'm3'], help='default: detect')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    refuse_overwrite(args.dst, args.force)  # before the work
    try:
        arch, state = convert_checkpoint(load(args.src), args.arch)
    except ConversionError as e:
        raise ConversionError(f'conversion of {args.src} failed: {e}') from None
    meta = {'arch': arch, 'converted_from': osp.basename(args.src)}
    if source:
        meta['source'] = source
    save_converted(state, meta, args.dst, force=args.force)
    print(f'converted {args.src} (MicroNet-{arch.upper()}, {len(state)} tensors) -> {args.dst}')
    return arch


def main(argv=None) -> str:
    return convert_cli(argv, description=__doc__.split('\n\n')[0], load=load_official,
                       src_help='official checkpoint (.pth / .pth.tar)')


if __name__ == '__main__':
    run_cli(main)
