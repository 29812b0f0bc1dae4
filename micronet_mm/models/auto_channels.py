"""Channel numbers that come from the backbone, never from a second hand-written list.

A neck or head config may say ``in_channels='auto'``. The model types made by
:func:`with_auto_channels` (``MicroNetRetinaNet``, ``MicroNetFasterRCNN``, ...) replace it, before
anything is built, with ``MicroNet.out_channels`` of the model's own backbone config, so
``--cfg-options model.backbone.arch=m2`` or a change of ``out_indices`` can never leave the neck
with stale widths. A number given explicitly is kept as it is.

Anywhere else, ``'auto'`` would reach the toolbox module itself (with plain ``RetinaNet`` a bare
``AssertionError`` in mmdet's fpn.py). :func:`refuse_unfilled_auto` makes the toolboxes'
``MODELS.build`` stop first with one line naming the module and the fix.
"""
from __future__ import annotations

from micronet_mm.errors import UserError

AUTO = 'auto'
#: the model types made by :func:`with_auto_channels`, the only ones that fill ``'auto'``
AUTO_MODEL_TYPES: list[str] = []


def backbone_out_channels(backbone: dict) -> list[int]:
    """``out_channels`` of a MicroNet backbone config (built without loading any weights)."""
    from .backbones import MicroNet
    if backbone.get('type') not in ('MicroNet', MicroNet):
        raise ValueError("in_channels='auto' needs a MicroNet backbone, got "
                         f"{backbone.get('type')!r}")
    args = {k: v for k, v in backbone.items() if k not in ('type', 'init_cfg')}
    return MicroNet(**args).out_channels


def fill_auto_channels(module: dict | None, backbone: dict) -> dict | None:
    """``module`` with ``in_channels='auto'`` replaced by the backbone's output channels (a
    single int when the backbone returns one feature map)."""
    if module is None or module.get('in_channels') != AUTO:
        return module
    channels = backbone_out_channels(backbone)
    return dict(module, in_channels=channels[0] if len(channels) == 1 else channels)


def with_auto_channels(base: type, field: str) -> type:
    """Subclass of the toolbox model ``base`` that resolves ``in_channels='auto'`` in the config
    argument ``field`` (``'neck'``, ``'head'`` or ``'decode_head'``)."""

    def __init__(self, backbone: dict, **kwargs) -> None:
        kwargs[field] = fill_auto_channels(kwargs.get(field), backbone)
        base.__init__(self, backbone=backbone, **kwargs)

    name = f'MicroNet{base.__name__}'
    AUTO_MODEL_TYPES.append(name)
    doc = (f'``{base.__module__}.{base.__name__}`` whose ``{field}.in_channels="auto"`` is filled '
           'from the MicroNet backbone (see micronet_mm/models/auto_channels.py).')
    return type(name, (base,), {'__init__': __init__, '__doc__': doc, '__module__': __name__})


def refuse_unfilled_auto(registry) -> None:
    """Make ``registry.build`` refuse a config whose ``in_channels`` is still ``'auto'``: the
    model around it is not one of :data:`AUTO_MODEL_TYPES` (idempotent)."""
    build_func = registry.build_func
    if getattr(build_func, 'refuses_unfilled_auto', False):
        return

    def build(cfg, *args, **kwargs):
        if isinstance(cfg, dict) and cfg.get('in_channels') == AUTO:
            raise UserError(
                f"{cfg.get('type')}: in_channels='auto' is filled only inside the MicroNet "
                f"model types ({', '.join(AUTO_MODEL_TYPES)}); use one of them as model.type "
                "(e.g. MicroNetRetinaNet for RetinaNet) or give the widths, "
                "MicroNet(arch=...).out_channels (README: Using the backbone)")
        return build_func(cfg, *args, **kwargs)

    build.refuses_unfilled_auto = True
    registry.build_func = build
