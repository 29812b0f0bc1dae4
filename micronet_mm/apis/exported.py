"""Run an exported model (ONNX Runtime, OpenVINO, MNN, ncnn) and get what the toolbox's own API
returns, from the model file alone.

    from micronet_mm.apis import load_exported
    model = load_exported('retinanet.onnx')          # reads retinanet.onnx.json next to it
    sample = model('street.jpg')                      # mmdet DetDataSample, boxes in image pixels
    samples = load_exported('pose.xml')('person.jpg', boxes=[[x0, y0, x1, y1]])  # mmpose

``tools/deployment/export_onnx.py`` writes ``FILE.json`` next to every exported ``FILE``: the
task, the input size, the data preprocessor's mean, std and channel order, the padding, the test
pipeline's resize (or crop, or a pose model's box affine), the class names, a pose model's codec
and flip test, and the output names (:func:`build_metadata`). :class:`ExportedModel` reads it
(:func:`read_metadata`), applies that preprocessing with the toolboxes' own transforms, runs the
file in its runtime (:mod:`micronet_mm.runtime.loaders`: from the suffix, or named) and
post-processes as the toolboxes do:

* classifier: mmpretrain ``DataSample`` with ``pred_score`` (softmax) and ``pred_label``;
* detector (end-to-end export): mmdet ``DetDataSample`` whose ``pred_instances`` (``bboxes``,
  ``scores``, ``labels``) are clipped to the resized image and rescaled to the original one;
* top-down pose model: one mmpose ``PoseDataSample`` per person box, keypoints decoded by the
  config's codec (with its flip test) and mapped back through the box affine;
* segmentor: mmseg ``SegDataSample`` with ``seg_logits`` and ``pred_sem_seg`` at the image's
  own size.

The metadata is untrusted input: JSON only (no pickle, no code, no config file), at most
:data:`MAX_METADATA_BYTES`, every key checked for type and range, transforms from a fixed list;
anything else is one :class:`~micronet_mm.errors.InvalidInputError` line naming the file and key.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from micronet_mm.errors import InvalidInputError, MissingInputError
from micronet_mm.fileio import atomic_write
from micronet_mm.runtime import loaders

from .image import ImageLike, load_rgb_image
from .pose import PoseResult, check_boxes
from .seg import _pad_to_aspect

FORMAT = 'micronet_mm.exported'
VERSION = 1
TASKS = ('classifier', 'detection', 'pose', 'segmentation')
#: the metadata file is refused above this size
MAX_METADATA_BYTES = 1 << 20
#: largest input side and number of classes / keypoints a metadata file may give
MAX_SIDE = 16384
MAX_NAMES = 100_000
#: pose codecs whose ``decode`` the API runs (mmpose's ``KEYPOINT_CODECS``)
CODECS = ('MSRAHeatmap',)
#: test-pipeline transforms that do not change the image (loading, annotations, packing)
IGNORED_TRANSFORMS = ('LoadImageFromFile', 'LoadImage', 'LoadAnnotations', 'PackDetInputs',
                      'PackSegInputs', 'PackInputs', 'PackPoseInputs', 'PackClsInputs')


def metadata_path(model_path: str) -> str:
    """Where the metadata of an exported model lives: ``FILE.json`` next to ``FILE``."""
    return model_path + '.json'


# ------------------------------------------------------------------------ writing (export)

def _resize_policy(pipeline: Sequence[dict], task: str, where: str) -> dict:
    """The image transforms of a test pipeline as the metadata's ``resize`` entry."""
    policy: dict = {'type': 'none'}
    for t in pipeline:
        kind = t.get('type')
        if kind in IGNORED_TRANSFORMS:
            continue
        if kind == 'Resize' and task != 'pose':
            scale = t['scale']
            scale = [scale, scale] if isinstance(scale, int) else [int(s) for s in scale]
            policy = {'type': 'keep_ratio' if t.get('keep_ratio', False) else 'exact',
                      'scale': scale}
        elif kind == 'ResizeEdge' and task == 'classifier':
            if t.get('edge', 'short') != 'short':
                raise InvalidInputError(f'{where}: ResizeEdge edge={t["edge"]!r}; the exported '
                                        "model's metadata records edge='short' only")
            policy = {'type': 'short_edge', 'size': int(t['scale']), 'crop': None}
        elif kind == 'CenterCrop' and policy['type'] == 'short_edge':
            crop = t['crop_size']
            crop = [crop, crop] if isinstance(crop, int) else [int(c) for c in crop]
            policy['crop'] = crop  # (w, h)
        elif kind == 'GetBBoxCenterScale' and task == 'pose':
            policy = {'type': 'topdown_affine', 'padding': float(t.get('padding', 1.25))}
        elif kind == 'TopdownAffine' and task == 'pose':
            if t.get('use_udp', False):
                raise InvalidInputError(f'{where}: TopdownAffine use_udp=True is not recorded')
        else:
            raise InvalidInputError(
                f'{where}: the test pipeline transform {kind!r} cannot be recorded for the '
                f'exported model; known: Resize, ResizeEdge + CenterCrop (classifier), '
                'GetBBoxCenterScale + TopdownAffine (pose)')
    if task == 'pose' and policy['type'] != 'topdown_affine':
        raise InvalidInputError(f'{where}: a pose test pipeline needs GetBBoxCenterScale and '
                                'TopdownAffine')
    return policy


