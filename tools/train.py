"""Train a micronet_mm config with mmengine's Runner (any toolbox: the config's default_scope
decides whether mmpretrain, mmdet, mmpose or mmseg builds it).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT] | --force] [--amp]
                                 [--auto-scale-lr] [--cfg-options k=v ...]
                                 [--launcher {none,pytorch,slurm,mpi}]

A work dir that already holds checkpoints is refused unless --resume (continue that run) or
--force (overwrite its checkpoints) is given. Training resumes bit-identically: see
micronet_mm/resume.py.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import micronet_mm  # noqa: E402,F401  (safe checkpoint loading)
from micronet_mm.engine import setup_cpu_distributed  # noqa: E402
from micronet_mm.errors import run_cli  # noqa: E402
from micronet_mm.fileio import refuse_used_work_dir  # noqa: E402
from micronet_mm.resume import prepare_resumable  # noqa: E402
from micronet_mm.tools_common import (add_launcher_args, check_hooks, check_paths,  # noqa: E402
                                      clear_data_errors, default_work_dir, load_config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the work dir '
                        'when no path is given')
    parser.add_argument('--force', action='store_true',
                        help='train into a work dir that already holds checkpoints, '
                        'overwriting them')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--no-pin-memory', action='store_true')
    parser.add_argument('--no-persistent-workers', action='store_true')
    add_launcher_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg, args):
    cfg.launcher = args.launcher
    cfg.work_dir = default_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is not None:
            if args.no_pin_memory:
                cfg[loader]['pin_memory'] = False
            if args.no_persistent_workers:
                cfg[loader]['persistent_workers'] = False
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config, args.cfg_options), args)
    check_paths(cfg, train=True)
    check_hooks(cfg)  # the user's hooks, before prepare_resumable swaps in its own
    refuse_used_work_dir(cfg.work_dir, resume=args.resume is not None, force=args.force)
    prepare_resumable(cfg)  # after check_paths: its messages name the user's config keys
    setup_cpu_distributed(cfg)
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    with clear_data_errors():
        runner.train()


if __name__ == '__main__':
    run_cli(main)
