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
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from micronet_mm.converters import ConversionError, convert_checkpoint  # noqa: E402
from micronet_mm.converters_paddle import load_pdparams, paddle_to_official  # noqa: E402
from micronet_mm.errors import UserError, run_cli  # noqa: E402
from micronet_mm.fileio import refuse_overwrite  # noqa: E402
from tools.model_converters.micronet_official_to_mmpretrain import save_converted  # noqa: E402,E501


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='PaddleClas parameter file (.pdparams)')
    parser.add_argument('dst', help='output checkpoint for micronet_mm')
    parser.add_argument('--arch', choices=['m0', 'm1', 'm2', 'm3'], help='default: detect')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    refuse_overwrite(args.dst, args.force)  # before the work
    try:
        official = paddle_to_official(load_pdparams(args.src))
        arch, state = convert_checkpoint(official, args.arch)
    except ConversionError as e:
        raise UserError(f'{args.src}: conversion failed: {e}') from None
    save_converted(state, {'arch': arch, 'converted_from': osp.basename(args.src),
                           'source': 'PaddleClas'}, args.dst, force=args.force)
    print(f'converted {args.src} (MicroNet-{arch.upper()}, {len(state)} tensors) -> {args.dst}')
    return arch


if __name__ == '__main__':
    run_cli(main)
