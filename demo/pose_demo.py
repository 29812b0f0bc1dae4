"""Draw MicroNet keypoints on an image with mmpose's visualizer.

    python demo/pose_demo.py IMAGE CONFIG [CHECKPOINT] [--box X0 Y0 X1 Y1 ...]
                              [--out-file F [--force]]
    python demo/pose_demo.py IMAGE --exported FILE [--runtime NAME] [--box ...] [--out-file F]

IMAGE is a file, or ``skimage:<name>`` for a photograph that scikit-image ships (for example
``skimage:astronaut``). Without ``--box`` the whole image is taken as one person. Without a
checkpoint the model keeps its initial weights (the drawing then shows untrained guesses).
Prints one line per person with its keypoints and scores, and writes the drawn image.
``--exported FILE`` runs a model exported by ``tools/deployment/export_onnx.py`` instead (no
config: its ``FILE.json`` holds the preprocessing, codec and skeleton), with the same output.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402

from micronet_mm.apis import (draw_poses, estimate_poses, init_pose_model,  # noqa: E402
                              load_exported)
from micronet_mm.errors import InvalidInputError, run_cli  # noqa: E402
from micronet_mm.fileio import refuse_overwrite  # noqa: E402


def read_image(spec: str) -> str | np.ndarray:
    """A path as is, or the RGB array of ``skimage:<name>``."""
    if not spec.startswith('skimage:'):
        return spec
    import skimage.data
    name = spec.split(':', 1)[1]
    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise InvalidInputError(f'pose_demo: scikit-image has no image {name!r} (see skimage.data)')
    return loader()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MicroNet pose demo')
    parser.add_argument('image', help='image file, or skimage:<name> (e.g. skimage:astronaut)')
    parser.add_argument('config', nargs='?', default=None, help='mmpose config (not with '
                        '--exported)')
    parser.add_argument('checkpoint', nargs='?', default=None)
    parser.add_argument('--exported', metavar='FILE',
                        help='run this exported model (with its FILE.json) instead of a config')
    parser.add_argument('--runtime', help='runtime of --exported (default: from its suffix)')
    parser.add_argument('--box', type=float, nargs=4, action='append', metavar=('X0', 'Y0',
                        'X1', 'Y1'), help='person box in pixels (repeat for more persons)')
    parser.add_argument('--out-file', default='pose_demo.jpg', help='the drawn image')
    parser.add_argument('--force', action='store_true', help='replace an existing --out-file')
    parser.add_argument('--kpt-thr', type=float, default=0.0, help='hide keypoints below it')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    refuse_overwrite(args.out_file, args.force)
    image = read_image(args.image)
    if (args.config is None) == (args.exported is None):
        raise InvalidInputError('pose_demo: give either CONFIG [CHECKPOINT] or --exported FILE')
    if args.exported is not None:
        model = load_exported(args.exported, args.runtime)
        result = model.estimate_poses(image, boxes=args.box)
    else:
        model = init_pose_model(args.config, args.checkpoint, device=args.device)
        result = estimate_poses(model, image, boxes=args.box)
    names = model.dataset_meta['keypoint_id2name']
    for i in range(len(result)):
        parts = ', '.join(f'{names[k]} ({x:.0f}, {y:.0f}) {s:.2f}' for k, ((x, y), s) in
                          enumerate(zip(result.keypoints[i], result.keypoint_scores[i])))
        print(f'person {i}: box {np.round(result.boxes[i]).tolist()}: {parts}')
    draw_poses(model, image, result, args.out_file, kpt_thr=args.kpt_thr)
    print(f'wrote {args.out_file}')
    return result


if __name__ == '__main__':
    run_cli(main)
