"""Parameter and multiply-add counting in the papers' convention.

The MicroNet papers count multiply-adds (MAdds) of convolutions and fully connected layers, plus
the application of Dynamic Shift-Max: J·K multiply-adds per output element (Eq. 4 fuses J shifted
copies in each of K fusions). BatchNorm (foldable), pooling, additions of residuals, shuffles and
upsampling are not counted. Counts are per image (batch 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from micronet_mm.ops import DynamicShiftMax


@dataclass
class Complexity:
    """Counts for one forward pass of one image."""
    params: int
    conv_linear_madds: int
    shift_max_madds: int

    @property
    def madds(self) -> int:
        """Total MAdds, as the papers' tables count them."""
        return self.conv_linear_madds + self.shift_max_madds


def _conv_linear_madds(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    return out[0].numel() * module.in_features  # nn.Linear


@torch.no_grad()
def count_complexity(model: nn.Module, inputs: torch.Tensor | tuple[int, ...],
                     forward=None) -> Complexity:
    """Count parameters and MAdds of ``model`` on one input.

    Args:
        model: any module; it is run once, in eval mode, and restored to its mode.
        inputs: a tensor of batch size 1, or its shape ``(C, H, W)`` / ``(1, C, H, W)``.
        forward: callable run on ``inputs`` instead of ``model`` (e.g. ``model.extract_feat``).
    """
    if not isinstance(inputs, torch.Tensor):
        shape = tuple(inputs)
        inputs = torch.randn((1, *shape) if len(shape) == 3 else shape)
    if inputs.shape[0] != 1:
        raise ValueError(f'count_complexity: batch size must be 1, got shape {tuple(inputs.shape)}')
    counts = {'conv_linear': 0, 'shift_max': 0}

    def conv_linear_hook(module, _, out):
        counts['conv_linear'] += _conv_linear_madds(module, out)

    def shift_max_hook(module, _, out):
        counts['shift_max'] += out[0].numel() * module.num_shifts * module.num_fusions

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(conv_linear_hook))
        elif isinstance(m, DynamicShiftMax):
            handles.append(m.register_forward_hook(shift_max_hook))
    was_training = model.training
    model.eval()
    try:
        (forward or model)(inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params, counts['conv_linear'], counts['shift_max'])
