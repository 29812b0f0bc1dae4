"""The pose head's last channel permutation folded into its final 1x1 convolution.

The head ends ``final_layer(shuffle(block(x)))``: a permutation ``P`` of the channels, then a
dense 1x1 convolution. ``conv(x[:, P]) = conv'(x)`` with ``W'[:, P[i]] = W[:, i]``, i.e. the input
columns of the weight permuted: exact, and one ``Gather`` fewer.

OpenVINO 2026.4.1 needs it: its CPU plugin computes ``Conv -> Gather(channel permutation) -> dense
1x1 Conv`` wrongly for 48 or 64 channels (relative error ~1 in float32, a 10-line ONNX model
reproduces it; 16 channels are right), which is the end of every MicroNet pose head. The
``openvino`` backend applies this rewrite.
"""
from __future__ import annotations

import torch
from torch import nn

from micronet_mm.ops import MicroBlockA, MicroBlockC

from ..common import ChannelPermute, compose

#: the attributes holding a block's last two permutations (the second is Identity once composed)
_LAST = {MicroBlockA: ('shuffle2', 'shuffle2b'), MicroBlockC: ('shuffle3', 'shuffle3b')}


def fold_output_permutation(module: nn.Module, compose_pair: bool = False) -> None:
    """Fold the last permutation of every pose head (a module with ``layers`` ending in a
    Micro-Block and a dense 1x1 ``final_layer``) into ``final_layer``, in place.

    Args:
        module: the model, its shuffles already permutations.
        compose_pair: first compose the block's last two shuffles into one permutation (they
            are left apart by backends that run each shuffle as it is: ``ncnn``)."""
    for head in module.modules():
        layers, final = getattr(head, 'layers', None), getattr(head, 'final_layer', None)
        if not (isinstance(layers, nn.Sequential) and isinstance(final, nn.Conv2d)
                and final.groups == 1 and final.kernel_size == (1, 1) and len(layers)):
            continue
        block = layers[-1]
        names = next((v for k, v in _LAST.items() if isinstance(block, k)), None)
        if names is None or block.use_residual:  # the permutation comes before the residual add
            continue
        if compose_pair:
            pair = compose(getattr(block, names[0]), getattr(block, names[1]), final.in_channels)
            for name, m in zip(names, pair):
                setattr(block, name, m)
        if not isinstance(getattr(block, names[1]), nn.Identity):
            continue
        perm = getattr(block, names[0])
        if not isinstance(perm, ChannelPermute):
            continue
        final.weight.data = final.weight.data[:, torch.argsort(perm.index)]
        setattr(block, names[0], nn.Identity())
