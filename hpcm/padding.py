"""Padding images to the size HPCM needs, and cropping back."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["pad_to_multiple", "crop_padding"]

Padding = tuple[int, int, int, int]  # (left, right, top, bottom)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, Padding]:
    """Pads (B, C, H, W) so H and W become multiples of ``multiple``.

    The padding is centred (as in the official test script) and replicates the border pixels,
    which costs fewer bits than a constant border.

    Returns:
        (padded tensor, (left, right, top, bottom)) for :func:`crop_padding`.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    h, w = x.shape[-2:]
    pad_h = -h % multiple
    pad_w = -w % multiple
    padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    if pad_h == 0 and pad_w == 0:
        return x, padding
    return F.pad(x, padding, mode="replicate"), padding


def crop_padding(x: Tensor, padding: Padding) -> Tensor:
    """Removes the padding added by :func:`pad_to_multiple`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
