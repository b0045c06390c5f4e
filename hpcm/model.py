"""HPCM: learned image compression with hierarchical progressive context modelling."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import Tensor, nn

from . import lattices
from .config import HPCMConfig, PRESETS
from .entropy_models import GeneralizedGaussianConditional
from .layers import (
    Branch,
    CrossAttentionCell,
    PConvRB,
    SpatialPrior,
    conv1x1,
    conv2x2_down,
    conv4x4_down,
    deconv2x2_up,
    deconv4x4_up,
)

__all__ = ["HPCM", "default_scale_table"]

# (scale level 1/2/3, scales, means, mask) -> integer residual symbols, zero outside the mask.
StepCoder = Callable[[int, Tensor, Tensor, Tensor], Tensor]


SCALE_TABLE_LEVELS = 240


def default_scale_table() -> Tensor:
    """Scales of the y CDF tables: 240 log-spaced in [0.12, 64].

    The official test script uses 60 levels. A scale is coded with the next larger table
    entry, and 60 levels cost 1-2.5 % more bits than the likelihood estimate on the bundled
    photos; 240 levels stay within 1 % (~0.2-0.8 %). Encoder and decoder build the same
    table, so this changes only the bitstream size, never the reconstruction.
    """
    return torch.exp(torch.linspace(math.log(0.12), math.log(64.0), SCALE_TABLE_LEVELS))


class _Coded(NamedTuple):
    y_hat: Tensor  # (B, M, H, W) reconstructed latent
    scales: Tensor  # scale used for each element of y
    means: Tensor  # mean used for each element of y


class HPCM(CompressionModel):
    r"""HPCM image codec from Y. Li et al., "Learned Image Compression with Hierarchical
    Progressive Context Modeling", ICCV 2025.

    One class for every preset (see :class:`hpcm.config.HPCMConfig`).

    .. code-block:: none

              ┌───┐    y    ┌───┐  z  ┌───┐ z_hat      ┌───┐
        x ──►─┤g_a├──►──┬──►┤h_a├──►──┤ Q ├───►───●──►─┤h_s├──► (scales, means) of y
              └───┘     │   └───┘     └───┘       │    └───┘            │
                        │                  GG(means_hyper, scales_hyper)│
                        │                                               ▼
                        │   ┌──────────────────────────────────────────────────┐
                        └──►┤ progressive context model, 11 steps:             │
                            │  s1 (y sub-lattice /4): 2 steps   ─┐ attention   │
                            │  s2 (y sub-lattice /2): 3 steps    ├ cells carry │
                            │  s3 (all of y)        : 6 steps   ─┘ the context │
                            │ each step: params -> GG(scales, means) -> Q, code│
                            └───────────────────────┬──────────────────────────┘
                                                    │ y_hat   ┌───┐
                                                    └───►─────┤g_s├──► x_hat
                                                              └───┘

    Both y and z use a generalised Gaussian (beta = 1.5); z's prior is a learned per-channel
    mean and scale.  Image sides must be multiples of ``config.pad_multiple``.
    """

    def __init__(self, config: HPCMConfig | None = None):
        super().__init__()
        self.config = config if config is not None else PRESETS["base"]
        cfg = self.config
        M, N = cfg.M, cfg.N
        w1, w2, w3 = cfg.g_widths
        b1, b2, b3 = cfg.g_blocks

        def blocks(channels: int, count: int) -> list[nn.Module]:
            return [PConvRB(channels) for _ in range(count)]

        self.g_a = Branch(
            conv4x4_down(3, w1), *blocks(w1, b1),
            conv2x2_down(w1, w2), *blocks(w2, b2),
            conv2x2_down(w2, w3), *blocks(w3, b3),
            conv2x2_down(w3, M),
        )
        self.g_s = Branch(
            deconv2x2_up(M, w3), *blocks(w3, b3),
            deconv2x2_up(w3, w2), *blocks(w2, b2),
            deconv2x2_up(w2, w1), *blocks(w1, b1),
            deconv4x4_up(w1, 3),
        )
        self.h_a = Branch(
            PConvRB(M), conv2x2_down(M, N), *blocks(N, cfg.h_blocks), conv2x2_down(N, N),
        )
        self.h_s = Branch(
            deconv2x2_up(N, N), *blocks(N, cfg.h_blocks), deconv2x2_up(N, 2 * M), PConvRB(2 * M),
        )

        self.y_spatial_prior_adaptor_list_s1 = nn.ModuleList(conv1x1(3 * M, 3 * M) for _ in range(1))
        self.y_spatial_prior_adaptor_list_s2 = nn.ModuleList(conv1x1(3 * M, 3 * M) for _ in range(3))
        self.y_spatial_prior_adaptor_list_s3 = nn.ModuleList(conv1x1(3 * M, 3 * M) for _ in range(6))
        self.y_spatial_prior_s1_s2 = SpatialPrior(M, *cfg.prior_s12_blocks)
        self.y_spatial_prior_s3 = SpatialPrior(M, *cfg.prior_s3_blocks)
        # One learned gain per context step after the first (1 + 3 + 6).
        self.adaptive_params_list = nn.ParameterList(nn.Parameter(torch.ones(1, 3 * M, 1, 1)) for _ in range(10))

        heads = cfg.attn_heads
        self.attn_s1 = CrossAttentionCell(2 * M, 2 * M, window_size=cfg.windows[0], num_heads=heads)
        self.attn_s2 = CrossAttentionCell(2 * M, 2 * M, window_size=cfg.windows[1], num_heads=heads)
        self.attn_s3 = CrossAttentionCell(2 * M, 2 * M, window_size=cfg.windows[2], num_heads=heads)
        self.context_net = nn.ModuleList(conv1x1(2 * M, 2 * M) for _ in range(2))

        self.means_hyper = nn.Parameter(torch.zeros(1, N, 1, 1))
        self.scales_hyper = nn.Parameter(torch.ones(1, N, 1, 1))

        self.entropy_y = GeneralizedGaussianConditional()
        self.entropy_z = GeneralizedGaussianConditional()

    # ------------------------------------------------------------------ helpers

    def _check_size(self, x: Tensor) -> None:
        p = self.config.pad_multiple
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"image size {tuple(x.shape[-2:])} is not a multiple of {p} for preset "
                f"'{self.config.name}'; pad it first (hpcm.pad_to_multiple)"
            )

    def _check_updated(self) -> None:
        for name in ("entropy_y", "entropy_z"):
            if getattr(self, name).quantized_cdf.numel() == 0:
                raise ValueError("entropy models have no CDF tables: call model.update() first")

    def _context_steps(self, level: int):
        """(adaptor, spatial prior, gain, attention) for each context step of a scale level.

        The official model indexes adaptors with ``i - 1`` for step i, so the first step of s2
        and s3 uses the *last* adaptor of its list; kept for checkpoint compatibility.
        """
        gains = self.adaptive_params_list
        if level == 1:
            return [(self.y_spatial_prior_adaptor_list_s1[0], self.y_spatial_prior_s1_s2, gains[0], self.attn_s1)]
        if level == 2:
            adaptors = self.y_spatial_prior_adaptor_list_s2
            return [(adaptors[i - 1], self.y_spatial_prior_s1_s2, gains[1 + i], self.attn_s2) for i in range(3)]
        adaptors = self.y_spatial_prior_adaptor_list_s3
        return [(adaptors[i - 1], self.y_spatial_prior_s3, gains[4 + i], self.attn_s3) for i in range(6)]

    def _progressive_coding(self, params: Tensor, code_step: StepCoder) -> _Coded:
        """Walks the 11 coding steps s1 -> s2 -> s3; shared by forward, compress and decompress.

        Args:
            params: hyperprior output h_s(z_hat), (B, 2M, H, W): scales then means.
            code_step: returns the integer residual symbols of one step (zero outside the mask).
        """
        M = self.config.M
        _, _, H, W = params.shape
        dev, dt = params.device, params.dtype
        scales_hyper, means_hyper = params.chunk(2, 1)

        step_masks = {
            1: lattices.s1_step_masks(M, H // 4, W // 4, dev, dt),
            2: lattices.s2_step_masks(M, H // 2, W // 2, dev, dt),
            3: lattices.s3_step_masks(M, H, W, dev, dt),
        }
        hyper_s1 = [lattices.to_s1(lattices.to_s2(p)) for p in (scales_hyper, means_hyper)]
        y_hat = torch.zeros_like(hyper_s1[0])
        scales_acc = torch.zeros_like(y_hat)
        means_acc = torch.zeros_like(y_hat)

        def code(level: int, scales: Tensor, means: Tensor, mask: Tensor) -> None:
            nonlocal y_hat, scales_acc, means_acc
            symbols = code_step(level, scales, means, mask)
            y_hat = y_hat + (symbols + means * mask)
            scales_acc = scales_acc + scales * mask
            means_acc = means_acc + means * mask

        # s1, first step: straight from the hyperprior.
        code(1, hyper_s1[0], hyper_s1[1], step_masks[1][0])
        context = torch.cat(hyper_s1, dim=1)

        for level in (1, 2, 3):
            masks = step_masks[level][1:] if level == 1 else step_masks[level]
            if level > 1:
                # Move everything up one lattice, then add the hyperprior of the new positions.
                lift = lattices.from_s1 if level == 2 else lattices.from_s2
                hyper = lattices.s2_hyper if level == 2 else lattices.s3_hyper
                y_hat, scales_acc, means_acc = lift(y_hat), lift(scales_acc), lift(means_acc)
                context = torch.cat([lift(c) for c in context.chunk(2, 1)], dim=1)
                context = context + torch.cat((hyper(scales_hyper), hyper(means_hyper)), dim=1)
                context = self.context_net[level - 2](context)
            for (adaptor, prior, gain, attn), mask in zip(self._context_steps(level), masks):
                psi = prior(adaptor(torch.cat((context, y_hat), dim=1)), gain)
                context = attn(psi, context)
                scales, means = psi.chunk(2, 1)
                code(level, scales, means, mask)

        return _Coded(y_hat, scales_acc, means_acc)

    @staticmethod
    def _y_lattices(y: Tensor) -> dict[int, Tensor]:
        y_s2 = lattices.to_s2(y)
        return {1: lattices.to_s1(y_s2), 2: y_s2, 3: y}

    # ------------------------------------------------------------------ training / evaluation

    def forward(self, x: Tensor) -> dict:
        """Runs the codec with the official training (STE + noise) or eval (rounding) quantisation.

        Returns:
            {"x_hat": (B,3,H,W), "likelihoods": {"y": (B,M,H/16,W/16), "z": (B,N,H/64,W/64)},
             "latents": {"y": y, "y_hat": y_hat}} (the latents let a caller attribute the
            distortion to the lattices, see ``trainables.losses.scale_distortion_shares``)
        """
        self._check_size(x)
        y = self.g_a(x)
        z = self.h_a(y)

        z_res = z - self.means_hyper
        z_q = quantize_ste(z_res) if self.training else torch.round(z_res)
        z_hat = z_q + self.means_hyper
        # entropy_z adds uniform noise in training mode and rounds in eval mode. Likelihoods
        # are computed in float32 even under bf16 autocast: tail probabilities need it.
        with torch.autocast(x.device.type, enabled=False):
            _, z_likelihoods = self.entropy_z(z_res.float(), self.scales_hyper.float())

        y_levels = self._y_lattices(y)
        quantize = quantize_ste if self.training else torch.round

        def code_step(level: int, scales: Tensor, means: Tensor, mask: Tensor) -> Tensor:
            return quantize((y_levels[level] - means * mask) * mask)

        coded = self._progressive_coding(self.h_s(z_hat), code_step)
        x_hat = self.g_s(coded.y_hat)
        with torch.autocast(x.device.type, enabled=False):
            _, y_likelihoods = self.entropy_y((y - coded.means).float(), coded.scales.float())
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
                "latents": {"y": y, "y_hat": coded.y_hat}}

    # ------------------------------------------------------------------ entropy coding

    def update(self, scale_table: Tensor | None = None, force: bool = False) -> bool:
        """Builds the CDF tables: y from ``scale_table``, z from the learned per-channel scales.

        Call after training / loading and before compress / decompress.
        """
        if scale_table is None:
            scale_table = default_scale_table()
        updated = self.entropy_y.update_scale_table(scale_table, force=force)
        updated |= self.entropy_z.update_scale_table(self.scales_hyper.detach().reshape(-1).cpu(), force=force)
        return updated

    def _z_indexes(self, shape: tuple[int, int]) -> Tensor:
        return torch.arange(self.config.N).view(1, -1, 1, 1).expand(1, -1, *shape).int()

    def _coder_tables(self) -> tuple[list[list[int]], list[int], list[int]]:
        model = self.entropy_y
        return model.quantized_cdf.tolist(), model.cdf_length.reshape(-1).tolist(), model.offset.reshape(-1).tolist()

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Encodes one image (batch of 1) into {"strings": [[y_bytes], [z_bytes]], "shape": z size}."""
        self._check_size(x)
        if x.shape[0] != 1:
            raise ValueError(f"compress codes one image at a time, got a batch of {x.shape[0]}")
        self._check_updated()

        y = self.g_a(x)
        z = self.h_a(y)
        z_shape = tuple(z.shape[-2:])
        z_strings = self.entropy_z.compress(z, self._z_indexes(z_shape), means=self.means_hyper)
        z_hat = torch.round(z - self.means_hyper) + self.means_hyper

        y_levels = self._y_lattices(y)
        symbols: list[int] = []
        indexes: list[int] = []

        def code_step(level: int, scales: Tensor, means: Tensor, mask: Tensor) -> Tensor:
            q = torch.round((y_levels[level] - means * mask) * mask)
            coded = mask.expand_as(q).bool()
            symbols.extend(q[coded].int().tolist())
            indexes.extend(self.entropy_y.build_indexes(scales[coded]).tolist())
            return q

        self._progressive_coding(self.h_s(z_hat), code_step)
        encoder = BufferedRansEncoder()
        encoder.encode_with_indexes(symbols, indexes, *self._coder_tables())
        return {"strings": [[encoder.flush()], z_strings], "shape": torch.Size(z_shape)}

    @torch.no_grad()
    def decompress(self, strings: list, shape: tuple[int, int]) -> dict:
        """Decodes the output of :meth:`compress`; returns {"x_hat"} clamped to [0, 1]."""
        self._check_updated()
        if len(strings) != 2 or len(strings[0]) != 1 or len(strings[1]) != 1:
            raise ValueError("expected strings = [[y_bytes], [z_bytes]] for one image")
        shape = tuple(shape)
        z_hat = self.entropy_z.decompress(strings[1], self._z_indexes(shape), means=self.means_hyper)
        z_hat = z_hat.to(self.means_hyper.device)

        decoder = RansDecoder()
        decoder.set_stream(strings[0][0])
        tables = self._coder_tables()

        def code_step(level: int, scales: Tensor, means: Tensor, mask: Tensor) -> Tensor:
            coded = mask.expand_as(scales).bool()
            idx = self.entropy_y.build_indexes(scales[coded]).tolist()
            values = decoder.decode_stream(idx, *tables)
            q = torch.zeros_like(scales)
            q[coded] = torch.tensor(values, dtype=q.dtype, device=q.device)
            return q

        coded = self._progressive_coding(self.h_s(z_hat), code_step)
        return {"x_hat": self.g_s(coded.y_hat).clamp_(0, 1)}
