"""Embedded demo keypoint data: synthetic stick figures with the 17 COCO keypoints, written in
the COCO-keypoints format (``annotations/{train,val}.json`` + ``images/{train,val}/*.png``) that
mmpose's ``CocoDataset`` and ``CocoMetric`` read.

Each image shows one figure facing the viewer (its left side on the image's right, as a person
in a photograph), in a random pose, scale, position and tilt, on a noisy background. Joints and
limbs are drawn in one colour per figure, so only geometry tells left from right: horizontal
flipping with swapped left/right labels (training augmentation and flip test) stays consistent.
Made deterministically from a seed; :func:`ensure_demo_pose` writes it once and reuses it.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from ._writer import write_once

VERSION = '1'
KEYPOINTS = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
             'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
             'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
#: COCO's skeleton (1-based keypoint ids), as in person_keypoints_*.json
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7],
            [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6],
            [5, 7]]
LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6),
         (11, 12), (5, 11), (6, 12)]


def figure_keypoints(rng: np.random.Generator, size: int) -> np.ndarray:
    """(17, 2) keypoints of a random figure inside a ``size`` x ``size`` image."""
    h = rng.uniform(0.55, 0.85) * size  # figure height
    u = h / 8  # body unit
    # body frame: +x to the image right (the figure's left), +y down; origin at the neck
    pts = np.zeros((17, 2))
    shoulder, hip = 1.0 * u, 0.7 * u
    pts[5], pts[6] = (shoulder, 0), (-shoulder, 0)
    pts[11], pts[12] = (hip, 3 * u), (-hip, 3 * u)
    head = np.array([0, -1.3 * u])
    pts[0] = head + (0, 0.25 * u)
    pts[1], pts[2] = head + (0.3 * u, -0.1 * u), head + (-0.3 * u, -0.1 * u)
    pts[3], pts[4] = head + (0.6 * u, 0), head + (-0.6 * u, 0)

    def limb(start: np.ndarray, angle: float, length: float) -> np.ndarray:
        return start + length * np.array([math.sin(angle), math.cos(angle)])

    for side, (sh, el, wr) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):
        a1 = side * rng.uniform(0.1, 2.6)  # upper arm from hanging down to raised
        pts[el] = limb(pts[sh], a1, 1.5 * u)
        pts[wr] = limb(pts[el], a1 + side * rng.uniform(-0.3, 1.8), 1.3 * u)
    for side, (hp, kn, an) in ((1, (11, 13, 15)), (-1, (12, 14, 16))):
        a1 = side * rng.uniform(-0.1, 0.8)
        pts[kn] = limb(pts[hp], a1, 1.8 * u)
        pts[an] = limb(pts[kn], a1 - side * rng.uniform(0, 0.9), 1.8 * u)
    tilt = rng.uniform(-0.35, 0.35)
    rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
    pts = pts @ rot.T
    lo, hi = pts.min(0), pts.max(0)
    margin = 0.06 * size
    offset = rng.uniform(margin - lo, np.maximum(size - margin - hi, margin - lo + 1))
    return pts + offset


def draw_figure(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray]:
    bg = rng.integers(0, 256, 3)
    noise = rng.normal(0, 18, (size, size, 3))
    img = Image.fromarray(np.clip(bg + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    color = tuple(int(c) for c in (bg + 128 + rng.integers(-30, 30, 3)) % 256)
    pts = figure_keypoints(rng, size)
    unit = np.linalg.norm(pts[5] - pts[6]) / 2
    width = max(2, int(unit * 0.35))
    for a, b in LIMBS:
        draw.line([tuple(pts[a]), tuple(pts[b])], fill=color, width=width)
    head = (pts[3] + pts[4]) / 2
    r = np.linalg.norm(pts[3] - pts[4]) / 2
    draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], outline=color, width=width)
    dark = tuple(255 - c for c in color)
    for i in range(17):
        rr = max(1.5, width * (0.5 if i < 5 else 0.8))
        x, y = pts[i]
        draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=dark if i < 5 else color)
    return img, pts


def ensure_demo_pose(root: str = 'data/demo_pose', *, num_images: tuple[int, int] = (240, 48),
                     size: int = 128, seed: int = 0,
                     force: bool = False) -> str:
    """Write the dataset under ``root`` unless this version is there; never over other data."""
    def fill(tmp: str) -> None:
        rng = np.random.default_rng(seed)
        os.makedirs(osp.join(tmp, 'annotations'))
        category = dict(id=1, name='person', supercategory='person', keypoints=list(KEYPOINTS),
                        skeleton=SKELETON)
        ann_id = 1
        for split, n in zip(('train', 'val'), num_images):
            os.makedirs(osp.join(tmp, 'images', split))
            images, annotations = [], []
            for i in range(n):
                img, pts = draw_figure(rng, size)
                name = f'{i:04d}.png'
                img.save(osp.join(tmp, 'images', split, name))
                image_id = i + 1
                images.append(dict(id=image_id, file_name=name, width=size, height=size))
                pad = 0.05 * size
                x0, y0 = np.clip(pts.min(0) - pad, 0, size)
                x1, y1 = np.clip(pts.max(0) + pad, 0, size)
                kpts = np.concatenate([pts, np.full((17, 1), 2.0)], 1).round(2)
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=1, iscrowd=0, num_keypoints=17,
                    keypoints=kpts.flatten().tolist(),
                    bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    area=round(float((x1 - x0) * (y1 - y0)), 2)))
                ann_id += 1
            with open(osp.join(tmp, 'annotations', f'{split}.json'), 'w') as f:
                json.dump(dict(images=images, annotations=annotations, categories=[category]), f)
    return write_once(root, VERSION, fill, force=force)