def _test_pipeline(cfg) -> list:
    for key in ('test_dataloader', 'val_dataloader'):
        pipeline = (cfg.get(key) or {}).get('dataset', {}).get('pipeline')
        if pipeline:
            return list(pipeline)
    return list(cfg.get('test_pipeline') or [])


def _dataset_classes(cfg, scope: str) -> list[str] | None:
    """Class names of the config's test dataset: its ``metainfo``, else its class's."""
    import importlib
    dataset = (cfg.get('test_dataloader') or {}).get('dataset', {})
    names = (dataset.get('metainfo') or {}).get('classes') or dataset.get('classes')
    if not names:
        registry = importlib.import_module(f'{scope}.registry').DATASETS
        meta = getattr(registry.get(dataset.get('type', '')), 'METAINFO', {}) or {}
        names = meta.get('classes')
    return [str(n) for n in names] if names else None


def _preprocessor(cfg, model: torch.nn.Module) -> dict:
    """Mean, std, channel order and test-time padding of the model's data preprocessor: its
    config (the model's, else the top-level one that mmpretrain's ``init_model`` merges in),
    else the built model's."""
    dp = dict(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    built = getattr(model, 'data_preprocessor', None)
    mean, std = dp.get('mean'), dp.get('std')
    if mean is None and getattr(built, 'mean', None) is not None:
        mean, std = built.mean.flatten().tolist(), built.std.flatten().tolist()
    to_rgb = bool(dp.get('to_rgb', dp.get('bgr_to_rgb', False)))
    if 'test_cfg' in dp or dp.get('type') == 'SegDataPreProcessor':  # mmseg: test-time padding
        divisor = (dp.get('test_cfg') or {}).get('size_divisor') or 1
    else:
        divisor = dp.get('pad_size_divisor') or 1
    pad = dp.get('pad_value', dp.get('pad_val', 0))
    return {'mean': [0.0] * 3 if mean is None else [float(v) for v in mean],
            'std': [1.0] * 3 if std is None else [float(v) for v in std],
            'to_rgb': to_rgb, 'size_divisor': int(divisor), 'pad_value': float(pad)}


def build_metadata(cfg, model: torch.nn.Module, task: str, shape: tuple[int, int],
                   output_names: Sequence[str], dynamic_hw: bool, where: str = 'config'
                   ) -> dict:
    """The metadata of an exported model (what :func:`read_metadata` reads back).

    Args:
        cfg: the model's ``mmengine.Config``.
        model: the model as built (its data preprocessor gives mean, std, order, padding).
        task: one of :data:`TASKS`.
        shape: the traced input ``(H, W)``.
        output_names: the graph's outputs, in order.
        dynamic_hw: whether the graph takes any height and width.
        where: names the config in errors.

    Raises:
        InvalidInputError: the test pipeline has a transform the metadata cannot record.
    """
    scope = cfg.get('default_scope', 'mmpretrain')
    meta = {'format': FORMAT, 'version': VERSION, 'task': task,
            'input_size': [int(shape[0]), int(shape[1])], 'dynamic_hw': bool(dynamic_hw),
            'output_names': list(output_names), **_preprocessor(cfg, model),
            'resize': _resize_policy(_test_pipeline(cfg), task, where),
            'classes': None}
    if task == 'pose':
        from mmpose.apis.inference import dataset_meta_from_config
        codec = dict(cfg.model.head.decoder)
        test_cfg = dict(cfg.model.get('test_cfg') or {})
        dataset_meta = dataset_meta_from_config(cfg, 'test') or {}
        meta.update(
            codec={'type': codec.get('type'), 'input_size': list(codec['input_size']),
                   'heatmap_size': list(codec['heatmap_size']),
                   'sigma': float(codec.get('sigma', 2.0)),
                   'unbiased': bool(codec.get('unbiased', False)),
                   'blur_kernel_size': int(codec.get('blur_kernel_size', 11))},
            flip_test=bool(test_cfg.get('flip_test', False)),
            flip_mode=str(test_cfg.get('flip_mode', 'heatmap')),
            shift_heatmap=bool(test_cfg.get('shift_heatmap', False)),
            flip_indices=[int(i) for i in dataset_meta.get('flip_indices', [])],
            classes=[str(dataset_meta['keypoint_id2name'][i]) for i in
                     range(dataset_meta['num_keypoints'])] if dataset_meta else None,
            skeleton_links=[[int(a), int(b)] for a, b in
                            dataset_meta.get('skeleton_links', [])],
            keypoint_colors=np.asarray(dataset_meta.get('keypoint_colors', []),
                                       int).tolist(),
            skeleton_link_colors=np.asarray(dataset_meta.get('skeleton_link_colors', []),
                                            int).tolist())
    else:
        meta['classes'] = _dataset_classes(cfg, scope)
    if task == 'segmentation':
        meta['align_corners'] = bool(getattr(model.decode_head, 'align_corners', False))
    return meta


def write_metadata(model_path: str, meta: dict) -> str:
    """Write ``meta`` (checked by :func:`check_metadata` first) as ``FILE.json`` next to the
    exported ``model_path``, atomically; returns the path written."""
    check_metadata(meta, metadata_path(model_path))
    path = metadata_path(model_path)
    with atomic_write(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=1)
        f.write('\n')
    return path


# ------------------------------------------------------------------------ reading (checked)

def _fail(where: str, key: str, what: str):
    raise InvalidInputError(f'{where}: key {key!r}: {what}; re-export the model with '
                            'tools/deployment/export_onnx.py')


def _ints(where: str, key: str, value, n: int, lo: int = 1, hi: int = MAX_SIDE) -> list[int]:
    if (not isinstance(value, list) or len(value) != n
            or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
                       for v in value)):
        _fail(where, key, f'expected {n} integers in [{lo}, {hi}], got {value!r:.80}')
    return value


