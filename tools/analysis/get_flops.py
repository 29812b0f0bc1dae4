"""Print parameters and multiply-adds (MAdds) of a config's model, in the MicroNet papers'
convention: convolutions and FC layers, plus J·K MAdds per output element of every Dynamic
Shift-Max (see micronet_mm/analysis.py).

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

from micronet_mm.analysis import count_complexity  # noqa: E402
from micronet_mm.errors import run_cli  # noqa: E402
from micronet_mm.tools_common import build_model, load_config  # noqa: E402

DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (224, 224), 'mmpose': (256, 192),
                  'mmseg': (1024, 2048)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Count parameters and MAdds')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224x224; 256x192 for pose; 1024x2048 seg)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def dummy_data_samples(cfg, shape: tuple[int, int]):
    """Data samples for ``mode='tensor'``: two-stage detectors need image metadata."""
    if cfg.get('default_scope') != 'mmdet':
        return None
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                        batch_input_shape=shape, scale_factor=(1.0, 1.0)))]


def complexity_report(cfg, shape=None) -> dict:
    """Counts for the whole model and for its backbone; ``shape`` defaults per toolbox."""
    shape = tuple(shape or DEFAULT_SHAPES.get(cfg.get('default_scope'), (224, 224)))
    model = build_model(cfg)
    inputs = (1, 3, *shape)
    return dict(
        shape=shape,
        model=count_complexity(model, inputs, forward=lambda x: model(
            x, dummy_data_samples(cfg, shape), mode='tensor')),
        backbone=count_complexity(model.backbone, inputs))


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    report = complexity_report(cfg, args.shape)
    h, w = report['shape']
    print(f'Input shape: 3x{h}x{w}')
    for part in ('model', 'backbone'):
        c = report[part]
        print(f'{part:>9}: params {c.params / 1e6:.3f}M ({c.params:,}) | MAdds '
              f'{c.madds / 1e6:.2f}M = conv+linear {c.conv_linear_madds / 1e6:.2f}M '
              f'+ Dynamic Shift-Max {c.shift_max_madds / 1e6:.2f}M')
    return report


if __name__ == '__main__':
    run_cli(main)
