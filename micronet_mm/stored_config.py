"""What a config stored in a checkpoint may contain before anything is built from it.

A config read from a checkpoint (``meta['cfg']``) is literal data (see
:func:`micronet_mm.checkpoint.config_text_as_data`), but data can still act: mmengine's
``Registry.get`` imports a ``type`` it does not find (``'os.system'``, ``'subprocess.call'``,
``'mmdet.os.system'`` splits into a scope ``mmdet`` and a name ``os.system``), and
``build_from_cfg`` calls what it imported. A default scope or ``_scope_`` it does not know is
imported as ``<scope>.registry``. So every ``type`` anywhere in the config must resolve, without
any import, to an object already registered in the registries of :data:`SCOPES` (micronet_mm
registers its models there), and every scope must be one of them: an allow-list, not a list of
bad names. The toolboxes' own registry locations (``mmdet.models``, ...) are imported first when
a name is not found, as mmengine would.

Settings that only a training run uses, and that would read or write files, are removed before
the config is handed on: ``load_from``, ``resume``, ``work_dir``, the hooks, the visualizer's
``save_dir`` and ``vis_backends``, every ``init_cfg`` (the checkpoint's own weights replace any
initialisation) and ``pretrained`` downloads. A model setting that still names a file or a URL
(a teacher config, a checkpoint) is refused, and so is a ``metainfo`` ``from_file`` other than
mmpose's own dataset files (mmpose executes that file).
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys

from .errors import UserError

#: scopes whose registries hold the types a stored config may name
SCOPES = ('mmengine', 'mmpretrain', 'mmdet', 'mmseg', 'mmpose')
#: modules that register mmengine's and mmcv's own types (mmengine's registries name no location)
_BASE_MODULES = ('mmengine.runner', 'mmengine.optim', 'mmengine.hooks', 'mmengine.model',
                 'mmengine.dataset', 'mmengine.evaluator', 'mmengine.visualization',
                 'mmcv.transforms')
#: micronet_mm's own modules that register the types ``tools/train.py`` writes into every run
#: config (``AtomicCheckpointHook``, ``RNGStateHook``, ``ResumableEpochBasedTrainLoop``,
#: ``ResumableSampler``, ``SeededDataset``): imported, as the toolboxes' registry locations are,
#: when a stored config names a type that is not registered yet
_OWN_MODULES = ('micronet_mm.resume',)
#: ``type`` values that name no registered class: ``{parent key: accepted values}``. mmcv's
#: ``batched_nms`` reads ``nms=dict(type=...)`` and *evaluates* the string as Python, so only
#: the names of its own functions are accepted there
NON_REGISTRY_TYPES = {'nms': ('nms', 'soft_nms')}
#: parent keys whose ``type`` the toolbox looks up as an attribute of one fixed module, not in a
#: registry: ``{parent key: module}`` (mmdet's RoI extractors: ``getattr(mmcv.ops, type)``);
#: only a class of that module is accepted
MODULE_TYPES = {'roi_layer': 'mmcv.ops'}
#: parent keys whose ``type`` may also be a plain name that no registry holds: an albumentations
#: transform (``getattr(albumentations, type)``), a LoRA target (a submodule name). A name that
#: is also an importable module is still refused (a registry would import it)
NAME_TYPES = ('transforms', 'targets')
#: other strings the toolboxes evaluate as Python: ``{key: the form accepted}`` (mmpretrain's
#: torchvision transforms ``eval('torch.' + dtype)``, mmdet's camera motion compensation
#: ``eval(warp_mode)``)
EVALUATED_STRINGS = {'dtype': r'[A-Za-z_][A-Za-z0-9_]*', 'warp_mode': r'cv2\.MOTION_[A-Z]+'}
#: top-level settings of a training run, dropped from a stored config
RUN_KEYS = ('load_from', 'resume', 'resume_from', 'work_dir', 'default_hooks', 'custom_hooks',
            'launcher')
#: the dataset description files mmpose's ``metainfo=dict(from_file=...)`` names (it executes
#: the file as a config; relative names resolve to mmpose's own copies)
_METAINFO_FILE = r'configs/_base_/datasets/[A-Za-z0-9_]+\.py'
#: endings of strings that name a file to load, refused in a stored model config
_FILE_ENDINGS = ('.py', '.pth', '.pt', '.ckpt', '.pkl', '.pickle', '.pdparams', '.bin',
                 '.safetensors', '.json', '.yaml', '.yml', '.onnx', '.so')


class StoredConfigError(UserError):
    """A config stored in a checkpoint names a type or a file it may not."""


def _registries() -> dict[str, list]:
    from mmengine.registry import Registry
    found = {}
    for scope in SCOPES:
        try:
            module = importlib.import_module(f'{scope}.registry')
        except ImportError:  # a toolbox that is not installed registers nothing
            continue
        found[scope] = [v for v in vars(module).values() if isinstance(v, Registry)]
    return found


def _fill_registries(registries: dict[str, list]) -> None:
    """Import what registers the toolboxes' types (their own registry locations)."""
    for name in _BASE_MODULES + _OWN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for regs in registries.values():
        for registry in regs:
            if registry._locations:
                try:
                    registry.import_from_location()
                except Exception:  # noqa: BLE001  (a broken toolbox: its names stay unknown)
                    pass


