"""Spatial attention of dynamic ReLU (Chen et al., ECCV 2020, DY-ReLU-C), which the MicroNet pose
head uses "per layer" (arXiv v1 §6.1 and appendix §8.1: "the spatial attention in [6]"); MR-ASPP
applies the same map after its upsampling (mr_aspp_head.py).

We follow the code that the DY-ReLU authors released: ``DYReLU(..., use_spatial=True)`` in
github.com/microsoft/DynamicHead, ``dyhead/dyrelu.py`` (commit 7d8c2fb; its authors are of the
DY-ReLU and MicroNet papers). For an activation ``act`` with input ``x`` of size H x W:

    z  = BN(conv1x1(x))                       one logit per position, from the activation's INPUT
    pi = min(H·W · softmax_{H·W}(z), 3) / 3   per image; in [0, 1], 1/3 everywhere for uniform z
    y  = act(x) · pi                          the same factor for every channel at a position

DY-ReLU-C scales the coefficients of each linear piece by ``pi``; as ``pi >= 0`` that is the same
as scaling the activation's output (``max_k(pi·a_k x + pi·b_k) = pi · max_k(a_k x + b_k)``), and
likewise for Dynamic Shift-Max. The paper writes ``pi = min(gamma · softmax(z / tau), 1)`` with
``gamma = H·W / 3``, ``tau = 10`` and no BN. The clipping is the same (``min(HW·s, 3) / 3 =
min(HW/3·s, 1)``). The released code replaces the temperature by the BN on the one logit channel:
the logits are standardised per batch and BN's learnt scale takes the part of ``1 / tau``.
"""
from __future__ import annotations

import torch
from torch import nn

from .norm import norm_layer


class SpatialAttention(nn.Module):
    """``act(x) · min(H·W · softmax_{H·W}(BN(conv1x1(x))), 3) / 3`` (see the module docstring).

    Args:
        channels: channels C of ``x`` (the activation keeps them).
        act: the activation whose output is attended; ``None`` attends ``x`` itself.
        norm_cfg: mmcv config of the logit's normalization (``None``: BatchNorm2d).
    """

    def __init__(self, channels: int, act: nn.Module | None = None, *,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        self.act = nn.Identity() if act is None else act
        # one Sequential(Conv2d, BN): deploy folds it into one convolution
        self.logit = nn.Sequential(nn.Conv2d(channels, 1, 1), norm_layer(norm_cfg, 1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The map ``pi`` of shape (N, 1, H, W), values in [0, 1], from the input ``x``."""
        n, _, h, w = x.shape
        weights = self.logit(x).flatten(1).softmax(dim=1)  # (N, H·W), each row sums to 1
        return (weights * (h * w)).clamp(max=3.0).view(n, 1, h, w) / 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) * self.attention(x)  # (N, C, H, W)
