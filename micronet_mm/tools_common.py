"""Shared parts of tools/train.py, tools/test.py and the analysis tools: loading a config (its
``--cfg-options`` keys checked), checking before anything is built that the data and checkpoints
it names exist and that its hook arguments are real, and naming the file behind a data error."""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import os.path as osp
import re

from mmengine.config import Config

from micronet_mm.errors import (CorruptImageError, InvalidInputError, MissingInputError,
                                UserError)
from micronet_mm.limits import LimitError, image_header_pixels

__all__ = ['CorruptImageError', 'InvalidInputError', 'MissingInputError', 'UserError',
           'add_launcher_args', 'build_model', 'check_hooks', 'check_option_keys', 'check_paths',
           'clear_data_errors', 'default_work_dir', 'load_config']

#: the message line of mmcv's assertion or of :func:`_name_image_errors` (not a source line
#: of a traceback text, which is indented); mmpose quotes it in backticks
_IMAGE_ERROR = re.compile(r'^`?(?:[\w.]+: )?(?:failed to load image|cannot decode image): '
                          r'([^`\n]+)', re.M)
#: the message line of an image refused by :func:`micronet_mm.limits.image_header_pixels`
_LIMIT_ERROR = re.compile(r'^(?:[\w.]*LimitError: )(image .+ MICRONET_MM_MAX_IMAGE_PIXELS)$', re.M)
_PATH_LOCALS = ('filename', 'filepath', 'file_path', 'annotation_file', 'ann_file', 'local_path',
                'path', 'file', 'fname')


def _image_reason(path: str) -> str:
    if not osp.exists(path):
        return 'does not exist'
    return 'is an empty file' if osp.getsize(path) == 0 else 'is corrupt or not an image'


def _name_image_errors(transform):
    """``LoadImageFromFile.transform`` that names the file when decoding fails: mmcv asserts
    with the path for an undecodable file, but lets OpenCV's bare ``cv2.error`` through for an
    empty one."""
    def named(self, results):
        path = results.get('img_path')
        if isinstance(path, str) and osp.isfile(path):
            image_header_pixels(path)  # before the decoder allocates
        try:
            return transform(self, results)
        except (CorruptImageError, LimitError):
            raise
        except Exception as e:  # noqa: BLE001  (decoders raise many types)
            path = results.get('img_path')
            if not isinstance(path, str):
                raise
            raise CorruptImageError(f'cannot decode image: {path}') from e
    named.__wrapped__ = transform
    return named


def _file_in_traceback(error: BaseException) -> str | None:
    """The file being read where ``error`` was raised: the innermost frame with an open file
    or a path argument naming an existing file."""
    tb, frames = error.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name, value in frame.f_locals.items():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, 'name', None), str):
                value = value.name
            elif name not in _PATH_LOCALS:
                continue
            if isinstance(value, str) and osp.isfile(value):
                return value
    return None


@contextlib.contextmanager
def clear_data_errors():
    """Turn errors in reading a dataset into one clear error naming the file.

    - An image that cannot be decoded (mmcv's "failed to load image", OpenCV's bare error for
      an empty file), also when raised in a data-loader worker under a long traceback text.
    - An annotation file that is not JSON, a class list that is not text.
    """
    from mmcv.transforms import LoadImageFromFile
    original = LoadImageFromFile.transform
    LoadImageFromFile.transform = _name_image_errors(original)  # before workers fork
    try:
        yield
    except (AssertionError, OSError, ValueError, RuntimeError) as e:
        over = _LIMIT_ERROR.findall(str(e))  # from a worker: under the worker's traceback text
        if isinstance(e, LimitError) and over and '\n' in str(e):
            raise LimitError(over[-1]) from None
        found = _IMAGE_ERROR.findall(str(e))
        path = found[-1].strip() if found else None  # the last: the message, not source lines
        if path and '{' not in path:
            raise CorruptImageError(
                f'cannot decode image {path} ({_image_reason(path)}). Replace it, or remove it '
                'from the annotation file, and run again.') from None
        if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)):
            file = _file_in_traceback(e)
            if file:
                kind = 'JSON' if isinstance(e, json.JSONDecodeError) else 'a UTF-8 text file'
                raise InvalidInputError(
                    f'{file} is not {kind} ({type(e).__name__}: {e}); fix or replace it, or '
                    'point the config at the right file') from None
        raise
    finally:
        LoadImageFromFile.transform = original


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
    """The config file merged with ``--cfg-options`` (checked by :func:`check_option_keys`)."""
    if not osp.isfile(path):
        raise MissingInputError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    return cfg


