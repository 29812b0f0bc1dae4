"""Evaluate an exported detector on its config's test split with mmdet's own metric, and, with
``--checkpoint``, the PyTorch model on the same images, side by side.

    python tools/deployment/test_exported.py CONFIG MODEL [--checkpoint CKPT] [--runtime NAME]
        [--cfg-options k=v ...]

``MODEL`` is a file that ``tools/deployment/export_onnx.py`` wrote (with its ``MODEL.json``);
it runs through :func:`micronet_mm.apis.load_exported` (the runtime from its suffix, or
``--runtime``). The config gives the test split (``test_dataloader.dataset``) and the metric
(``test_evaluator``, mmdet's ``CocoMetric``), built by mmdet's registries as ``tools/test.py``
builds them. Every image is read from its file and run alone; the PyTorch model (``--checkpoint``)
goes through mmdet's ``inference_detector`` on the same files, so that the two rows differ in the
model only. Prints one line per model and returns ``{'pytorch': metrics, 'exported': metrics}``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

import micronet_mm  # noqa: E402,F401  (safe checkpoint loading)
from micronet_mm.apis import load_exported  # noqa: E402
from micronet_mm.errors import InvalidInputError, MissingInputError, run_cli  # noqa: E402
from micronet_mm.tools_common import load_config  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate an exported detector (mmdet metric)')
    parser.add_argument('config', help='the mmdet config the model was exported from')
    parser.add_argument('model', help='the exported file (.onnx, .xml, ...) with its FILE.json')
    parser.add_argument('--checkpoint', help='also evaluate this PyTorch checkpoint')
    parser.add_argument('--runtime', help='runtime (default: from the file suffix)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def evaluate(cfg, predict) -> dict:
    """``cfg.test_evaluator`` over ``cfg.test_dataloader.dataset``, each image predicted by
    ``predict(image_path) -> DetDataSample`` (boxes in original pixels)."""
    from mmdet.registry import DATASETS, METRICS
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        metrics = cfg.test_evaluator
        evaluator = Evaluator([METRICS.build(m) for m in (
            metrics if isinstance(metrics, list) else [metrics])])
    evaluator.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        sample = predict(info['img_path'])
        sample.set_metainfo({'img_id': info['img_id'],
                             'ori_shape': (info['height'], info['width'])})
        evaluator.process([sample])
    return evaluator.evaluate(len(dataset))


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if cfg.get('default_scope') != 'mmdet':
        raise InvalidInputError(f'{args.config}: not an mmdet config; this tool evaluates '
                                'exported detectors')
    exported = load_exported(args.model, args.runtime)
    if exported.task != 'detection':
        raise InvalidInputError(f'{args.model}: a {exported.task} model; this tool evaluates '
                                'exported detectors')
    results = {}
    if args.checkpoint is not None:
        if not osp.isfile(args.checkpoint):
            raise MissingInputError(f'checkpoint not found: {args.checkpoint}')
        import micronet_mm.models  # noqa: F401  (registers MicroNet in mmdet)
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(cfg, args.checkpoint, device='cpu')
        results['pytorch'] = evaluate(cfg, lambda path: inference_detector(model, path))
    results['exported'] = evaluate(cfg, exported.detect)
    for name, metrics in results.items():
        shown = ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()
                          if isinstance(v, float) and k.endswith(('mAP', 'mAP_50')))
        label = 'PyTorch' if name == 'pytorch' else f'exported ({exported.runtime})'
        print(f'{label:>24}: {shown}')
    return results


if __name__ == '__main__':
    run_cli(main)
