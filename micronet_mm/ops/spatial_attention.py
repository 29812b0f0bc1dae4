"""Spatial attention of dynamic ReLU (Chen et al., ECCV 2020, Eq. 8; DY-ReLU-C), used "per layer"
in the MicroNet pose head (arXiv v1 §6.1 and appendix §8.1).

A 1x1 convolution gives one logit per position; a softmax over the positions with temperature
``tau``, scaled by ``gamma = H·W / 3`` and clipped at 1, gives the attention
``pi = min(gamma · softmax(z / tau), 1)`` that multiplies every channel at that position. With
uniform logits ``pi = 1/3`` everywhere; peaked logits let a few positions pass unattenuated.
"""
from __future__ import annotations

import torch
from torch import nn


class SpatialAttention(nn.Module):
    """``x · min(gamma · softmax_{HW}(conv1x1(x) / tau), 1)``.

    Args:
        channels: input channels C.
        tau: softmax temperature (DY-ReLU uses 10).
        gamma_scale: ``gamma = gamma_scale · H · W`` (DY-ReLU uses 1/3).
    """

    def __init__(self, channels: int, *, tau: float = 10.0, gamma_scale: float = 1 / 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)
        self.tau, self.gamma_scale = tau, gamma_scale

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``pi`` of shape (N, 1, H, W), values in (0, 1]."""
        n, _, h, w = x.shape
        logits = self.conv(x).flatten(1) / self.tau  # (N, H·W)
        pi = (self.gamma_scale * h * w) * logits.softmax(dim=1)
        return pi.clamp(max=1.0).view(n, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f'tau={self.tau}, gamma_scale={self.gamma_scale:.4g}'
