"""Write the embedded demo datasets into data/ (skipped when an up-to-date copy exists).

    python tools/data/make_demo_data.py [--root data] [--force]

A folder that holds anything this tool did not write (or an older version that was changed) is
never replaced unless --force is given.
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
from micronet_mm.errors import run_cli  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='data')
    parser.add_argument('--force', action='store_true',
                        help='replace demo folders even if they hold other files')
    args = parser.parse_args(argv)
    for what, ensure, name in (('classification', ensure_demo_shapes, 'demo_shapes'),
                               ('detection', ensure_demo_det, 'demo_det'),
                               ('keypoint', ensure_demo_pose, 'demo_pose'),
                               ('segmentation', ensure_demo_cityscapes, 'demo_cityscapes')):
        print(f'{what} demo:', ensure(osp.join(args.root, name), force=args.force))


if __name__ == '__main__':
    run_cli(main)
