"""Rate-distortion loss with real per-scale rates.

``loss = lambda * 255^2 * MSE + bpp``. The y rate is split by the lattice each element is
really coded in (``hpcm.scale_labels``), and the distortion term is shared out by each
scale's share of y elements, so that ``s1 + s2 + s3 + bpp_z == loss``:

    s_k = bpp_sk + lambda * 255^2 * MSE * share_k,   share = (1/16, 3/16, 3/4)
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

import hpcm

SCALE_SHARES: dict[str, float] = {"s1": 1 / 16, "s2": 3 / 16, "s3": 3 / 4}


@lru_cache(maxsize=32)
def _scale_masks(channels: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    labels = hpcm.scale_labels(channels, height, width)
    return tuple((labels == k).float() for k in (1, 2, 3))  # type: ignore[return-value]


def rate_distortion(x_hat: Tensor, target: Tensor, likelihoods: dict[str, Tensor],
                    lmbda: float, num_pixels: int | None = None) -> dict[str, Tensor]:
    """All training/validation terms for one batch.

    ``x_hat`` and ``target`` must already be cropped to the real image; ``num_pixels`` is
    the number of real pixels in the batch (defaults to ``target``'s), so padding coded
    around an image counts in its bits but never dilutes bits per pixel or the MSE.
    """
    if num_pixels is None:
        num_pixels = target.shape[0] * target.shape[2] * target.shape[3]
    lik_y = likelihoods["y"].float()
    bits_y = -torch.log2(lik_y)
    masks = _scale_masks(*lik_y.shape[1:])
    out: dict[str, Tensor] = {}
    for k, mask in enumerate(masks, start=1):
        out[f"bpp_s{k}"] = (bits_y * mask.to(bits_y.device)).sum() / num_pixels
    out["bpp_y"] = bits_y.sum() / num_pixels
    out["bpp_z"] = -torch.log2(likelihoods["z"].float()).sum() / num_pixels
    out["bpp"] = out["bpp_y"] + out["bpp_z"]
    out["mse"] = torch.mean((x_hat.float() - target.float()) ** 2)
    distortion = lmbda * 255**2 * out["mse"]
    out["loss"] = distortion + out["bpp"]
    for k, (scale, share) in enumerate(SCALE_SHARES.items(), start=1):
        out[scale] = out[f"bpp_s{k}"] + distortion * share
    return out


def psnr(mse: float) -> float:
    """PSNR in dB of images in [0, 1]."""
    return float("inf") if mse <= 0 else 10 * math.log10(1.0 / mse)