def _floats(where: str, key: str, value, n: int, positive: bool = False) -> list[float]:
    if (not isinstance(value, list) or len(value) != n
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) and (v > 0 or not positive) for v in value)):
        _fail(where, key, f'expected {n} finite{" positive" if positive else ""} numbers, '
              f'got {value!r:.80}')
    return [float(v) for v in value]


def _bool(where: str, key: str, value) -> bool:
    if not isinstance(value, bool):
        _fail(where, key, f'expected true or false, got {value!r:.80}')
    return value


def _names(where: str, key: str, value) -> list[str] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) > MAX_NAMES
            or not all(isinstance(v, str) and len(v) <= 1000 for v in value)):
        _fail(where, key, 'expected a list of names (strings) or null')
    return value


def _check_resize(where: str, task: str, r) -> None:
    if not isinstance(r, dict) or r.get('type') not in (
            'none', 'keep_ratio', 'exact', 'short_edge', 'topdown_affine'):
        _fail(where, 'resize', 'expected an object whose type is none, keep_ratio, exact, '
              'short_edge or topdown_affine')
    kind = r['type']
    if (kind == 'topdown_affine') != (task == 'pose'):
        _fail(where, 'resize', f'{kind} does not apply to a {task} model')
    if kind in ('keep_ratio', 'exact'):
        _ints(where, 'resize.scale', r.get('scale'), 2)
    elif kind == 'short_edge':
        _ints(where, 'resize.size', [r.get('size')], 1)
        if r.get('crop') is not None:
            _ints(where, 'resize.crop', r.get('crop'), 2)
    elif kind == 'topdown_affine':
        p = _floats(where, 'resize.padding', [r.get('padding')], 1, positive=True)[0]
        if p > 10:
            _fail(where, 'resize.padding', f'{p} is not a box padding (0, 10]')


