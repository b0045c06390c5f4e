"""Model construction, forward pass and the entropy model."""

from __future__ import annotations

import dataclasses

import pytest
import scipy.stats
import torch

import hpcm
from hpcm import PRESETS, create_model, scale_labels
from hpcm.entropy_models import GeneralizedGaussianConditional, generalized_gaussian_cdf


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", [("base", 68_505_299), ("large", 89_718_803)])
def test_official_parameter_counts(name, expected):
    assert n_params(create_model(name)) == expected


def test_tiny_preset():
    model = create_model("tiny")
    assert 2_000_000 < n_params(model) < 3_000_000
    assert PRESETS["tiny"].pad_multiple == 128
    assert PRESETS["base"].pad_multiple == PRESETS["large"].pad_multiple == 256


def test_create_model_overrides_and_unknown_preset():
    model = create_model("tiny", attn_heads=4)
    assert model.config.attn_heads == 4 and model.attn_s1.num_heads == 4
    with pytest.raises(ValueError, match="base.*large.*tiny"):
        create_model("huge")


def test_config_is_plain_and_round_trips():
    cfg = PRESETS["large"]
    assert hpcm.HPCMConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    as_lists = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    assert hpcm.HPCMConfig.from_dict(as_lists) == cfg
    with pytest.raises(ValueError):
        hpcm.HPCMConfig(M=60)


def test_adaptive_params_are_registered_ones_on_cpu():
    model = create_model("tiny")
    assert len(model.adaptive_params_list) == 10
    names = {n for n, _ in model.named_parameters()}
    for i, p in enumerate(model.adaptive_params_list):
        assert f"adaptive_params_list.{i}" in names
        assert p.device.type == "cpu" and torch.equal(p, torch.ones(1, 3 * 64, 1, 1))


@pytest.mark.parametrize("training", [True, False])
def test_forward_shapes_and_finite(training):
    torch.manual_seed(0)
    model = create_model("tiny").train(training)
    x = torch.rand(2, 3, 128, 128)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 64, 8, 8)
    assert out["likelihoods"]["z"].shape == (2, 64, 2, 2)
    for t in (out["x_hat"], *out["likelihoods"].values()):
        assert torch.isfinite(t).all()
    lik = torch.cat([v.flatten() for v in out["likelihoods"].values()])
    assert bool(((lik >= 1e-9) & (lik <= 1)).all())
    if training:
        loss = sum(-torch.log2(v).sum() for v in out["likelihoods"].values()) + out["x_hat"].square().sum()
        loss.backward()
        # Every context step's gain, the hyper prior and both transforms receive gradients.
        for name in ["adaptive_params_list.0", "adaptive_params_list.9", "scales_hyper", "means_hyper",
                     "g_a.branch.0.weight", "h_a.branch.0.branch.0.pconv.weight", "context_net.1.weight"]:
            grad = dict(model.named_parameters())[name].grad
            assert grad is not None and grad.abs().sum() > 0, name


def test_eval_forward_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        both = model(x)["x_hat"]
        first = model(x[:1])["x_hat"]
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_forward_rejects_sizes_off_the_lattice():
    model = create_model("tiny")
    with pytest.raises(ValueError, match="multiple of 128"):
        model(torch.rand(1, 3, 128, 192))


def test_per_scale_rates_sum_to_total():
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    with torch.no_grad():
        lik = model(torch.rand(1, 3, 256, 128))["likelihoods"]["y"]
    bits = -torch.log2(lik)
    labels = scale_labels(*lik.shape[1:])
    per_scale = [bits[:, labels == s].sum() for s in (1, 2, 3)]
    assert all(b > 0 for b in per_scale)
    assert torch.allclose(sum(per_scale), bits.sum(), rtol=1e-6)


def test_generalized_gaussian_cdf_and_gradient():
    beta = torch.tensor([1.5], dtype=torch.float64)
    x = torch.linspace(-8, 8, 161, dtype=torch.float64, requires_grad=True)
    cdf = generalized_gaussian_cdf(x, beta)
    expected = scipy.stats.gennorm.cdf(x.detach().numpy(), 1.5)
    assert torch.allclose(cdf, torch.from_numpy(expected), rtol=1e-10, atol=1e-300)
    cdf.sum().backward()
    pdf = scipy.stats.gennorm.pdf(x.detach().numpy(), 1.5)
    assert torch.allclose(x.grad, torch.from_numpy(pdf), rtol=1e-10)


def test_entropy_model_likelihoods_and_tables():
    model = GeneralizedGaussianConditional()
    assert model.beta.item() == 1.5
    values = torch.arange(-60, 61, dtype=torch.float32)
    for scale in (0.05, 0.5, 3.0):
        _, lik = model(values, torch.full_like(values, scale), training=False)
        assert abs(lik.sum().item() - 1) < 1e-4
    # A per-channel table (unsorted, partly below the bound) is accepted and lower-bounded.
    model.update_scale_table(torch.tensor([2.0, 0.01, 0.5]))
    assert model.scale_table.min().item() == pytest.approx(0.12)
    assert model.quantized_cdf.shape[0] == 3
