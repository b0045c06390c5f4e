"""Rate-distortion loss with real per-scale rates and measured per-scale distortion.

``loss = lambda * 255^2 * MSE + bpp``. The y rate is split by the lattice each element is
really coded in (``hpcm.scale_labels``). The distortion term is split by measurement
(:func:`scale_distortion_shares`): how much each lattice's quantisation alone degrades the
reconstruction. So each scale carries its own signal and ``s1 + s2 + s3 + bpp_z == loss``:

    s_k = bpp_sk + lambda * 255^2 * MSE * share_k,   share_1 + share_2 + share_3 = 1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

import hpcm
from hpcm_tune.names import SCALES

# Each lattice's share of y's elements: the split used when quantisation causes no
# measurable distortion at all (nothing to attribute).
ELEMENT_SHARES: tuple[float, ...] = (1 / 16, 3 / 16, 3 / 4)


@lru_cache(maxsize=32)
def _scale_labels(channels: int, height: int, width: int) -> Tensor:
    return hpcm.scale_labels(channels, height, width)


def _scale_masks(shape: torch.Size, device: torch.device) -> list[Tensor]:
    labels = _scale_labels(*shape).to(device)
    return [(labels == k).float() for k in (1, 2, 3)]


@torch.no_grad()
def scale_distortion_shares(synthesis: Callable[[Tensor], Tensor], y: Tensor, y_hat: Tensor,
                            target: Tensor, crop: Callable[[Tensor], Tensor] = lambda t: t
                            ) -> tuple[float, float, float]:
    """Each lattice's share of the quantisation distortion, measured.

    ``synthesis`` decodes a latent (``model.g_s``); ``y`` is the unquantised latent and
    ``y_hat`` the coded one. For lattice k, only its elements take their coded values
    (the others stay unquantised) and the increase of the MSE over the unquantised
    reconstruction is that lattice's own distortion. The three are normalised to sum to 1.
    ``crop`` removes padding before the MSE.
    """
    # Latents from a bf16 autocast forward (CUDA with amp) are decoded in fp32, the
    # synthesis weights' own precision: this runs outside autocast, and the measured
    # shares must not depend on how the forward pass was computed.
    y, y_hat = y.float(), y_hat.float()

    def mse(latent: Tensor) -> float:
        x_hat = crop(synthesis(latent)).float().clamp(0, 1)
        return float(torch.mean((x_hat - target.float()) ** 2))

    unquantised = mse(y)
    own = [max(mse(torch.where(mask.bool(), y_hat, y)) - unquantised, 0.0)
           for mask in _scale_masks(y.shape[1:], y.device)]
    total = sum(own)
    if total <= 0:
        return ELEMENT_SHARES
    return tuple(d / total for d in own)  # type: ignore[return-value]


def rate_distortion(x_hat: Tensor, target: Tensor, likelihoods: dict[str, Tensor],
                    lmbda: float, num_pixels: int | None = None,
                    distortion_shares: tuple[float, float, float] | None = None
                    ) -> dict[str, Tensor]:
    """All training/validation terms for one batch.

    ``x_hat`` and ``target`` must already be cropped to the real image; ``num_pixels`` is
    the number of real pixels in the batch (defaults to ``target``'s), so padding coded
    around an image counts in its bits but never dilutes bits per pixel or the MSE.
    With ``distortion_shares`` (from :func:`scale_distortion_shares`) the per-scale losses
    ``s1``..``s3`` and the shares ``dshare_s1``.. are added.
    """
    if num_pixels is None:
        num_pixels = target.shape[0] * target.shape[2] * target.shape[3]
    lik_y = likelihoods["y"].float()
    bits_y = -torch.log2(lik_y)
    out: dict[str, Tensor] = {}
    for scale, mask in zip(SCALES, _scale_masks(lik_y.shape[1:], bits_y.device)):
        out[f"bpp_{scale}"] = (bits_y * mask).sum() / num_pixels
    out["bpp_y"] = bits_y.sum() / num_pixels
    out["bpp_z"] = -torch.log2(likelihoods["z"].float()).sum() / num_pixels
    out["bpp"] = out["bpp_y"] + out["bpp_z"]
    out["mse"] = torch.mean((x_hat.float() - target.float()) ** 2)
    distortion = lmbda * 255**2 * out["mse"]
    out["loss"] = distortion + out["bpp"]
    if distortion_shares is not None:
        for scale, share in zip(SCALES, distortion_shares):
            out[scale] = out[f"bpp_{scale}"] + distortion * share
            out[f"dshare_{scale}"] = torch.tensor(share)
    return out


def psnr(mse: float) -> float:
    """PSNR in dB of images in [0, 1]."""
    return float("inf") if mse <= 0 else 10 * math.log10(1.0 / mse)