#: top-level keys mmengine's Runner reads although configs often leave them out
RUNNER_KEYS = ('default_scope', 'env_cfg', 'randomness', 'log_level', 'log_processor',
               'launcher', 'load_from', 'resume', 'work_dir', 'experiment_name', 'auto_scale_lr',
               'custom_hooks', 'default_hooks', 'visualizer', 'cfg', 'data_preprocessor',
               'train_cfg', 'val_cfg', 'test_cfg', 'train_dataloader', 'val_dataloader',
               'test_dataloader', 'val_evaluator', 'test_evaluator', 'optim_wrapper',
               'param_scheduler', 'custom_imports', 'strategy')


def check_option_keys(cfg: Config, options: dict) -> None:
    """Refuse ``--cfg-options`` keys that cannot be meant.

    The rule: every part of a dotted key but the last must exist in the config (a list index
    must be in range); the last part may be new, because OpenMMLab users add keyword arguments
    that a config leaves at their defaults (``default_hooks.checkpoint.max_keep_ckpts=3``);
    :func:`check_hooks` then checks hook arguments against the hook class. A new top-level key
    (or a new top-level dict such as ``randomness``) must be one the Runner reads
    (:data:`RUNNER_KEYS`). A missing ``*_cfg`` part may be created too (``init_cfg``,
    ``test_cfg``, ...: by OpenMMLab convention the keys that hold a config dict).

    Raises:
        InvalidInputError: naming the key and the part that does not exist.
    """
    for key in options:
        parts = key.split('.')
        node = cfg._cfg_dict
        for depth, part in enumerate(parts[:-1]):
            where = '.'.join(parts[:depth + 1])
            absent = not isinstance(node, dict) or node.get(part) is None
            if absent and (part.endswith('_cfg') or depth == 0 and part in RUNNER_KEYS):
                break  # randomness.seed=0, model.backbone.init_cfg.type=Pretrained: new dicts
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node and node[part] is not None:
                node = node[part]
            else:
                raise InvalidInputError(
                    f'--cfg-options {key}: the config has no {where!r}; check the spelling '
                    f'(keys there: {_keys_of(node)})')
        if len(parts) == 1 and key not in cfg and key not in RUNNER_KEYS:
            raise InvalidInputError(f'--cfg-options {key}: no such top-level key in the config '
                                    f'or the Runner; check the spelling')


def _keys_of(node) -> str:
    if isinstance(node, dict):
        return ', '.join(sorted(map(str, node))[:20]) or 'none'
    if isinstance(node, (list, tuple)):
        return f'a list of {len(node)}'
    return 'none (a value)'


def _hook_configs(cfg: Config):
    for name, hook in (cfg.get('default_hooks') or {}).items():
        if isinstance(hook, dict):
            yield f'default_hooks.{name}', hook
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict):
            yield f'custom_hooks.{i}', hook


def check_hooks(cfg: Config) -> None:
    """Check every hook's arguments against its class before training starts, so that a typo
    fails now, not when the hook first runs (``CheckpointHook`` passes unknown arguments on to
    ``Runner.save_checkpoint``, which takes none: a typo there crashed after an epoch).

    Raises:
        InvalidInputError: naming the hook key, the argument and the accepted ones.
    """
    from mmengine.hooks import CheckpointHook
    from mmengine.registry import HOOKS
    for where, hook in _hook_configs(cfg):
        kind = hook.get('type')
        with HOOKS.switch_scope_and_registry(hook.get('_scope_') or cfg.get('default_scope')) \
                as registry:
            cls = registry.get(kind) if isinstance(kind, str) else kind
        if not inspect.isclass(cls):
            raise InvalidInputError(f'{where}.type: no hook {kind!r} in the registry; check the '
                                    'spelling')
        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if takes_any and not issubclass(cls, CheckpointHook):
            continue
        named = [n for n, p in params.items() if n != 'self' and p.kind is not p.VAR_KEYWORD]
        for arg in hook:
            if arg != 'type' and not arg.startswith('_') and arg not in named:  # _scope_
                raise InvalidInputError(f'{where}.{arg}: {cls.__name__} has no argument {arg!r} '
                                        f'(it takes {", ".join(named)})')


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
                            f'(see README, "Model zoo and weights"), or set --cfg-options '
                            f'{key}=/path/to/ckpt.')
    if problems:
        raise MissingInputError('missing inputs:\n' + '\n'.join(dict.fromkeys(problems)))
