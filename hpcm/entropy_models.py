"""Generalised-Gaussian conditional entropy model (the distribution HPCM uses for y and z)."""

from __future__ import annotations

import scipy.stats
import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor

__all__ = ["GeneralizedGaussianConditional", "generalized_gaussian_cdf"]


class _GeneralizedGaussianCDF(torch.autograd.Function):
    """Standardised generalised-Gaussian CDF with its pdf as gradient.

    ``torch.special.gammaincc`` has no gradient with respect to its argument, hence the custom
    backward.
    """

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor) -> Tensor:
        a = 1.0 / beta
        abs_pow = x.abs().pow(beta)
        # Evaluate the tail 0.5 * Q(1/beta, |x|^beta) directly so that small probabilities on
        # the negative side keep full relative precision.
        tail = 0.5 * torch.special.gammaincc(a, abs_pow)
        ctx.save_for_backward(abs_pow, beta)
        return torch.where(x < 0, tail, 1.0 - tail)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        abs_pow, beta = ctx.saved_tensors
        pdf = torch.exp(-abs_pow - torch.special.gammaln(1.0 / beta)) * beta / 2
        return grad_output * pdf, None


def generalized_gaussian_cdf(x: Tensor, beta: Tensor) -> Tensor:
    """CDF of the unit-scale generalised Gaussian: 0.5 * (1 + sign(x) * P(1/beta, |x|^beta))."""
    return _GeneralizedGaussianCDF.apply(x, beta.to(x.dtype))


class GeneralizedGaussianConditional(GaussianConditional):
    """CompressAI's conditional entropy model with a generalised-Gaussian density.

    Everything except the standardised CDF / quantile is CompressAI's: likelihoods of
    (noisy or rounded) inputs, the scale table, quantised CDFs for the rANS coder
    (``update``) and ``build_indexes``.

    Args:
        beta: shape parameter (1.5 in HPCM; 2 would be a Gaussian with scale sqrt(2)).
        scale_bound: lower bound on the scales.
        likelihood_bound: lower bound on the likelihoods.
        tail_mass: probability mass left outside the quantised CDF tables.
    """

    beta: Tensor

    def __init__(
        self,
        beta: float = 1.5,
        scale_bound: float = 0.12,
        likelihood_bound: float = 1e-9,
        tail_mass: float = 1e-9,
    ):
        # The table is set by update_scale_table(); passing None skips CompressAI's check that a
        # table is sorted, which a per-channel table (the z model) is not.
        super().__init__(
            None, scale_bound=scale_bound, likelihood_bound=likelihood_bound, tail_mass=tail_mass
        )
        self.register_buffer("beta", torch.tensor([float(beta)]))

    def _standardized_cumulative(self, inputs: Tensor) -> Tensor:
        return generalized_gaussian_cdf(inputs, self.beta)

    def _standardized_quantile(self, quantile: float) -> float:
        return float(scipy.stats.gennorm.ppf(quantile, self.beta.item()))

    def update(self) -> None:
        # A per-channel table built from learned scales can fall below the bound that the
        # likelihood applies; build CDFs for the scales actually used.
        self.scale_table = torch.clamp(self.scale_table, min=float(self.scale_bound))
        super().update()
