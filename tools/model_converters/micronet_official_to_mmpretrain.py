"""Convert an official MicroNet checkpoint (github liyunsheng13/micronet release) into one that
our mmpretrain classifier configs load with no missing or unexpected keys.

    python tools/model_converters/micronet_official_to_mmpretrain.py micronet-m3.pth \\
        checkpoints/micronet-m3_in1k.pth [--arch m3] [--force]

The arch is detected from the tensor shapes unless given. The output is never overwritten
unless --force is given.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from micronet_mm.checkpoint import safe_load  # noqa: E402
from micronet_mm.converters import ConversionError, convert_checkpoint  # noqa: E402
from micronet_mm.errors import run_cli  # noqa: E402


def load_official(path: str):
    """Load through :func:`micronet_mm.checkpoint.safe_load`: plain data only."""
    if not osp.isfile(path):
        raise ConversionError(f'input checkpoint not found: {path}')
    return safe_load(path, map_location='cpu')


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (.pth / .pth.tar)')
    parser.add_argument('dst', help='output checkpoint for micronet_mm')
    parser.add_argument('--arch', choices=['m0', 'm1', 'm2', 'm3'], help='default: detect')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    if osp.exists(args.dst) and not args.force:
        raise SystemExit(f'{args.dst} exists; not overwriting it (use --force)')
    try:
        arch, state = convert_checkpoint(load_official(args.src), args.arch)
    except ConversionError as e:
        raise ConversionError(f'conversion of {args.src} failed: {e}') from None
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    tmp = args.dst + '.tmp'
    torch.save({'state_dict': state, 'meta': {'arch': arch, 'converted_from': args.src}}, tmp)
    os.replace(tmp, args.dst)
    print(f'converted {args.src} (MicroNet-{arch.upper()}, {len(state)} tensors) -> {args.dst}')
    return arch


if __name__ == '__main__':
    run_cli(main)
