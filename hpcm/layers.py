"""Building blocks of HPCM: convolutions, residual blocks and windowed cross attention.

Module and attribute names follow the official implementation so that state_dict keys
are identical (e.g. ``g_a.branch.1.branch.0.pconv.weight``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "conv1x1",
    "conv2x2_down",
    "conv4x4_down",
    "deconv2x2_up",
    "deconv4x4_up",
    "dwconv3x3",
    "PartialConv3x3",
    "PConvRB",
    "DWConvRB",
    "Branch",
    "SpatialPrior",
    "CrossAttentionCell",
]


def conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1)


def conv2x2_down(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=2, stride=2)


def conv4x4_down(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)


def deconv2x2_up(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)


def deconv4x4_up(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)


def dwconv3x3(ch: int) -> nn.Conv2d:
    return nn.Conv2d(ch, ch, kernel_size=3, padding=1, groups=ch)


class PartialConv3x3(nn.Module):
    """3x3 convolution applied to the first ``partial_ch`` channels only; the rest pass through."""

    def __init__(self, channels: int, partial_ch: int):
        super().__init__()
        self.split = (partial_ch, channels - partial_ch)
        self.pconv = nn.Conv2d(partial_ch, partial_ch, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        head, tail = torch.split(x, self.split, dim=1)
        return torch.cat((self.pconv(head), tail), dim=1)


class PConvRB(nn.Module):
    """Partial-convolution residual block: pconv3x3 -> 1x1 (C->rC) -> LeakyReLU -> 1x1 (rC->C), + x."""

    def __init__(self, channels: int, partial_ratio: int = 4, mlp_ratio: int = 4):
        super().__init__()
        self.branch = nn.Sequential(
            PartialConv3x3(channels, channels // partial_ratio),
            conv1x1(channels, channels * mlp_ratio),
            nn.LeakyReLU(inplace=True),
            conv1x1(channels * mlp_ratio, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


class DWConvRB(nn.Module):
    """Depth-wise residual block: dwconv3x3 -> 1x1 (C->rC) -> LeakyReLU -> 1x1 (rC->C), + x."""

    def __init__(self, channels: int, mlp_ratio: int = 2):
        super().__init__()
        self.branch = nn.Sequential(
            dwconv3x3(channels),
            conv1x1(channels, channels * mlp_ratio),
            nn.LeakyReLU(),
            conv1x1(channels * mlp_ratio, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


class Branch(nn.Module):
    """A plain sequence of layers kept under the attribute ``branch`` (official key layout)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.branch = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x)


class SpatialPrior(nn.Module):
    """Context model of one scale: ``branch_2(branch_1(x) * gain)``.

    ``branch_1`` is a stack of DWConvRB(3M); the per-step learned ``gain`` (shape (1, 3M, 1, 1))
    rescales its output; ``branch_2`` is a stack of DWConvRB(3M) and a 1x1 conv to the
    2M entropy parameters (scales, means).
    """

    def __init__(self, M: int, blocks_1: int, blocks_2: int):
        super().__init__()
        self.branch_1 = nn.Sequential(*(DWConvRB(3 * M) for _ in range(blocks_1)))
        self.branch_2 = nn.Sequential(*(DWConvRB(3 * M) for _ in range(blocks_2)), conv1x1(3 * M, 2 * M))

    def forward(self, x: Tensor, gain: Tensor) -> Tensor:
        return self.branch_2(self.branch_1(x) * gain)


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, C, H, W) -> (B * H/window * W/window, C, window, window), windows in row-major order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(-1, c, window, window)


def window_merge(x: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`."""
    c = x.shape[1]
    nh, nw = height // window, width // window
    x = x.reshape(-1, nh, nw, c, window, window)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(-1, c, height, width)


class CrossAttentionCell(nn.Module):
    """Windowed multi-head cross attention between new entropy parameters and the running context.

    The query comes from the step's parameters ``psi``; key and value from the context ``h``.
    Output: attention(psi, h) + conv_out(psi).
    """

    def __init__(self, input_dim: int, hidden_dim: int, window_size: int, kernel_size: int = 1, num_heads: int = 32):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} not divisible by num_heads {num_heads}")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.window_size = window_size
        pad = kernel_size // 2
        self.conv_q = nn.Conv2d(input_dim, hidden_dim, kernel_size, padding=pad)
        self.conv_k = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=pad)
        self.conv_v = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=pad)
        self.conv_out = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=pad)

    def forward(self, psi: Tensor, h: Tensor) -> Tensor:
        height, width = psi.shape[-2:]
        win = self.window_size
        q = self.conv_q(window_partition(psi, win))
        k = self.conv_k(window_partition(h, win))
        v = self.conv_v(window_partition(h, win))

        n = q.shape[0]
        tokens = win * win
        q = q.reshape(n, self.num_heads, self.head_dim, tokens).transpose(2, 3)
        k = k.reshape(n, self.num_heads, self.head_dim, tokens)
        v = v.reshape(n, self.num_heads, self.head_dim, tokens).transpose(2, 3)

        weights = F.softmax(torch.matmul(q, k) / math.sqrt(self.head_dim), dim=-1)
        out = torch.matmul(weights, v).transpose(2, 3).reshape(n, self.hidden_dim, win, win)
        return window_merge(out, win, height, width) + self.conv_out(psi)
