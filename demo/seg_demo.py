"""Segment one image with a MicroNet + MR-ASPP model and write the colour overlay as PNG.

    python demo/seg_demo.py IMAGE CONFIG CHECKPOINT [--out overlay.png [--force]] [--opacity 0.5]
                            [--device cpu] [--slide H W]
    python demo/seg_demo.py IMAGE --exported FILE [--runtime NAME] [--out overlay.png ...]

The overlay uses mmseg's ``SegLocalVisualizer`` with the Cityscapes classes and palette. The
class map itself is also written, as ``<out>_classes.png`` (one train id per pixel).
``--exported FILE`` runs a model exported by ``tools/deployment/export_onnx.py`` instead (no
config: its ``FILE.json`` holds the preprocessing and classes), with the same output.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from micronet_mm.apis import (init_segmentor, load_exported, load_rgb_image,  # noqa: E402
                              segment)
from micronet_mm.errors import InvalidInputError, run_cli  # noqa: E402
from micronet_mm.fileio import atomic_write, refuse_overwrite  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MicroNet semantic segmentation demo')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', nargs='?', help='mmseg config file (not with --exported)')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file')
    parser.add_argument('--exported', metavar='FILE',
                        help='run this exported model (with its FILE.json) instead of a config')
    parser.add_argument('--runtime', help='runtime of --exported (default: from its suffix)')
    parser.add_argument('--out', default='seg_overlay.png', help='output PNG (overlay)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out (and its _classes.png)')
    parser.add_argument('--opacity', type=float, default=0.5, help='opacity of the colours')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--slide', type=int, nargs=2, metavar=('H', 'W'),
                        help='sliding-window inference with this crop size')
    return parser.parse_args(argv)


def overlay(image: np.ndarray, sample, out_file: str, opacity: float = 0.5) -> np.ndarray:
    """Draw the prediction over the RGB image with the Cityscapes palette; write ``out_file``."""
    from mmseg.datasets import CityscapesDataset
    from mmseg.visualization import SegLocalVisualizer
    # a private instance (not get_instance): a registered one would keep its first alpha
    vis = SegLocalVisualizer(name='micronet_seg_demo', alpha=opacity)
    vis.dataset_meta = dict(classes=CityscapesDataset.METAINFO['classes'],
                            palette=CityscapesDataset.METAINFO['palette'])
    vis.add_datasample('overlay', image, sample, draw_gt=False, show=False, out_file=out_file)
    return vis.get_image()


def main(argv=None) -> str:
    args = parse_args(argv)
    if not 0.0 <= args.opacity <= 1.0:
        raise InvalidInputError(f'--opacity must lie in [0, 1], got {args.opacity}')
    classes_file = osp.splitext(args.out)[0] + '_classes.png'
    for path in (args.out, classes_file):
        refuse_overwrite(path, args.force)
    if args.exported is not None:
        if args.config is not None or args.slide:
            raise InvalidInputError('seg_demo: --exported takes no CONFIG, CHECKPOINT or --slide')
    elif args.config is None or args.checkpoint is None:
        raise InvalidInputError('seg_demo: give CONFIG CHECKPOINT, or --exported FILE')
    image = load_rgb_image(args.image)
    if args.exported is not None:
        model = load_exported(args.exported, args.runtime)
        sample = model.segment(image)
        classes = sample.pred_sem_seg.data[0].numpy()
    else:
        model = init_segmentor(args.config, args.checkpoint, device=args.device,
                               slide=tuple(args.slide) if args.slide else None)
        classes, sample = segment(model, image, return_sample=True)
    with atomic_write(args.out) as tmp:
        overlay(image, sample, tmp, args.opacity)
    with atomic_write(classes_file) as tmp:
        Image.fromarray(classes.astype(np.uint8)).save(tmp)
    print(f'wrote {args.out}: classes present: '
          f'{[model.dataset_meta["classes"][c] for c in np.unique(classes)]}')
    return args.out


if __name__ == '__main__':
    run_cli(main)
