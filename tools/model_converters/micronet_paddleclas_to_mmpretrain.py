"""Convert a PaddleClas MicroNet ImageNet file (``MicroNet_M{0..3}_pretrained.pdparams``) into a
checkpoint that our mmpretrain classifier configs load with no missing or unexpected keys.

    python tools/model_converters/micronet_paddleclas_to_mmpretrain.py \\
        MicroNet_M3_pretrained.pdparams checkpoints/micronet-m3_paddleclas-in1k.pth \\
        [--arch m3] [--force]

paddle is not needed: the file is read by a restricted unpickler that builds numeric numpy
arrays and nothing else (micronet_mm/converters_paddle.py). The arrays are put into the official
layout and converted by the official converter's mapping (micronet_mm/converters.py). The arch
is detected from the shapes unless given; the output is never overwritten unless --force.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from micronet_mm.converters import ConversionError, convert_checkpoint  # noqa: E402
from micronet_mm.converters_paddle import load_pdparams, paddle_to_official  # noqa: E402
from micronet_mm.errors import UserError, run_cli  # noqa: E402


def check_writable(dst: str, force: bool) -> None:
    """Refuse an existing ``dst`` unless ``force`` (before any work is done)."""
    if osp.isdir(dst):
        raise UserError(f'{dst} is a directory; give the output checkpoint file name')
    if osp.exists(dst) and not force:
        raise UserError(f'{dst} exists; not overwriting it (use --force)')


def save_atomically(obj: dict, dst: str) -> None:
    """``torch.save`` into a new file next to ``dst``, then rename it over ``dst``: a failed or
    interrupted save never leaves a partial ``dst`` behind."""
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=osp.basename(dst) + '.', suffix='.part', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='PaddleClas parameter file (.pdparams)')
    parser.add_argument('dst', help='output checkpoint for micronet_mm')
    parser.add_argument('--arch', choices=['m0', 'm1', 'm2', 'm3'], help='default: detect')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    check_writable(args.dst, args.force)
    try:
        official = paddle_to_official(load_pdparams(args.src))
        arch, state = convert_checkpoint(official, args.arch)
    except ConversionError as e:
        raise UserError(f'{args.src}: conversion failed: {e}') from None
    save_atomically({'state_dict': state,
                     'meta': {'arch': arch, 'converted_from': osp.basename(args.src),
                              'source': 'PaddleClas'}}, args.dst)
    print(f'converted {args.src} (MicroNet-{arch.upper()}, {len(state)} tensors) -> {args.dst}')
    return arch


if __name__ == '__main__':
    run_cli(main)
