"""Three-scale lattice geometry of HPCM's progressive context model.

y (C x H x W) is split into nested sub-lattices, per channel group:

* s2: every other row and column, ``y[..., r::2, c::2]``; the phase (r, c) rotates over the
  eight groups of C/8 channels as (0,0), (1,1), (0,1), (1,0), (0,0), ...
* s1: every other row and column *of the s2 lattice*; the phase rotates over the four
  groups of C/4 channels as (0,0), (0,1), (1,0), (1,1).
* s3: all of y.

Coding order: 2 steps on s1 (a checkerboard), 3 steps on s2 (the s2 lattice minus s1),
6 steps on s3 (the rest), 11 steps in all.  Shares of y: 1/16, 3/16 and 3/4.

All masks are float tensors of shape (1, C, h, w) at the resolution of their scale.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "S2_PHASES",
    "S1_PHASES",
    "to_s2",
    "to_s1",
    "from_s2",
    "from_s1",
    "s1_step_masks",
    "s2_step_masks",
    "s3_step_masks",
    "s2_hyper",
    "s3_hyper",
    "scale_labels",
]

# Phase (row, col) of the s2 lattice for each of the 8 channel groups (C/8 channels each).
S2_PHASES: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (0, 1), (1, 0)) * 2
# Phase of the s1 lattice inside the s2 lattice for each of the 4 groups of C/4 channels.
S1_PHASES: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))

# Position inside a 4x4 tile that the official code's ``get_mask_for_s1`` marks, per group of
# C/8 channels.  It disagrees with the real s1 position for groups 2..7; it only decides how
# the hyperprior is placed on the s2 lattice (see :func:`s2_hyper`).
_OFFICIAL_S1_HYPER_POSITIONS: tuple[tuple[int, int], ...] = (
    (0, 0), (1, 1), (0, 1), (1, 0), (0, 2), (1, 3), (0, 3), (1, 2),
)

# The eight 2-position patterns of a 4x4 tile used by the s3 (eight-part) masks.
_EIGHT_PART_PATTERNS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((0, 0), (2, 2)), ((0, 2), (2, 0)), ((1, 1), (3, 3)), ((1, 3), (3, 1)),
    ((0, 1), (2, 3)), ((0, 3), (2, 1)), ((1, 0), (3, 2)), ((1, 2), (3, 0)),
)
# Pattern used by each channel group (columns) in each of the 8 parts (rows).  Parts 0 and 1
# together are the group's s2 lattice; s3 codes parts 2..7.
_EIGHT_PART_ORDER: tuple[tuple[int, ...], ...] = (
    (0, 2, 4, 6, 1, 3, 5, 7),
    (1, 3, 5, 7, 0, 2, 4, 6),
    (2, 4, 6, 0, 3, 5, 7, 1),
    (3, 5, 7, 1, 2, 4, 6, 0),
    (4, 6, 0, 2, 5, 7, 1, 3),
    (5, 7, 1, 3, 4, 6, 0, 2),
    (6, 0, 2, 4, 7, 1, 3, 5),
    (7, 1, 3, 5, 6, 0, 2, 4),
)
# s2 steps: the phase index (into S1_PHASES) coded by each group of C/4 channels; part 0 would
# be the s1 lattice itself.
_FOUR_PART_ORDER: tuple[tuple[int, ...], ...] = ((3, 2, 1, 0), (2, 3, 0, 1), (1, 0, 3, 2))


def _groups(channels: int, n: int) -> list[slice]:
    if channels % n:
        raise ValueError(f"channels ({channels}) must be a multiple of {n}")
    size = channels // n
    return [slice(g * size, (g + 1) * size) for g in range(n)]


def _extract(x: Tensor, phases: tuple[tuple[int, int], ...]) -> Tensor:
    groups = _groups(x.shape[1], len(phases))
    return torch.cat([x[:, g, r::2, c::2] for g, (r, c) in zip(groups, phases)], dim=1)


def _insert(x: Tensor, phases: tuple[tuple[int, int], ...]) -> Tensor:
    b, ch, h, w = x.shape
    out = x.new_zeros(b, ch, 2 * h, 2 * w)
    for g, (r, c) in zip(_groups(ch, len(phases)), phases):
        out[:, g, r::2, c::2] = x[:, g]
    return out


def to_s2(x: Tensor) -> Tensor:
    """(B, C, H, W) -> its s2 lattice (B, C, H/2, W/2)."""
    return _extract(x, S2_PHASES)


def to_s1(x_s2: Tensor) -> Tensor:
    """s2 lattice (B, C, H/2, W/2) -> its s1 lattice (B, C, H/4, W/4)."""
    return _extract(x_s2, S1_PHASES)


def from_s2(x_s2: Tensor) -> Tensor:
    """Places s2-lattice values back on the full grid, zeros elsewhere."""
    return _insert(x_s2, S2_PHASES)


def from_s1(x_s1: Tensor) -> Tensor:
    """Places s1-lattice values back on the s2 grid, zeros elsewhere."""
    return _insert(x_s1, S1_PHASES)


def _tile_mask(positions: list[tuple[int, int]], period: int, height: int, width: int) -> Tensor:
    """Boolean (height, width) mask of a period x period tile with the given positions set."""
    tile = torch.zeros(period, period, dtype=torch.bool)
    for r, c in positions:
        tile[r, c] = True
    return tile.repeat(height // period, width // period)


def _check_even(height: int, width: int, period: int) -> None:
    if height % period or width % period:
        raise ValueError(f"lattice size {height}x{width} must be a multiple of {period}")


@lru_cache(maxsize=None)
def _s1_step_masks(channels: int, height: int, width: int) -> tuple[Tensor, ...]:
    _check_even(height, width, 2)
    first, second = _groups(channels, 2)
    even = _tile_mask([(0, 0), (1, 1)], 2, height, width)
    masks = []
    for step in range(2):
        m = torch.zeros(channels, height, width, dtype=torch.bool)
        # The two channel halves start on opposite checkerboard colours.
        m[first] = even if step == 0 else ~even
        m[second] = ~even if step == 0 else even
        masks.append(m)
    return tuple(masks)


@lru_cache(maxsize=None)
def _s2_step_masks(channels: int, height: int, width: int) -> tuple[Tensor, ...]:
    _check_even(height, width, 2)
    masks = []
    for order in _FOUR_PART_ORDER:
        m = torch.zeros(channels, height, width, dtype=torch.bool)
        for g, phase in zip(_groups(channels, 4), order):
            m[g] = _tile_mask([S1_PHASES[phase]], 2, height, width)
        masks.append(m)
    return tuple(masks)


@lru_cache(maxsize=None)
def _s3_step_masks(channels: int, height: int, width: int) -> tuple[Tensor, ...]:
    _check_even(height, width, 8)
    masks = []
    for order in _EIGHT_PART_ORDER[2:]:
        m = torch.zeros(channels, height, width, dtype=torch.bool)
        for g, pattern in zip(_groups(channels, 8), order):
            m[g] = _tile_mask(list(_EIGHT_PART_PATTERNS[pattern]), 4, height, width)
        masks.append(m)
    return tuple(masks)


@lru_cache(maxsize=None)
def _s2_lattice_mask(channels: int, height: int, width: int) -> Tensor:
    """Boolean (C, H, W): True on each channel's s2 lattice (s1 included)."""
    ones = torch.ones(1, channels, height // 2, width // 2)
    return from_s2(ones)[0].bool()


@lru_cache(maxsize=None)
def _s1_lattice_mask(channels: int, height: int, width: int) -> Tensor:
    """Boolean (C, H, W): True at the positions really coded in the s1 steps."""
    ones = torch.ones(1, channels, height // 4, width // 4)
    return from_s2(from_s1(ones))[0].bool()


@lru_cache(maxsize=None)
def _s2_hyper_placement(channels: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """(source on the full grid, target on the s2 grid) for :func:`s2_hyper`."""
    official_s1 = torch.zeros(channels, height, width, dtype=torch.bool)
    for g, pos in zip(_groups(channels, 8), _OFFICIAL_S1_HYPER_POSITIONS):
        official_s1[g] = _tile_mask([pos], 4, height, width)
    source = _s2_lattice_mask(channels, height, width) & ~official_s1
    target = ~from_s1(torch.ones(1, channels, height // 4, width // 4))[0].bool()
    return source, target


def _as_float(masks: tuple[Tensor, ...], device: torch.device, dtype: torch.dtype) -> list[Tensor]:
    return [m.to(device=device, dtype=dtype).unsqueeze(0) for m in masks]


@lru_cache(maxsize=64)
def _float_masks(kind: str, channels: int, height: int, width: int, device: torch.device, dtype: torch.dtype):
    builders = {"s1": _s1_step_masks, "s2": _s2_step_masks, "s3": _s3_step_masks}
    return tuple(_as_float(builders[kind](channels, height, width), device, dtype))


def s1_step_masks(channels: int, height: int, width: int, device=None, dtype=torch.float32) -> tuple[Tensor, ...]:
    """The 2 checkerboard masks of the s1 steps on the s1 grid (height = H/4)."""
    return _float_masks("s1", channels, height, width, torch.device(device or "cpu"), dtype)


def s2_step_masks(channels: int, height: int, width: int, device=None, dtype=torch.float32) -> tuple[Tensor, ...]:
    """The 3 masks of the s2 steps on the s2 grid (height = H/2); parts 1..3 of four."""
    return _float_masks("s2", channels, height, width, torch.device(device or "cpu"), dtype)


def s3_step_masks(channels: int, height: int, width: int, device=None, dtype=torch.float32) -> tuple[Tensor, ...]:
    """The 6 masks of the s3 steps on the full grid; parts 2..7 of eight."""
    return _float_masks("s3", channels, height, width, torch.device(device or "cpu"), dtype)


def s2_hyper(params: Tensor) -> Tensor:
    """Hyperprior parameters (B, C, H, W) placed on the s2 grid (B, C, H/2, W/2), zero on s1.

    Reproduces the official placement exactly: for each channel, the values on its s2 lattice
    minus the *official* s1 position (row-major) fill the s2-grid positions that are not the
    *real* s1 lattice (row-major).  For channel groups where the two disagree, the values are
    shifted relative to the positions they were computed for.
    """
    b, ch, h, w = params.shape
    source, target = _s2_hyper_placement(ch, h, w)
    out = params.new_zeros(b, ch, h // 2, w // 2)
    out[:, target.to(params.device)] = params[:, source.to(params.device)]
    return out


def s3_hyper(params: Tensor) -> Tensor:
    """Hyperprior parameters with the s2 lattice (already coded) zeroed."""
    b, ch, h, w = params.shape
    return params.masked_fill(_s2_lattice_mask(ch, h, w).to(params.device), 0.0)


def scale_labels(channels: int, height: int, width: int) -> torch.LongTensor:
    """(C, H, W) map of the scale at which each y element is coded: 1 (s1), 2 (s2) or 3 (s3).

    Derived from the real coding path (the lattices y is actually split into), so masking
    per-element rates with it gives the true per-scale rates.
    """
    _check_even(height, width, 8)
    labels = torch.full((channels, height, width), 3, dtype=torch.long)
    labels[_s2_lattice_mask(channels, height, width)] = 2
    labels[_s1_lattice_mask(channels, height, width)] = 1
    return labels