def _check_pose(where: str, meta: dict) -> None:
    codec = meta.get('codec')
    if not isinstance(codec, dict) or codec.get('type') not in CODECS:
        _fail(where, 'codec', f'expected an object whose type is one of {list(CODECS)}')
    _ints(where, 'codec.input_size', codec.get('input_size'), 2)
    _ints(where, 'codec.heatmap_size', codec.get('heatmap_size'), 2)
    _floats(where, 'codec.sigma', [codec.get('sigma')], 1, positive=True)
    _bool(where, 'codec.unbiased', codec.get('unbiased'))
    k = codec.get('blur_kernel_size')
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 99 or k % 2 == 0:
        _fail(where, 'codec.blur_kernel_size', f'expected an odd integer in [1, 99], got {k!r}')
    for key in ('flip_test', 'shift_heatmap'):
        _bool(where, key, meta.get(key))
    if meta.get('flip_mode') != 'heatmap':
        _fail(where, 'flip_mode', f"expected 'heatmap', got {meta.get('flip_mode')!r:.80}")
    flip = meta.get('flip_indices')
    if not isinstance(flip, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in flip) or sorted(
            flip) != list(range(len(flip))) or (meta['flip_test'] and not flip):
        _fail(where, 'flip_indices', 'expected a permutation of the keypoint indices')
    k = len(flip) or len(meta.get('classes') or ())
    if meta.get('classes') is not None and len(meta['classes']) != k:
        _fail(where, 'classes', 'one keypoint name per flip index expected')
    links = meta.get('skeleton_links')
    if not isinstance(links, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in p)
            for p in links):
        _fail(where, 'skeleton_links', f'expected [i, j] pairs of keypoint indices below {k}')
    for key, n in (('keypoint_colors', k), ('skeleton_link_colors', len(links))):
        colors = meta.get(key)
        if not isinstance(colors, list) or len(colors) not in (0, n) or not all(
                isinstance(c, list) and len(c) == 3 and all(
                    isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                    for v in c) for c in colors):
            _fail(where, key, f'expected {n} [r, g, b] colours (0..255) or none')


def check_metadata(meta, where: str) -> dict:
    """``meta`` if it is well-formed exported-model metadata, else one
    :class:`InvalidInputError` line naming ``where`` and the key."""
    if not isinstance(meta, dict):
        raise InvalidInputError(f'{where}: not a JSON object')
    if meta.get('format') != FORMAT or meta.get('version') != VERSION:
        _fail(where, 'format', f'expected {FORMAT!r} version {VERSION}')
    task = meta.get('task')
    if task not in TASKS:
        _fail(where, 'task', f'expected one of {list(TASKS)}, got {task!r:.80}')
    _ints(where, 'input_size', meta.get('input_size'), 2)
    _bool(where, 'dynamic_hw', meta.get('dynamic_hw'))
    names = meta.get('output_names')
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        _fail(where, 'output_names', 'expected a non-empty list of names')
    if task == 'detection' and names[:3] != ['boxes', 'scores', 'labels']:
        _fail(where, 'output_names', 'a detector runs here as exported end to end (boxes, '
              'scores, labels); export it without --head-outputs')
    _floats(where, 'mean', meta.get('mean'), 3)
    _floats(where, 'std', meta.get('std'), 3, positive=True)
    _bool(where, 'to_rgb', meta.get('to_rgb'))
    _ints(where, 'size_divisor', [meta.get('size_divisor')], 1, 1, 1024)
    _floats(where, 'pad_value', [meta.get('pad_value')], 1)
    _check_resize(where, task, meta.get('resize'))
    _names(where, 'classes', meta.get('classes'))
    if task == 'pose':
        _check_pose(where, meta)
    if task == 'segmentation':
        _bool(where, 'align_corners', meta.get('align_corners'))
    return meta


