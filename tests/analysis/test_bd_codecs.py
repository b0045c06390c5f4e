"""BD-rate / BD-PSNR, the codec anchors, importance and stop reasons (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import bd, codecs
from analysis.results import Experiment, stop_reason

RATES = [0.1, 0.25, 0.5, 1.0]
PSNR = [27.0, 30.0, 33.0, 36.0]


def test_bd_rate_of_rates_times_0_8_is_minus_20_percent():
    assert bd.bd_rate(RATES, PSNR, [r * 0.8 for r in RATES], PSNR) == pytest.approx(-20.0, abs=1e-9)
    assert round(bd.bd_rate(RATES, PSNR, [r * 0.8 for r in RATES], PSNR), 3) == -20.0


def test_bd_psnr_of_half_a_db_more_is_0_5():
    assert bd.bd_psnr(RATES, PSNR, RATES, [p + 0.5 for p in PSNR]) == pytest.approx(0.5, abs=1e-9)


def test_bd_needs_two_monotone_points_and_overlap():
    assert math.isnan(bd.bd_rate(RATES, PSNR, [0.3], [31.0]))
    assert math.isnan(bd.bd_rate(RATES, PSNR, [5, 6], [50, 51]))  # no overlap
    out = bd.compare(RATES, PSNR, [0.3], [31.0])
    assert "2+" in out["note"]
    # Different point counts are fine; a non-monotone point is dropped.
    r, d = bd.monotone([0.5, 0.1, 0.3, 0.2], [33, 27, 29, 30])
    assert r == [0.1, 0.2, 0.5] and d == [27, 30, 33]
    assert bd.bd_rate(RATES, PSNR, [0.2, 0.4, 0.8], [30.5, 33.5, 36.5]) < 0


def test_jpeg_anchor_bits_are_the_file_and_quality_orders_the_curve():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 96 * 128 * 3).reshape(96, 128, 3)
    image = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    low, high = codecs.code(image, "jpeg", 10), codecs.code(image, "jpeg", 90)
    assert low["bits"] % 8 == 0 and low["bpp"] == low["bits"] / (96 * 128)
    assert high["bpp"] > low["bpp"] and high["psnr"] > low["psnr"]
    assert math.isnan(low["ms_ssim"])  # under 161 pixels a side


@pytest.mark.parametrize("name", ["webp", "avif", "hevc"])
def test_other_anchors_decode(name):
    if codecs.available(name):
        pytest.skip(codecs.available(name))
    image = np.full((64, 64, 3), 128, np.uint8)
    image[16:48, 16:48] = (200, 40, 90)
    out = codecs.code(image, name, 50)
    assert out["bits"] > 0 and out["psnr"] > 25


def test_stop_reasons_of_every_kind():
    common = dict(epochs_run=3, budget=10, sweep_budget=False)
    assert stop_reason("ERROR", "boom", False, last_epoch=2, **common) == "error"
    assert stop_reason("TERMINATED", None, True, last_epoch=2, **common) == "all scales stopped"
    assert stop_reason("TERMINATED", None, False, last_epoch=9, **common) == "max epochs"
    assert stop_reason("RUNNING", None, False, last_epoch=2, **common) == "running"
    assert stop_reason("TERMINATED", None, False, last_epoch=2, epochs_run=3, budget=10,
                       sweep_budget=True) == "budget"
    assert stop_reason("TERMINATED", None, False, last_epoch=2, **common) == "interrupted"
    # Ended early, not by its scales, in a sweep whose scheduler culls (ASHA).
    assert stop_reason("TERMINATED", None, False, last_epoch=2, culling=True,
                       **common) == "culled by the scheduler"
    assert stop_reason("TERMINATED", None, True, last_epoch=2, culling=True,
                       **common) == "all scales stopped"
    assert stop_reason("PENDING", None, False, last_epoch=None, epochs_run=0, budget=10,
                       sweep_budget=False) == "pending"


def test_importance_ranks_the_knob_that_drives_the_loss():
    from analysis.importance import parameter_importance

    rng = np.random.default_rng(1)
    n = 16
    ratio = np.exp(rng.uniform(np.log(0.01), 0, n))
    strategy = np.array(["none", "entropy", "progressive", "progressive"] * 4)
    h = np.where(strategy == "progressive", rng.integers(1, 5, n), np.nan)
    ctx = np.where(strategy == "progressive", h + rng.integers(1, 4, n), np.nan)
    loss = 10 + 3 * np.log10(ratio) ** 2 + rng.normal(0, 0.01, n)
    trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "family": strategy,
                           "freeze_strategy": strategy, "context_lr_ratio": ratio,
                           "unfreeze_h_epoch": h, "unfreeze_context_epoch": ctx,
                           "best_loss": loss, "stop_reason": "max epochs"})
    exp = Experiment(path=None, options={"epochs": 12}, trials=trials, epochs=pd.DataFrame(),
                     searched=["context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch",
                               "unfreeze_context_epoch"])
    imp = parameter_importance(exp)
    every = imp[imp["scope"] == "all trials"].set_index("param")["importance"]
    assert set(every.index) == {"context_lr_ratio", "freeze_strategy"}
    assert every.idxmax() == "context_lr_ratio" and every.sum() == pytest.approx(1)
    prog = imp[imp["scope"] == "progressive only"]
    assert set(prog["param"]) >= {"unfreeze_h_epoch", "unfreeze_context_epoch"}
    assert (prog["trials"] == 8).all()
