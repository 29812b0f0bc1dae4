"""Convert checkpoints of the official MicroNet release (github liyunsheng13/micronet) into
``micronet_mm`` classifier checkpoints.

The official file is a plain state dict, possibly wrapped in ``{'state_dict': ...}`` and with
``module.`` prefixes (DataParallel). Its keys follow the reference code's ``nn.Sequential``
indices::

    features.0.stem.0.conv.{0,1,2,3}            stem: 3x1 conv, BN, 1x3 conv, BN
    features.<i>.layers.<j>...                  row i of the architecture table, layer j
    classifier.{0,2}.linear.{0,1}               FC, BN1d of the two head layers

Which index j holds which layer depends on the block type; ``LAYER_MAPS`` spells it out.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch

from micronet_mm.errors import UserError
from micronet_mm.models.backbones import ARCH_SETTINGS, build_stage_specs

_DEPTHWISE = {'conv.0': 'conv_k1', 'conv.1': 'bn1', 'conv.2': 'conv_1k', 'conv.3': 'bn2'}
_POINTWISE = {'conv.0': 'conv', 'conv.1': 'bn'}
_SHIFT_MAX = {'fc.0': 'fc.0', 'fc.2': 'fc.2'}

#: official ``layers.<j>`` -> (our submodule, mapping of the official sub-keys) per block type
LAYER_MAPS: dict[str, dict[int, tuple[str, dict[str, str]]]] = {
    'A': {0: ('lite.depthwise', _DEPTHWISE), 1: ('lite.act', _SHIFT_MAX),
          4: ('lite.compress', _POINTWISE), 5: ('act2', _SHIFT_MAX)},
    'B': {0: ('expand', _POINTWISE), 1: ('act1', _SHIFT_MAX), 3: ('depthwise', _DEPTHWISE),
          5: ('act2', _SHIFT_MAX), 7: ('compress', _POINTWISE), 8: ('act3', _SHIFT_MAX)},
    'E': {0: ('expand', _POINTWISE), 1: ('act', _SHIFT_MAX)},
}
LAYER_MAPS['C'] = LAYER_MAPS['B']
_FIXED = {'features.0.stem.0.': ('backbone.stem.', _DEPTHWISE),
          'classifier.0.linear.': ('head.', {'0': 'fc1', '1': 'bn1'}),
          'classifier.2.linear.': ('head.', {'0': 'fc2', '1': 'bn2'})}


class ConversionError(UserError, ValueError):
    """The checkpoint does not match any MicroNet variant; the message lists the differences."""


def unwrap_official(obj) -> dict[str, torch.Tensor]:
    """Strip the ``state_dict`` wrapper and ``module.`` prefixes of an official file."""
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not obj:
        raise ConversionError('not a MicroNet checkpoint: expected a (non-empty) state dict, got '
                              f'{type(obj).__name__}')
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f'not a state dict: non-tensor values at {bad[:5]}')
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                       for k, v in obj.items())


def _rename(key: str, rows: list) -> str | None:
    """Our name of an official key; ``rows[i]`` = (stage, index, spec) of ``features.<i+1>``."""
    for prefix, (ours, sub) in _FIXED.items():
        if key.startswith(prefix):
            head, _, leaf = key[len(prefix):].rpartition('.')
            return f'{ours}{sub[head]}.{leaf}' if head in sub else None
    m = re.fullmatch(r'features\.(\d+)\.layers\.(\d+)\.(\w+\.\d+)\.(\w+)', key)
    if not m or not 1 <= int(m[1]) <= len(rows):
        return None
    stage, index, spec = rows[int(m[1]) - 1]
    module, sub = LAYER_MAPS[spec.block].get(int(m[2]), (None, {}))
    inner = sub.get(m[3])
    return f'backbone.stages.{stage}.{index}.{module}.{inner}.{m[4]}' if inner else None


def convert_official(state: dict[str, torch.Tensor], arch: str,
                     expected: dict[str, torch.Size]) -> OrderedDict:
    """Rename ``state`` for ``arch`` and check it against ``expected`` (our keys and shapes).

    Raises:
        ConversionError: listing unexpected, missing and mis-shaped keys.
    """
    rows = [(s, b, spec) for s, specs in enumerate(build_stage_specs(arch))
            for b, spec in enumerate(specs)]
    out, seen, unexpected, mis_shaped = OrderedDict(), set(), [], []
    for key, value in state.items():
        new = _rename(key, rows)
        seen.add(new)
        if new is None or new not in expected:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[new]):
            mis_shaped.append(f'{key} -> {new}: {tuple(value.shape)} vs {tuple(expected[new])}')
        else:
            out[new] = value
    missing = [k for k in expected if k not in seen and not k.endswith('num_batches_tracked')]
    if unexpected or missing or mis_shaped:
        lines = [f'checkpoint does not match MicroNet arch {arch!r}:']
        for title, items in (('unexpected keys', unexpected), ('missing keys', missing),
                             ('shape mismatches', mis_shaped)):
            if items:
                lines.append(f'  {title} ({len(items)}): ' + ', '.join(items[:8]) +
                             (' ...' if len(items) > 8 else ''))
        raise ConversionError('\n'.join(lines))
    return out


def expected_classifier_keys(arch: str, num_classes: int, mid_channels: int) -> dict:
    """Keys and shapes of our ``ImageClassifier(MicroNet(arch), MicroNetClsHead)``."""
    from micronet_mm.models import MicroNet, MicroNetClsHead
    backbone = MicroNet(arch)
    head = MicroNetClsHead(num_classes, backbone.stage_channels[-1], mid_channels)
    shapes = {f'backbone.{k}': v.shape for k, v in backbone.state_dict().items()}
    shapes.update({f'head.{k}': v.shape for k, v in head.state_dict().items()})
    return shapes


def convert_checkpoint(obj, arch: str | None = None) -> tuple[str, OrderedDict]:
    """Convert a loaded official checkpoint; detect the arch when ``arch`` is None.

    Returns:
        ``(arch, state_dict)`` for an mmpretrain ``ImageClassifier``.
    """
    state = unwrap_official(obj)
    try:
        mid, _ = state['classifier.0.linear.0.weight'].shape
        num_classes = state['classifier.2.linear.0.weight'].shape[0]
    except KeyError as e:
        raise ConversionError(f'not an official MicroNet classifier checkpoint: no key {e}; '
                              f'first keys: {list(state)[:5]}') from None
    candidates = [arch] if arch else [a for a in ARCH_SETTINGS if not a.startswith('v1')]
    errors = []
    for name in candidates:
        if name not in ARCH_SETTINGS:
            raise ConversionError(f'unknown arch {name!r}; legal: {list(ARCH_SETTINGS)}')
        try:
            return name, convert_official(state, name,
                                          expected_classifier_keys(name, num_classes, mid))
        except ConversionError as e:
            errors.append(str(e))
    raise ConversionError(min(errors, key=len) if len(errors) == 1 else
                          'checkpoint matches no MicroNet arch; closest:\n' +
                          min(errors, key=len))
