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

import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from micronet_mm.converters_paddle import load_pdparams, paddle_to_official  # noqa: E402
from micronet_mm.errors import run_cli  # noqa: E402
from tools.model_converters.micronet_official_to_mmpretrain import convert_cli  # noqa: E402


def main(argv=None) -> str:
    return convert_cli(argv, description=__doc__.split('\n\n')[0],
                       src_help='PaddleClas parameter file (.pdparams)',
                       load=lambda path: paddle_to_official(load_pdparams(path)),
                       source='PaddleClas')


if __name__ == '__main__':
    run_cli(main)
