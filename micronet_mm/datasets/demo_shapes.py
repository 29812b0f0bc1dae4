"""Embedded demo data for classification: coloured shapes on noisy backgrounds, written as an
image folder (``<root>/{train,val}/<class>/<n>.png``) that mmpretrain's ``CustomDataset`` reads.

Made deterministically from a seed; ``ensure_demo_shapes`` writes it once and reuses it.
"""
from __future__ import annotations

import os
import os.path as osp
import shutil

import numpy as np
from PIL import Image, ImageDraw

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


def make_demo_shapes(root: str, *, per_class: tuple[int, int] = (120, 40), size: int = 64,
                     seed: int = 0) -> str:
    """Write the dataset under ``root``, replacing only a previous demo copy (never other data)."""
    if osp.exists(root) and not osp.isfile(osp.join(root, 'VERSION')):
        raise FileExistsError(f'{root} exists and is not a demo dataset; not touching it')
    rng = np.random.default_rng(seed)
    tmp = root.rstrip('/') + '.partial'
    shutil.rmtree(tmp, ignore_errors=True)
    for split, n in zip(('train', 'val'), per_class):
        for name in CLASSES:
            folder = osp.join(tmp, split, name)
            os.makedirs(folder)
            for i in range(n):
                draw_shape(rng, name, size).save(osp.join(folder, f'{i:04d}.png'))
    with open(osp.join(tmp, 'VERSION'), 'w') as f:
        f.write(VERSION)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def ensure_demo_shapes(root: str = 'data/demo_shapes') -> str:
    """Make the dataset unless a complete copy of this version is already at ``root``."""
    stamp = osp.join(root, 'VERSION')
    if osp.isfile(stamp) and open(stamp).read() == VERSION:
        return root
    return make_demo_shapes(root)
