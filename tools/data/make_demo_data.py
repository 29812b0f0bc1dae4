"""Write the embedded demo datasets into data/ (skipped when an up-to-date copy exists).

    python tools/data/make_demo_data.py [--root data]
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from micronet_mm.datasets.demo_cityscapes import ensure_demo_cityscapes  # noqa: E402
from micronet_mm.datasets.demo_det import ensure_demo_det  # noqa: E402
from micronet_mm.datasets.demo_pose import ensure_demo_pose  # noqa: E402
from micronet_mm.datasets.demo_shapes import ensure_demo_shapes  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='data')
    args = parser.parse_args(argv)
    print('classification demo:', ensure_demo_shapes(osp.join(args.root, 'demo_shapes')))
    print('detection demo:', ensure_demo_det(osp.join(args.root, 'demo_det')))
    print('keypoint demo:', ensure_demo_pose(osp.join(args.root, 'demo_pose')))
    print('segmentation demo:', ensure_demo_cityscapes(osp.join(args.root, 'demo_cityscapes')))


if __name__ == '__main__':
    main()
