"""Embedded demo data for detection, in real COCO format: ``<root>/{train,val}/*.png`` and
``<root>/annotations/{train,val}.json``. Images hold 1-3 filled shapes (square, circle,
triangle) with tight boxes, learnable by a detector in minutes. Made deterministically from a
seed; ``ensure_demo_det`` writes it once and reuses it, never overwriting other data.
"""
from __future__ import annotations

import json
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from ._writer import write_once

CLASSES = ('square', 'circle', 'triangle')
VERSION = '4'


def _draw_image(rng: np.random.Generator, size: int) -> tuple[Image.Image, list]:
    bg = rng.integers(0, 256, 3)
    img = Image.fromarray(np.clip(bg + rng.normal(0, 15, (size, size, 3)), 0, 255)
                          .astype(np.uint8))
    draw = ImageDraw.Draw(img)
    boxes: list = []
    for _ in range(rng.integers(1, 4)):
        for _try in range(20):  # place without overlapping the earlier shapes
            w = int(rng.integers(size // 4, size // 2 + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - w, 2))
            box = (x0, y0, x0 + w, y0 + w)
            if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                   for b, _ in boxes):
                break
        else:
            continue
        label = int(rng.integers(len(CLASSES)))
        color = tuple(int(c) for c in (bg + 128 + rng.integers(-40, 40, 3)) % 256)
        if CLASSES[label] == 'square':
            draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=color)
        elif CLASSES[label] == 'circle':
            draw.ellipse([box[0], box[1], box[2] - 1, box[3] - 1], fill=color)
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[0], box[3] - 1),
                          (box[2] - 1, box[3] - 1)], fill=color)
        boxes.append((box, label))
    return img, boxes


def _write_split(rng, root: str, split: str, n: int, size: int) -> None:
    os.makedirs(osp.join(root, split))
    images, annotations = [], []
    for i in range(n):
        img, boxes = _draw_image(rng, size)
        name = f'{i:05d}.png'
        img.save(osp.join(root, split, name))
        images.append(dict(id=i, file_name=name, width=size, height=size))
        for (x0, y0, x1, y1), label in boxes:
            annotations.append(dict(id=len(annotations) + 1, image_id=i, category_id=label + 1,
                                    bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0),
                                    iscrowd=0))
    categories = [dict(id=i + 1, name=c) for i, c in enumerate(CLASSES)]
    with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
        json.dump(dict(info=dict(description=f'micronet_mm demo shapes, {split}', version=VERSION),
                       licenses=[], images=images, annotations=annotations,
                       categories=categories), f)


def ensure_demo_det(root: str = 'data/demo_det', *, sizes: tuple[int, int] = (240, 60),
                    image_size: int = 128, seed: int = 0,
                    force: bool = False) -> str:
    """Write the dataset under ``root`` unless this version is already there."""
    def fill(tmp: str) -> None:
        rng = np.random.default_rng(seed)
        os.makedirs(osp.join(tmp, 'annotations'))
        for split, n in zip(('train', 'val'), sizes):
            _write_split(rng, tmp, split, n, image_size)
    return write_once(root, VERSION, fill, force=force)
