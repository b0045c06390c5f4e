"""The rate-distortion loss (trainables.losses) on a real model's outputs for a real photo."""

import math

import pytest
import torch

import hpcm
from trainables.data import ImageFolderDataset, bundled_photos
from trainables.losses import ELEMENT_SHARES, psnr, rate_distortion, scale_distortion_shares


def bundled_photo_crop():
    photo = ImageFolderDataset(bundled_photos("val")[:1], mode="val")[0]
    return photo[:, :128, :128].unsqueeze(0)


@pytest.fixture(scope="module")
def coded(pretrained_tiny_path):
    """The pre-trained tiny model, a 128 x 128 photo crop and the model's output for it."""
    model = hpcm.load_model(pretrained_tiny_path).eval()
    x = bundled_photo_crop()
    with torch.no_grad():
        out = model(x)
    return model, x, out


def test_per_scale_terms_add_up_to_the_loss(coded):
    model, x, out = coded
    latents = out["latents"]
    shares = scale_distortion_shares(model.g_s, latents["y"], latents["y_hat"], x)
    terms = {k: float(v) for k, v in rate_distortion(
        out["x_hat"].clamp(0, 1), x, out["likelihoods"], lmbda=0.0483,
        distortion_shares=shares).items()}
    assert terms["s1"] + terms["s2"] + terms["s3"] + terms["bpp_z"] == pytest.approx(
        terms["loss"], rel=1e-6)
    assert terms["bpp_s1"] + terms["bpp_s2"] + terms["bpp_s3"] == pytest.approx(
        terms["bpp_y"], rel=1e-6)
    assert terms["bpp_y"] + terms["bpp_z"] == pytest.approx(terms["bpp"], rel=1e-6)
    assert [terms[f"dshare_s{k}"] for k in (1, 2, 3)] == pytest.approx(list(shares))
    # Every scale carries a rate and a share of the distortion: more than its rate alone.
    for k in (1, 2, 3):
        assert terms[f"s{k}"] > terms[f"bpp_s{k}"] > 0
    # Without shares, the per-scale losses are not reported.
    assert "s1" not in rate_distortion(out["x_hat"], x, out["likelihoods"], lmbda=0.0483)


def test_a_larger_lambda_weighs_the_same_distortion_more(coded):
    _, x, out = coded
    low, high = (rate_distortion(out["x_hat"].clamp(0, 1), x, out["likelihoods"], lmbda=lmbda)
                 for lmbda in (0.01, 0.02))
    assert float(high["bpp"]) == float(low["bpp"]) and float(high["mse"]) == float(low["mse"])
    # loss - bpp is the distortion term, linear in lambda.
    assert float(high["loss"] - high["bpp"]) == pytest.approx(
        2 * float(low["loss"] - low["bpp"]), rel=1e-6)


def test_each_elements_bits_count_in_the_lattice_it_is_coded_in(coded):
    """One bit per y element (likelihood 1/2) and none for z: each scale's rate is its
    lattice's share of the elements; the real likelihoods are not split that way."""
    _, x, out = coded
    y_lik = out["likelihoods"]["y"]
    half = {"y": torch.full_like(y_lik, 0.5), "z": torch.ones_like(out["likelihoods"]["z"])}
    terms = rate_distortion(out["x_hat"], x, half, lmbda=0.01)
    pixels = x.shape[-2] * x.shape[-1]
    assert float(terms["bpp_z"]) == 0
    for k, share in zip((1, 2, 3), ELEMENT_SHARES):
        assert float(terms[f"bpp_s{k}"]) == pytest.approx(share * y_lik.numel() / pixels)
    # Real per-scale rates are not the fixed fractions of the report's code.
    real = rate_distortion(out["x_hat"], x, out["likelihoods"], lmbda=0.01)
    fractions = [float(real[f"bpp_s{k}"] / real["bpp_y"]) for k in (1, 2, 3)]
    assert fractions != pytest.approx(list(ELEMENT_SHARES), abs=1e-3)


def test_padding_counts_in_the_bits_but_not_in_bits_per_pixel(coded):
    _, x, out = coded
    full = rate_distortion(out["x_hat"], x, out["likelihoods"], lmbda=0.01)
    # The same bits over the 96 x 128 real pixels of a padded image: 4/3 the bits per pixel.
    real = rate_distortion(out["x_hat"][..., :96, :], x[..., :96, :], out["likelihoods"],
                           lmbda=0.01, num_pixels=96 * 128)
    assert float(real["bpp"]) == pytest.approx(float(full["bpp"]) * 128 / 96, rel=1e-6)


def test_distortion_is_attributed_to_the_lattice_that_was_quantised(coded):
    model, x, out = coded
    y = out["latents"]["y"]
    labels = hpcm.scale_labels(*y.shape[1:])
    for k in (1, 2, 3):
        # Only lattice k's elements are coded with an error: all the distortion is its own.
        y_hat = torch.where(labels == k, torch.round(y * 0.5) * 2, y)
        shares = scale_distortion_shares(model.g_s, y, y_hat, x)
        assert shares[k - 1] == pytest.approx(1.0)
        assert sum(shares) == pytest.approx(1.0)


def test_latents_from_a_bf16_forward_are_measured_like_fp32_ones(coded):
    # On a GPU with amp the validation forward runs under bf16 autocast and hands bf16
    # latents to a synthesis whose weights are fp32.
    model, x, out = coded
    y, y_hat = out["latents"]["y"], out["latents"]["y_hat"]
    fp32 = scale_distortion_shares(model.g_s, y, y_hat, x)
    bf16 = scale_distortion_shares(model.g_s, y.bfloat16(), y_hat.bfloat16(), x)
    assert sum(bf16) == pytest.approx(1.0)
    assert bf16 == pytest.approx(fp32, abs=0.02)


def test_no_measurable_distortion_is_split_by_element_counts(coded):
    model, x, out = coded
    y = out["latents"]["y"]
    assert scale_distortion_shares(model.g_s, y, y.clone(), x) == ELEMENT_SHARES


def test_psnr_of_known_errors():
    assert psnr(1e-2) == pytest.approx(20.0) and psnr(1e-4) == pytest.approx(40.0)
    assert psnr(0.0) == math.inf
