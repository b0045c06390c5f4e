"""Model configurations (presets) for HPCM."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["HPCMConfig", "PRESETS"]


@dataclass(frozen=True)
class HPCMConfig:
    """Hyper-parameters of one HPCM architecture.

    Attributes:
        name: preset name (informational).
        M: latent channels of y.
        N: hyper-latent channels of z.
        g_widths: channel widths of the three inner stages of g_a / g_s.
        g_blocks: number of PConvRB blocks per stage of g_a / g_s.
        h_blocks: number of PConvRB blocks at N channels in h_a / h_s.
        prior_s12_blocks: DWConvRB counts (branch_1, branch_2) of the s1/s2 spatial prior.
        prior_s3_blocks: DWConvRB counts (branch_1, branch_2) of the s3 spatial prior.
        attn_heads: heads of the cross-attention cells.
        windows: attention window sizes for the s1, s2 and s3 lattices.
    """

    name: str = "base"
    M: int = 320
    N: int = 256
    g_widths: tuple[int, int, int] = (96, 192, 384)
    g_blocks: tuple[int, int, int] = (2, 2, 4)
    h_blocks: int = 3
    prior_s12_blocks: tuple[int, int] = (2, 1)
    prior_s3_blocks: tuple[int, int] = (3, 2)
    attn_heads: int = 32
    windows: tuple[int, int, int] = (4, 8, 8)

    def __post_init__(self) -> None:
        # JSON / YAML round trips turn tuples into lists; normalise so configs compare equal.
        for field in ("g_widths", "g_blocks", "prior_s12_blocks", "prior_s3_blocks", "windows"):
            object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
        if self.M % 8:
            raise ValueError(f"M must be a multiple of 8 (channel groups rotate lattice phases), got {self.M}")
        if (2 * self.M) % self.attn_heads:
            raise ValueError(f"2*M={2 * self.M} must be divisible by attn_heads={self.attn_heads}")
        for width in self.g_widths:
            if width % 4:
                raise ValueError(f"g_widths must be multiples of 4 (partial conv on 1/4), got {self.g_widths}")
        if len(self.g_widths) != 3 or len(self.g_blocks) != 3 or len(self.windows) != 3:
            raise ValueError("g_widths, g_blocks and windows need exactly three entries")
        if len(self.prior_s12_blocks) != 2 or len(self.prior_s3_blocks) != 2:
            raise ValueError("prior block counts need exactly two entries (branch_1, branch_2)")

    @property
    def pad_multiple(self) -> int:
        """Image sides must be multiples of this.

        y is at 1/16 of the image; its s1 lattice (1/4 of y) must tile into s1 windows and
        keep a whole checkerboard, the s2 lattice (1/2 of y) must tile into s2 windows and
        the full y into s3 windows and the 4x4-periodic eight-part masks (a multiple of 8).
        """
        w1, w2, w3 = self.windows
        return 16 * math.lcm(4 * w1, 2 * w2, w3, 8)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HPCMConfig":
        """Builds a config from `dataclasses.asdict` output; rejects unknown fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown HPCMConfig fields: {unknown}")
        return cls(**dict(data))


PRESETS: dict[str, HPCMConfig] = {
    "base": HPCMConfig(name="base"),
    "large": HPCMConfig(
        name="large",
        g_blocks=(2, 2, 8),
        prior_s12_blocks=(2, 2),
        prior_s3_blocks=(4, 3),
    ),
    # A reduced model for CPU experiments and tests (about 2.4 M parameters).
    "tiny": HPCMConfig(
        name="tiny",
        M=64,
        N=64,
        g_widths=(32, 48, 64),
        g_blocks=(1, 1, 1),
        h_blocks=1,
        attn_heads=8,
        windows=(2, 4, 8),
    ),
}
