"""Evaluate a checkpoint with a micronet_mm config (any toolbox, by the config's default_scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl [--force]]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import micronet_mm  # noqa: E402,F401  (safe checkpoint loading)
from micronet_mm.checkpoint import check_weights, safe_load  # noqa: E402
from micronet_mm.engine import setup_cpu_distributed  # noqa: E402
from micronet_mm.errors import UserError, run_cli  # noqa: E402
from micronet_mm.fileio import atomic_image_writes, refuse_overwrite  # noqa: E402
from micronet_mm.hooks import AtomicDumpResults  # noqa: E402,F401  (registers it)
from micronet_mm.tools_common import (InvalidInputError, MissingInputError,  # noqa: E402
                                      add_launcher_args, check_hooks, check_paths,
                                      clear_data_errors, default_work_dir, load_config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--force', action='store_true', help='replace an existing --out file')
    parser.add_argument('--show-dir', help='draw every prediction into this directory: '
                        'detection and pose put a relative one inside the run\'s timestamped '
                        'log dir, classification uses it as given, segmentation writes into '
                        'its vis_data/vis_image')
    add_launcher_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_drawing(cfg, show_dir: str) -> None:
    """Switch on the toolbox's visualization hook so that it draws every test image into
    ``show_dir``. Each toolbox names it differently:

    - mmdet ``DetVisualizationHook``: ``draw``, ``test_out_dir`` (relative: inside the run's
      timestamped log dir), ``interval`` (also counted in testing, so 1);
    - mmseg ``SegVisualizationHook`` has no output-dir argument; in testing it draws every image
      and its visualizer's backends save them, so ``visualizer.save_dir`` is set, as mmseg's
      own tools/test.py does (images in ``show_dir/vis_data/vis_image``);
    - mmpose ``PoseVisualizationHook``: ``enable``, ``out_dir``;
    - mmpretrain ``VisualizationHook``: ``enable``, ``out_dir``, and ``interval`` counts test
      samples (default 5000: one image), so 1.
    """
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise InvalidInputError('--show-dir: the config has no default_hooks.visualization; '
                                'add one or leave out --show-dir')
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        hook.update(draw=True, test_out_dir=show_dir, interval=1)
    elif scope == 'mmseg':
        hook.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
    elif scope == 'mmpose':
        hook.update(enable=True, out_dir=show_dir)
    else:  # mmpretrain
        hook.update(enable=True, out_dir=show_dir, interval=1)
    hook.show = False


IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')


def drawn_folder(runner, cfg, show_dir: str) -> str:
    """Where the visualization hook of :func:`enable_drawing` wrote the pictures: mmdet, mmpose
    and mmpretrain hooks hold the folder they used (a relative ``--show-dir`` is taken inside
    the run's timestamped log dir by some); mmseg's visualizer saves into
    ``show_dir/vis_data/vis_image``."""
    if cfg.get('default_scope') == 'mmseg':
        return osp.abspath(osp.join(show_dir, 'vis_data', 'vis_image'))
    attribute = 'test_out_dir' if cfg.get('default_scope') == 'mmdet' else 'out_dir'
    for hook in runner.hooks:
        folder = getattr(hook, attribute, None)
        if 'Visualization' in type(hook).__name__ and isinstance(folder, str):
            return osp.abspath(folder)
    return osp.abspath(show_dir)


def count_images(folder: str) -> int:
    return sum(f.lower().endswith(IMAGE_EXTENSIONS)
               for _, _, files in os.walk(folder) for f in files)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.out and not args.out.endswith(('.pkl', '.pickle')):  # DumpResults would raise
        raise UserError(f'--out {args.out}: the predictions are dumped as a pickle; give a '
                        'file name ending in .pkl or .pickle')
    if not osp.isfile(args.checkpoint):
        raise MissingInputError(f'checkpoint not found: {args.checkpoint}')
    if args.out:
        refuse_overwrite(args.out, args.force)
    checkpoint = safe_load(args.checkpoint, map_location='cpu')  # refuses before any build
    cfg = load_config(args.config, args.cfg_options)
    check_paths(cfg, train=False)
    check_hooks(cfg)
    cfg.launcher = args.launcher
    cfg.work_dir = default_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_drawing(cfg, args.show_dir)
    if args.out:
        cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
            cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='AtomicDumpResults', out_file_path=args.out))
    setup_cpu_distributed(cfg)
    from mmengine.runner import Runner
    from mmengine.model import is_model_wrapper
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    check_weights(model, checkpoint, source=args.checkpoint)  # strict: the rule is there
    drawing = atomic_image_writes() if args.show_dir else contextlib.nullcontext()
    with clear_data_errors(), drawing:
        metrics = runner.test()
    print('Results: ' + '  '.join(f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
                                  for k, v in metrics.items()))
    if args.show_dir:
        folder = drawn_folder(runner, cfg, args.show_dir)
        print(f'Drew {count_images(folder)} test images into {folder}')
    return metrics


if __name__ == '__main__':
    run_cli(main)
