"""The fine-tuning loop on real photos: exact resume, real freezing/unfreezing, divergence.

The loss itself: tests/trainables/test_losses.py."""

import math

import pytest
import torch

import hpcm
from trainables.data import ImageFolderDataset, bundled_photos
from trainables.finetune import FineTuner, NonFiniteLossError, select_device
from trainables.spec import FineTuneConfig
from trainables.layer_lr import LayerLRConfig
from trainables.losses import ELEMENT_SHARES, psnr

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos():
    train = ImageFolderDataset(bundled_photos("train")[:3], mode="train", crop_size=128,
                               crops_per_image=2, seed=3)
    val = ImageFolderDataset(bundled_photos("val")[:1], mode="val")
    return train, val


def _tuner(photos, pretrained_tiny_path, **layer_lr):
    config = FineTuneConfig(epochs=4, batch_size=3, crop_size=128, crops_per_image=2, seed=7,
                            layer_lr=LayerLRConfig(base_lr=3e-4, **layer_lr))
    return FineTuner(hpcm.load_model(pretrained_tiny_path), config, *photos, CPU)


def test_four_epochs_equal_two_plus_resume_plus_two(photos, pretrained_tiny_path):
    straight = _tuner(photos, pretrained_tiny_path)
    for _ in range(4):
        straight.train_epoch()

    first = _tuner(photos, pretrained_tiny_path)
    for _ in range(2):
        first.train_epoch()
    state = first.state_dict()
    torch.manual_seed(999)  # a fresh process would have other RNG state: the checkpoint rules
    resumed = _tuner(photos, pretrained_tiny_path)
    resumed.load_state_dict(state)
    for _ in range(2):
        resumed.train_epoch()

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert resumed.epoch == straight.epoch == 4
    # Sanity: training did change the weights.
    start = hpcm.load_model(pretrained_tiny_path).state_dict()
    assert not torch.equal(start["g_a.branch.0.weight"], a["g_a.branch.0.weight"])


def _snapshot(model, prefix):
    return {k: v.detach().clone() for k, v in model.named_parameters() if k.startswith(prefix)}


def _changed(before, model):
    now = dict(model.named_parameters())
    return any(not torch.equal(v, now[k]) for k, v in before.items())


def test_progressive_unfreezing_trains_groups_from_their_epoch(photos, pretrained_tiny_path):
    tuner = _tuner(photos, pretrained_tiny_path, freeze_strategy="progressive",
                   unfreeze_h_epoch=1, unfreeze_context_epoch=2)
    prefixes = {"g": "g_a.", "h": "h_s.", "context": "attn_s3.", "entropy": "scales_hyper"}
    history = []
    for _ in range(3):
        before = {name: _snapshot(tuner.model, p) for name, p in prefixes.items()}
        tuner.train_epoch()
        history.append({name: _changed(snap, tuner.model) for name, snap in before.items()})
    assert history[0] == {"g": True, "h": False, "context": False, "entropy": False}
    assert history[1] == {"g": True, "h": True, "context": False, "entropy": False}
    assert history[2] == {"g": True, "h": True, "context": True, "entropy": False}
    lrs = tuner.learning_rates()
    assert lrs["lr/context"] > 0 and lrs["lr/entropy"] == 0


def test_validation_reports_per_scale_losses_that_sum_to_the_loss(photos, pretrained_tiny_path):
    metrics = _tuner(photos, pretrained_tiny_path).validate()
    total = metrics["s1"] + metrics["s2"] + metrics["s3"] + metrics["bpp_z"]
    assert total == pytest.approx(metrics["loss"], rel=1e-6)
    assert metrics["bpp_s1"] + metrics["bpp_s2"] + metrics["bpp_s3"] == pytest.approx(
        metrics["bpp_y"], rel=1e-6)
    assert metrics["psnr"] == pytest.approx(psnr(metrics["mse"]))  # one validation image
    assert 10 < metrics["psnr"] < 50 and 0 < metrics["bpp"] < 8
    assert 0 < metrics["ms_ssim"] <= 1
    # The distortion is shared out by measurement, not by the lattices' element counts.
    shares = [metrics[f"dshare_s{k}"] for k in (1, 2, 3)]
    assert sum(shares) == pytest.approx(1.0) and min(shares) >= 0
    assert shares != pytest.approx(list(ELEMENT_SHARES), abs=1e-3)


def test_diverged_training_fails_with_a_clear_reason(photos, pretrained_tiny_path):
    tuner = _tuner(photos, pretrained_tiny_path)
    with torch.no_grad():
        tuner.model.g_s.branch[-1].bias.fill_(float("nan"))
    tuner.config = FineTuneConfig(**{**tuner.config.__dict__, "max_nonfinite_in_a_row": 2})
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        tuner.train_epoch()
    assert tuner.skipped_batches == 2


def test_ms_ssim_is_averaged_over_the_images_where_it_is_defined(tmp_path, pretrained_tiny_path):
    """One validation image of 160 px or less (no MS-SSIM) must not make the mean NaN."""
    from PIL import Image

    with Image.open(bundled_photos("val")[0]) as img:
        img.crop((0, 0, 256, 256)).save(tmp_path / "big.png")
        img.crop((256, 256, 384, 384)).save(tmp_path / "small.png")  # 128 px a side
    config = FineTuneConfig(epochs=1, batch_size=1, crop_size=128)

    def validate(paths):
        val = ImageFolderDataset(paths, mode="val")
        return FineTuner(hpcm.load_model(pretrained_tiny_path), config, val, val,
                         CPU).validate()

    both, big = validate([tmp_path / "big.png", tmp_path / "small.png"]), validate(
        [tmp_path / "big.png"])
    assert both["ms_ssim_images"] == 1 and big["ms_ssim_images"] == 1
    assert both["ms_ssim"] == pytest.approx(big["ms_ssim"], rel=1e-6)
    assert 0 < both["ms_ssim"] <= 1
    assert math.isnan(validate([tmp_path / "small.png"])["ms_ssim"])


def test_a_trial_assigned_no_gpu_trains_on_the_cpu(caplog):
    # Ray's empty gpu_ids: the CPU even where torch sees a GPU (it belongs to other trials).
    with caplog.at_level("INFO", logger="trainables.finetune"):
        assert select_device([]) == CPU
    assert "no GPU assigned" in caplog.text


def test_without_a_scheduler_a_visible_gpu_is_used():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device(None).type == expected


def test_assigned_gpus_that_torch_cannot_see_fall_back_to_the_cpu_with_a_warning(caplog):
    device = select_device([0])
    if torch.cuda.is_available():
        assert device.type == "cuda"
    else:
        assert device == CPU
        assert any(r.levelname == "WARNING" and "falling back to CPU" in r.getMessage()
                   for r in caplog.records)