def registered_names(fill: bool = False) -> dict[str, set[str]]:
    """``{scope: names registered in any of its registries}``; ``fill`` imports the toolboxes'
    registry locations first."""
    registries = _registries()
    if fill:
        _fill_registries(registries)
    return {scope: {name for r in regs for name in r._module_dict}
            for scope, regs in registries.items()}


def _is_module_name(name: str) -> bool:
    """Whether ``name`` is an importable top-level module (mmengine imports a type it does not
    find in the registry that builds it)."""
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _resolves(value, names: dict[str, set[str]]) -> bool:
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    scope, dot, name = value.partition('.')
    if dot:  # 'mmdet.RetinaNet': a known scope and a registered name without dots
        return (scope in names and '.' not in name
                and (name in names[scope] or name in names.get('mmengine', ())))
    return any(value in found for found in names.values()) and not _is_module_name(value)


def _walk(node, path: str, parent=None):
    """``(key path, key, value, parent key)`` of every mapping entry in a nested config."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f'{path}.{key}' if path else str(key)
            yield here, key, value, parent
            yield from _walk(value, here, key)
    elif isinstance(node, (list, tuple, set)):
        for i, value in enumerate(node):
            yield from _walk(value, f'{path}[{i}]', parent)


def _module_class(value, module: str) -> bool:
    if not isinstance(value, str) or not value.isidentifier():
        return False
    try:
        found = getattr(importlib.import_module(module), value, None)
    except ImportError:
        return False
    return isinstance(found, type)


def _names_a_file(value) -> bool:
    return isinstance(value, str) and ('://' in value or value.lower().endswith(_FILE_ENDINGS))


def check_stored_config(data: dict, where: str) -> dict:
    """Refuse a stored config that names anything but registered types; return it without its
    run settings (see the module).

    Args:
        data: the config as data.
        where: the checkpoint and the place in it, for the message
            (``"checkpoint a.pth: meta['cfg']"``).

    Raises:
        StoredConfigError: one line naming ``where`` and the key path.
    """
    names, filled = registered_names(), False
    for path, key, value, parent in _walk(data, ''):
        if key == 'type' and parent in NON_REGISTRY_TYPES:
            if value not in NON_REGISTRY_TYPES[parent]:
                raise StoredConfigError(
                    f'{where} names {value!r} at {path}, which is not one of '
                    f'{", ".join(NON_REGISTRY_TYPES[parent])} (mmcv evaluates it as Python); '
                    'refused, nothing was built. Do not use this file')
        elif key == 'type' and parent in MODULE_TYPES:
            if not _module_class(value, MODULE_TYPES[parent]):
                raise StoredConfigError(
                    f'{where} names {value!r} at {path}, which is not a class of '
                    f'{MODULE_TYPES[parent]}; refused, nothing was built. Do not use this file')
        elif key == 'type':
            if not filled and not _resolves(value, names):
                names, filled = registered_names(fill=True), True
            plain_name = (parent in NAME_TYPES and isinstance(value, str)
                          and value.isidentifier() and not _is_module_name(value))
            if not plain_name and not _resolves(value, names):
                raise StoredConfigError(
                    f'{where} names type {value!r} at {path}, which is not a type registered '
                    f'in the {", ".join(SCOPES)} registries (or by micronet_mm); refused, '
                    'nothing was built. Do not use this file, or load it with the config it '
                    'was trained with')
        elif key in EVALUATED_STRINGS and isinstance(value, str) and not re.fullmatch(
                EVALUATED_STRINGS[key], value):
            raise StoredConfigError(
                f'{where} gives {value!r} at {path}, which the toolbox evaluates as Python; '
                'only a plain name is accepted there. Refused, nothing was built. Do not use '
                'this file')
        elif (key == 'from_file' or key == 'metainfo' and isinstance(value, str)) and not (
                isinstance(value, str) and re.fullmatch(_METAINFO_FILE, value)):
            raise StoredConfigError(
                f'{where} names the file {value!r} at {path}; mmpose executes it as a config. '
                'Only its own dataset files (configs/_base_/datasets/NAME.py) are accepted; '
                'refused. Load it with the config it was trained with')
        elif key in ('_scope_', 'default_scope') and value is not None and value not in SCOPES:
            raise StoredConfigError(
                f'{where} names scope {value!r} at {path}, which is not one of '
                f'{", ".join(SCOPES)}; refused. Do not use this file')
    clean = {k: v for k, v in data.items() if k not in RUN_KEYS}
    if isinstance(clean.get('visualizer'), dict):
        clean['visualizer'] = {k: v for k, v in clean['visualizer'].items()
                               if k not in ('save_dir', 'vis_backends')}
    clean = _without_init(clean)
    for path, _, value, _ in _walk(clean.get('model'), 'model'):
        if _names_a_file(value) and not re.fullmatch(_METAINFO_FILE, value):  # checked above
            raise StoredConfigError(
                f'{where} names the file {value!r} at {path}; a model built from a stored '
                'config loads no other file. Refused: load it with the config it was trained '
                'with')
    return clean


def _without_init(node):
    """``node`` without ``init_cfg`` entries, and with ``pretrained`` downloads turned off."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == 'init_cfg':
                continue
            if key == 'pretrained' and value:
                value = False if value is True else None
            out[key] = _without_init(value)
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(_without_init(v) for v in node)
    return node
