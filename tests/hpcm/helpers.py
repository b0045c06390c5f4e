"""Shared helpers of the model tests."""

from __future__ import annotations

import torch

from hpcm import lattices


def step_position_masks(ch: int, h: int, w: int) -> list[torch.Tensor]:
    """For each of the 11 coding steps, the boolean (C, H, W) mask of the y elements it codes
    (each step's mask on its own grid, placed back on y's)."""
    s1 = [lattices.from_s2(lattices.from_s1(m)) for m in lattices.s1_step_masks(ch, h // 4, w // 4)]
    s2 = [lattices.from_s2(m) for m in lattices.s2_step_masks(ch, h // 2, w // 2)]
    return [m[0].bool() for m in (*s1, *s2, *lattices.s3_step_masks(ch, h, w))]
