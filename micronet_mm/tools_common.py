"""Shared parts of tools/train.py, tools/test.py and the analysis tools: loading a config and
checking, before anything is built, that the data and checkpoints it names exist."""
from __future__ import annotations

import contextlib
import os.path as osp
import re

from mmengine.config import Config


class MissingInputError(FileNotFoundError):
    """A dataset or checkpoint path in the config does not exist; the message says how to fix."""


class CorruptImageError(RuntimeError):
    """An image of the dataset could not be decoded."""


@contextlib.contextmanager
def clear_data_errors():
    """Turn mmcv's "failed to load image" (raised inside a data-loader worker, under a long
    traceback) into one clear error naming the file."""
    try:
        yield
    except (AssertionError, OSError, ValueError) as e:
        found = re.search(r'failed to load image: (\S+)', str(e))
        if not found:
            raise
        raise CorruptImageError(
            f'cannot decode image {found[1]} (corrupt or not an image). Replace it, or remove '
            'it from the annotation file, and run again.') from None


def add_launcher_args(parser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local_rank``, shared by train.py and test.py."""
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def default_work_dir(cfg: Config, work_dir: str | None, config_path: str) -> str:
    """``--work-dir``, else the config's ``work_dir``, else ``./work_dirs/<config name>``."""
    return work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(config_path))[0])


def build_model(cfg: Config):
    """The config's model, built under its toolbox's default scope, in eval mode."""
    import micronet_mm.models  # noqa: F401  (registers the MicroNet modules)
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    if not osp.isfile(path):
        raise MissingInputError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _is_remote(path: str) -> bool:
    return '://' in str(path)


def _dataset_paths(dataset: dict, where: str):
    """Yield ``(config key, path)`` for the files and folders a dataset config needs."""
    if dataset is None:
        return
    if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset, ...
        yield from _dataset_paths(dataset['dataset'], f'{where}.dataset')
    for i, sub in enumerate(dataset.get('datasets') or []):  # ConcatDataset
        yield from _dataset_paths(sub, f'{where}.datasets.{i}')
    root = dataset.get('data_root') or ''
    if root:
        yield f'{where}.data_root', root
    if dataset.get('ann_file'):
        yield f'{where}.ann_file', osp.join(root, dataset['ann_file'])
    prefix = dataset.get('data_prefix') or {}
    if isinstance(prefix, str):  # mmpretrain's CustomDataset takes a plain folder
        prefix = {'': prefix}
    for key, value in prefix.items():
        if isinstance(value, str) and value:
            name = f'{where}.data_prefix' + (f'.{key}' if key else '')
            yield name, osp.join(root, value)


def _checkpoint_paths(node, where: str):
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and node.get('checkpoint'):
            yield f'{where}.checkpoint', node['checkpoint']
        for key, value in node.items():
            yield from _checkpoint_paths(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _checkpoint_paths(value, f'{where}.{i}')


def check_paths(cfg: Config, *, train: bool) -> None:
    """Raise :class:`MissingInputError` naming every missing dataset path or checkpoint.

    Args:
        cfg: the merged config.
        train: check the training (and validation) data; else the test data.
    """
    loaders = ('train_dataloader', 'val_dataloader') if train else ('test_dataloader',)
    problems = []
    for loader in loaders:
        dataset = (cfg.get(loader) or {}).get('dataset')
        for key, path in _dataset_paths(dataset, f'{loader}.dataset'):
            if not _is_remote(path) and not osp.exists(path):
                problems.append(
                    f'  {key}: {path!r} does not exist. Point the config at your copy, e.g. '
                    f'--cfg-options {key}=/path/to/it (or edit the config).')
    checkpoints = list(_checkpoint_paths(cfg.get('model'), 'model')) if train else []
    if train and cfg.get('load_from') and cfg.get('resume') is not True:
        checkpoints.append(('load_from', cfg.load_from))
    for key, path in checkpoints:
        if not _is_remote(path) and not osp.isfile(path):
            problems.append(f'  {key}: checkpoint {path!r} not found. Download or convert it '
                            f'(see README, "Weights"), or set --cfg-options {key}=/path/to/ckpt.')
    if problems:
        raise MissingInputError('missing inputs:\n' + '\n'.join(dict.fromkeys(problems)))