def read_metadata(model_path: str) -> dict:
    """The checked metadata of the exported model ``model_path`` (``FILE.json``).

    Raises:
        MissingInputError: no metadata file next to the model.
        InvalidInputError: not JSON, too large, or a key missing or out of range.
    """
    path = metadata_path(model_path)
    if not osp.isfile(path):
        raise MissingInputError(f'{path} not found: the exported model {model_path} needs the '
                                'metadata that tools/deployment/export_onnx.py writes next to it')
    if os.path.getsize(path) > MAX_METADATA_BYTES:
        raise InvalidInputError(f'{path}: larger than {MAX_METADATA_BYTES} bytes; not the '
                                'metadata of an exported model')
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f, parse_constant=lambda c: _fail(path, c, 'not a JSON number'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInputError(f'{path}: not valid JSON ({e})') from None
    except RecursionError:
        raise InvalidInputError(f'{path}: nested too deeply; not exported-model metadata'
                                ) from None
    return check_metadata(meta, path)


# ------------------------------------------------------------------------ running

@dataclass
class Prepared:
    """One preprocessed image: the batch tensor and what post-processing needs."""
    batch: np.ndarray  # (1, 3, H, W) float32, normalised and padded
    img_shape: tuple[int, int]  # after resize / crop, before padding
    scale_factor: tuple[float, float] = (1.0, 1.0)  # (w, h)
    extra: dict = field(default_factory=dict)


class ExportedModel:
    """An exported model with its metadata, callable on images (see the module docstring).

    Args:
        path: the exported file (``.onnx``, ``.xml``, ``.mnn``, ``.param``).
        runtime: a key of :data:`micronet_mm.runtime.loaders.RUNTIMES`; default from the
            suffix.
        threads: the runtime's threads.
    """

    def __init__(self, path: str, runtime: str | None = None, threads: int = 1) -> None:
        if not osp.isfile(path):
            raise MissingInputError(f'exported model not found: {path}')
        self.path = path
        self.meta = read_metadata(path)
        self.task = self.meta['task']
        self.runtime = loaders.runtime_for(path, runtime)
        self.runner = loaders.load(path, self.runtime, threads)
        self.dataset_meta = {'classes': tuple(self.meta['classes'] or ())}
        if self.task == 'pose':  # what mmpose's visualizer reads (micronet_mm.apis.draw_poses)
            names = self.meta['classes'] or [str(i) for i in range(len(
                self.meta['flip_indices']))]
            self.dataset_meta = {
                'num_keypoints': len(names), 'keypoint_id2name': dict(enumerate(names)),
                'flip_indices': self.meta['flip_indices'],
                'skeleton_links': [tuple(p) for p in self.meta['skeleton_links']],
                'keypoint_colors': np.asarray(self.meta['keypoint_colors'] or
                                              [[255, 128, 0]] * len(names), np.uint8),
                'skeleton_link_colors': np.asarray(
                    self.meta['skeleton_link_colors'] or
                    [[0, 255, 0]] * len(self.meta['skeleton_links']), np.uint8)}

    # ------------------------------------------------------------------ preprocessing
    def _normalise(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` RGB uint8 -> ``(1, 3, H', W')`` float32 in the model's channel order,
        normalised, padded at the bottom and right to the size divisor."""
        img = rgb if self.meta['to_rgb'] else rgb[..., ::-1]
        mean = np.asarray(self.meta['mean'], np.float32)
        std = np.asarray(self.meta['std'], np.float32)
        x = ((img.astype(np.float32) - mean) / std).transpose(2, 0, 1)[None]
        d = self.meta['size_divisor']
        h, w = x.shape[2:]
        ph, pw = -(-h // d) * d, -(-w // d) * d
        if (ph, pw) != (h, w):
            x = np.pad(x, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)),
                       constant_values=self.meta['pad_value'])
        if not self.meta['dynamic_hw'] and tuple(x.shape[2:]) != tuple(self.meta['input_size']):
            raise InvalidInputError(
                f'{self.path}: the model takes {tuple(self.meta["input_size"])} inputs only and '
                f'this image is {tuple(x.shape[2:])} after preprocessing; export it with '
                '--dynamic-shape (or --shape H W of the preprocessed image)')
        return np.ascontiguousarray(x, np.float32)

    def _resize(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """The test pipeline's resize (and crop) by the toolboxes' own transforms."""
        r = self.meta['resize']
        if r['type'] == 'none':
            return rgb, (1.0, 1.0)
        if r['type'] in ('keep_ratio', 'exact'):
            from mmcv.transforms import Resize
            out = Resize(scale=tuple(r['scale']), keep_ratio=r['type'] == 'keep_ratio')(
                {'img': rgb})
            return out['img'], tuple(float(s) for s in out['scale_factor'])
        from mmcv.transforms import CenterCrop
        from mmpretrain.datasets.transforms import ResizeEdge
        out = ResizeEdge(scale=r['size'], edge='short')({'img': rgb})
        if r['crop'] is not None:
            out = CenterCrop(crop_size=tuple(r['crop']))(out)
        return out['img'], (1.0, 1.0)

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.runner(x)
        names = self.meta['output_names']
        if len(outs) != len(names):
            raise InvalidInputError(f'{self.path}: the model gives {len(outs)} outputs, its '
                                    f'metadata names {len(names)}')
        return dict(zip(names, outs))

    # ------------------------------------------------------------------ tasks
    def __call__(self, image: ImageLike, boxes=None):
        """The toolbox's result for one image (pose: one ``PoseDataSample`` per box; ``boxes``
        ``None`` is the whole image)."""
        if self.task == 'pose':
            return self.estimate_poses(image, boxes).data_samples
        if boxes is not None:
            raise InvalidInputError(f'boxes apply to pose models; {self.path} is a {self.task} '
                                    'model')
        return {'classifier': self.classify, 'detection': self.detect,
                'segmentation': self.segment}[self.task](image)

    def classify(self, image: ImageLike):
        """mmpretrain ``DataSample`` with ``pred_score`` (softmax) and ``pred_label``."""
        from mmpretrain.structures import DataSample
        rgb = load_rgb_image(image)
        img, _ = self._resize(rgb)
        logits = torch.from_numpy(self._run(self._normalise(img))[self.meta['output_names'][0]])
        score = torch.softmax(logits.float(), dim=1)[0]
        sample = DataSample(metainfo={'ori_shape': rgb.shape[:2], 'img_shape': img.shape[:2]})
        return sample.set_pred_score(score).set_pred_label(score.argmax(0, keepdim=True))

    def detect(self, image: ImageLike):
        """mmdet ``DetDataSample``: the detections, best first, in original image pixels."""
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        rgb = load_rgb_image(image)
        img, (sw, sh) = self._resize(rgb)
        out = self._run(self._normalise(img))
        boxes, scores, labels = out['boxes'][0], out['scores'][0], out['labels'][0]
        keep = labels >= 0
        boxes = boxes[keep].astype(np.float32).copy()
        h, w = img.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w) / sw
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h) / sh
        sample = DetDataSample(metainfo={'ori_shape': rgb.shape[:2], 'img_shape': (h, w),
                                         'scale_factor': (sw, sh)})
        sample.pred_instances = InstanceData(
            bboxes=torch.from_numpy(boxes), scores=torch.from_numpy(scores[keep].astype(
                np.float32)), labels=torch.from_numpy(labels[keep].astype(np.int64)))
        return sample

    def segment(self, image: ImageLike):
        """mmseg ``SegDataSample`` with ``seg_logits`` and ``pred_sem_seg`` at the image's
        size (images more elongated than :data:`micronet_mm.apis.seg.MAX_ASPECT` padded for
        inference and cropped back, as :func:`micronet_mm.apis.segment`)."""
        import torch.nn.functional as F
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        rgb = load_rgb_image(image)
        h0, w0 = rgb.shape[:2]
        padded = _pad_to_aspect(rgb, self.path)
        img, _ = self._resize(padded)
        logits = torch.from_numpy(self._run(self._normalise(img))[self.meta['output_names'][0]])
        align = self.meta['align_corners']
        # mmseg: to the resized image (its padding cropped), then to the original size
        x = F.interpolate(logits, size=self._normalise_shape(img), mode='bilinear',
                          align_corners=align)[:, :, :img.shape[0], :img.shape[1]]
        x = F.interpolate(x, size=padded.shape[:2], mode='bilinear', align_corners=align)[0]
        x = x[:, :h0, :w0]
        sample = SegDataSample(metainfo={'ori_shape': (h0, w0), 'img_shape': img.shape[:2]})
        sample.seg_logits = PixelData(data=x)
        sample.pred_sem_seg = PixelData(data=x.argmax(0, keepdim=True))
        return sample

    def _normalise_shape(self, img: np.ndarray) -> tuple[int, int]:
        d = self.meta['size_divisor']
        return -(-img.shape[0] // d) * d, -(-img.shape[1] // d) * d

    def estimate_poses(self, image: ImageLike, boxes=None) -> PoseResult:
        """Keypoints per person box (``None``: the whole image), as
        :func:`micronet_mm.apis.estimate_poses` returns them."""
        from mmengine.structures import InstanceData
        from mmpose.codecs import MSRAHeatmap
        from mmpose.datasets.transforms import GetBBoxCenterScale, TopdownAffine
        from mmpose.models.utils.tta import flip_heatmaps
        from mmpose.structures import PoseDataSample
        m, codec_meta = self.meta, self.meta['codec']
        bgr = np.ascontiguousarray(load_rgb_image(image)[..., ::-1])
        bboxes = check_boxes(boxes, *bgr.shape[:2])
        k = len(m['flip_indices']) or len(m['classes'] or ())
        if len(bboxes) == 0:
            return PoseResult(np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32),
                              bboxes)
        codec = MSRAHeatmap(input_size=tuple(codec_meta['input_size']),
                            heatmap_size=tuple(codec_meta['heatmap_size']),
                            sigma=codec_meta['sigma'], unbiased=codec_meta['unbiased'],
                            blur_kernel_size=codec_meta['blur_kernel_size'])
        center_scale = GetBBoxCenterScale(padding=m['resize']['padding'])
        affine = TopdownAffine(input_size=tuple(codec_meta['input_size']))
        samples, keypoints, scores = [], [], []
        for box in bboxes:
            data = affine(center_scale({'img': bgr, 'bbox': box[None].astype(np.float32),
                                        'bbox_score': np.ones(1, np.float32)}))
            x = self._normalise(np.ascontiguousarray(data['img'][..., ::-1]))  # RGB in
            name = m['output_names'][0]
            heatmaps = torch.from_numpy(self._run(x)[name])
            if m['flip_test']:
                flipped = torch.from_numpy(self._run(np.ascontiguousarray(x[..., ::-1]))[name])
                heatmaps = (heatmaps + flip_heatmaps(
                    flipped, flip_mode=m['flip_mode'], flip_indices=m['flip_indices'],
                    shift_heatmap=m['shift_heatmap'])) * 0.5
            kpts, kscores = codec.decode(heatmaps[0].numpy())
            size = np.asarray(codec_meta['input_size'], np.float32)
            kpts = (kpts / size * data['input_scale'] + data['input_center']
                    - 0.5 * data['input_scale'])
            sample = PoseDataSample(metainfo={'input_size': tuple(codec_meta['input_size']),
                                              'input_center': data['input_center'],
                                              'input_scale': data['input_scale'],
                                              'ori_shape': bgr.shape[:2]})
            sample.pred_instances = InstanceData(
                keypoints=kpts.astype(np.float32), keypoint_scores=kscores.astype(np.float32),
                bboxes=box[None].astype(np.float32), bbox_scores=np.ones(1, np.float32))
            samples.append(sample)
            keypoints.append(kpts)
            scores.append(kscores)
        return PoseResult(np.concatenate(keypoints).astype(np.float32),
                          np.concatenate(scores).astype(np.float32), bboxes, samples)


def load_exported(path: str, runtime: str | None = None, threads: int = 1) -> ExportedModel:
    """:class:`ExportedModel` of ``path`` (its metadata ``FILE.json`` next to it)."""
    return ExportedModel(path, runtime, threads)
