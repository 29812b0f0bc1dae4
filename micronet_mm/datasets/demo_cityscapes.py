"""Embedded demo data for segmentation: synthetic street-like scenes in the Cityscapes folder
layout, which mmseg's ``CityscapesDataset`` reads unchanged::

    <root>/leftImg8bit/{train,val}/demo/demo_<n>_000019_leftImg8bit.png
    <root>/gtFine/{train,val}/demo/demo_<n>_000019_gtFine_labelTrainIds.png

Each 128x256 image has sky above a horizon, road below it, buildings standing on the horizon,
cars on the road and a few persons; labels are Cityscapes train ids (road 0, building 2,
sky 10, person 11, car 13). Colours and textures vary per image, so the classes must be told
apart by colour, texture and shape. Made deterministically from a seed; ``ensure_demo_cityscapes``
writes it once and reuses it, and never overwrites data that is not a demo copy.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from ._writer import write_once

VERSION = '1'
ROAD, BUILDING, SKY, PERSON, CAR = 0, 2, 10, 11, 13
IMAGE_SIZE = (128, 256)  # H, W


def _jitter(rng: np.random.Generator, base: tuple[int, int, int], spread: int = 25) -> tuple:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


def draw_scene(rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE
               ) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W, 3 uint8 RGB) and its train-id label map (H, W uint8)."""
    h, w = size
    img, lab = Image.new('RGB', (w, h)), Image.new('L', (w, h))
    di, dl = ImageDraw.Draw(img), ImageDraw.Draw(lab)

    def paint(shape: str, xy, color, label: int) -> None:
        getattr(di, shape)(xy, fill=color)
        getattr(dl, shape)(xy, fill=label)

    horizon = int(h * rng.uniform(0.4, 0.55))
    paint('rectangle', [0, 0, w, horizon], _jitter(rng, (110, 160, 225)), SKY)
    paint('rectangle', [0, horizon, w, h], _jitter(rng, (90, 90, 95), 15), ROAD)
    x = int(rng.integers(-20, 10))
    while x < w:  # buildings on the horizon
        bw, bh = int(rng.integers(25, 60)), int(rng.integers(horizon // 3, horizon))
        paint('rectangle', [x, horizon - bh, x + bw, horizon], _jitter(rng, (150, 95, 70), 30),
              BUILDING)
        x += bw + int(rng.integers(0, 25))
    for _ in range(int(rng.integers(1, 4))):  # cars on the road
        cw = int(rng.integers(30, 60))
        cx, cy = int(rng.integers(0, w - cw)), int(rng.integers(horizon + 5, h - 10))
        ch = cw // 2
        paint('rounded_rectangle', [cx, cy - ch, cx + cw, cy], _jitter(rng, (30, 40, 160), 30),
              CAR)
    for _ in range(int(rng.integers(1, 3))):  # persons: tall narrow ellipses
        pw = int(rng.integers(6, 11))
        px, py = int(rng.integers(0, w - pw)), int(rng.integers(horizon, h))
        paint('ellipse', [px, py - 3 * pw, px + pw, py], _jitter(rng, (220, 50, 60), 30), PERSON)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, (h, w, 3))  # sensor noise
    return np.clip(pixels, 0, 255).astype(np.uint8), np.asarray(lab, dtype=np.uint8)


def ensure_demo_cityscapes(root: str = 'data/demo_cityscapes', *,
                           counts: tuple[int, int] = (48, 12), seed: int = 0,
                           force: bool = False) -> str:
    """Write the dataset under ``root`` unless this version is there; never over other data."""
    def fill(tmp: str) -> None:
        rng = np.random.default_rng(seed)
        for split, n in zip(('train', 'val'), counts):
            img_dir = osp.join(tmp, 'leftImg8bit', split, 'demo')
            seg_dir = osp.join(tmp, 'gtFine', split, 'demo')
            os.makedirs(img_dir)
            os.makedirs(seg_dir)
            for i in range(n):
                image, label = draw_scene(rng)
                stem = f'demo_{i:06d}_000019'
                Image.fromarray(image).save(osp.join(img_dir, f'{stem}_leftImg8bit.png'))
                Image.fromarray(label).save(osp.join(seg_dir, f'{stem}_gtFine_labelTrainIds.png'))
    return write_once(root, VERSION, fill, force=force)


if __name__ == '__main__':  # python -m micronet_mm.datasets.demo_cityscapes [ROOT]
    import sys
    print(ensure_demo_cityscapes(*sys.argv[1:2]))
