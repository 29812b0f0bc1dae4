"""Embedded demo data for classification: coloured shapes on noisy backgrounds, written as an
image folder (``<root>/{train,val}/<class>/<n>.png``) that mmpretrain's ``CustomDataset`` reads.

Made deterministically from a seed; ``ensure_demo_shapes`` writes it once and reuses it.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from ._writer import write_once

CLASSES = ('circle', 'square', 'triangle', 'cross')
VERSION = '1'


def draw_shape(rng: np.random.Generator, name: str, size: int) -> Image.Image:
    bg = rng.integers(0, 256, 3)
    noise = rng.normal(0, 20, (size, size, 3))
    img = Image.fromarray(np.clip(bg + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    color = tuple(int(c) for c in (255 - bg + rng.integers(-40, 40, 3)) % 256)
    r = rng.uniform(0.18, 0.35) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if name == 'circle':
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif name == 'square':
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif name == 'triangle':
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    else:  # cross
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=color)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=color)
    return img


def ensure_demo_shapes(root: str = 'data/demo_shapes', *,
                       per_class: tuple[int, int] = (120, 40), size: int = 64,
                       seed: int = 0, force: bool = False) -> str:
    """Write the dataset under ``root`` unless this version is already there."""
    def fill(tmp: str) -> None:
        rng = np.random.default_rng(seed)
        for split, n in zip(('train', 'val'), per_class):
            for name in CLASSES:
                folder = osp.join(tmp, split, name)
                os.makedirs(folder)
                for i in range(n):
                    draw_shape(rng, name, size).save(osp.join(folder, f'{i:04d}.png'))
    return write_once(root, VERSION, fill, force=force)
