"""analysis on a real small Ray Tune experiment: three trials that end by the per-scale
stopper, by their epoch budget and by an error; then `evaluate` and `analyze` on it."""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import ray

from analysis import load_experiment
from analysis.cli import add_analyze_parser, add_evaluate_parser, cmd_analyze, cmd_evaluate
from trainables.data import bundled_photos
from trainables.given_configs import GivenConfigs

EPOCHS = 4
# Never improves by 1e6 after the first epoch: every scale stops at epoch 1.
STOP_FAST = dict(patience=1, min_patience=1, max_patience=1, min_delta=1e6)
STOP_SLOW = dict(patience=50, min_patience=10, max_patience=200)
CONSOLE = io.StringIO()  # what the sweep's quiet console printed (trainables.console)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, photo_dirs, pretrained_tiny_path) -> Path:
    from trainables.console import ConsoleReporter
    from trainables.spec import TrialSpec
    from trainables.sweep import SweepOptions, run_sweep

    storage = tmp_path_factory.mktemp("results")
    trial = TrialSpec(model="tiny", checkpoint=str(pretrained_tiny_path),
                      train_dir=str(photo_dirs / "train"), val_dir=str(photo_dirs / "val"),
                      stopper=STOP_SLOW).replace(lmbda=0.0483, batch_size=4, crops_per_image=2)
    options = SweepOptions(name="analysis", storage_path=str(storage), trial=trial,
                           epochs=EPOCHS, num_samples=3, preset="test", max_failures=0,
                           scheduler="fifo")
    points = [
        {"freeze_strategy": "entropy", "context_lr_ratio": 0.1, "stopper": STOP_FAST},
        {"freeze_strategy": "progressive", "context_lr_ratio": 0.5, "unfreeze_h_epoch": 1,
         "unfreeze_context_epoch": 2, "stopper": STOP_SLOW},
        {"freeze_strategy": "none", "context_lr_ratio": 0.05,
         "checkpoint": str(storage / "missing.pt")},
    ]
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        # verbose: no console of its own; this test's reporter writes to CONSOLE instead
        results = run_sweep(options, callbacks=[ConsoleReporter(epochs=EPOCHS, stream=CONSOLE)],
                            verbose=True, searcher=GivenConfigs(points))
        assert len(results) == 3 and len(results.errors) == 1
    finally:
        ray.shutdown()
    return Path(options.path)


def _reported(trial_dir: Path) -> pd.DataFrame:
    """What the trial reported, straight from result.json (last report of an epoch wins)."""
    lines = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines() if x]
    df = pd.DataFrame(lines)
    return df.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def _by_strategy(exp, strategy: str) -> pd.Series:
    rows = exp.trials[exp.trials["freeze_strategy"] == strategy]
    assert len(rows) == 1
    return rows.iloc[0]


def test_dataframes_match_what_the_trials_reported(experiment):
    exp = load_experiment(experiment)
    assert len(exp.trials) == 3
    assert exp.searched == ["context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch",
                            "unfreeze_context_epoch"]
    for _, trial in exp.trials.iterrows():
        folder = experiment / trial["trial_dir"]
        params = json.loads((folder / "params.json").read_text())
        assert trial["context_lr_ratio"] == params["context_lr_ratio"]
        assert trial["lmbda"] == params["lmbda"] and trial["epochs"] == EPOCHS
        if trial["stop_reason"] == "error":
            assert trial["epochs_run"] == 0 and math.isnan(trial["best_loss"])
            continue
        reported = _reported(folder)
        mine = exp.history(trial["trial_id"]).reset_index(drop=True)
        for col in ("epoch", "loss", "s1", "s2", "s3", "bpp", "bpp_z", "psnr", "lr/context",
                    "patience/s2/counter", "time_total_s", "images_per_s"):
            assert mine[col].tolist() == reported[col].tolist(), col
        last = reported.iloc[-1]
        assert trial["best_loss"] == reported["loss"].min() == last["best_loss"]
        assert trial["best_epoch"] == last["best_epoch"]
        assert trial["last_epoch"] == last["epoch"] and trial["epochs_run"] == len(reported)
        for s in ("s1", "s2", "s3"):
            assert trial[f"{s}_best"] == last[f"patience/{s}/best"]
            assert trial[f"{s}_best_epoch"] == last[f"patience/{s}/best_epoch"]
        assert trial["wall_time_s"] == last["time_total_s"]
        assert trial["device_hours"] == pytest.approx(last["time_total_s"] * last["devices"] / 3600)
        assert trial["images_per_s"] == pytest.approx(reported["images_per_s"].mean())
        assert Path(trial["best_checkpoint"], "trial_state.pt").is_file()
    assert len(exp.epochs) == exp.trials["epochs_run"].sum()


def test_a_trial_folder_tune_never_recorded_is_skipped_with_a_warning(experiment, tmp_path,
                                                                      caplog):
    copy = tmp_path / "analysis"
    shutil.copytree(experiment, copy)
    recorded = sorted(p for p in copy.iterdir() if (p / "params.json").is_file())[0]
    shutil.copytree(recorded, copy / "trial_ffffffff")  # as a killed driver leaves it
    with caplog.at_level(logging.WARNING):
        exp = load_experiment(copy)
    assert len(exp.trials) == 3 and "trial_ffffffff" not in set(exp.trials["trial_dir"])
    assert "trial_ffffffff" in caplog.text


def test_stop_reasons(experiment):
    exp = load_experiment(experiment)
    fast, slow, bad = (_by_strategy(exp, s) for s in ("entropy", "progressive", "none"))
    assert fast["stop_reason"] == "all scales stopped" and fast["last_epoch"] == 1
    assert [fast[f"{s}_stop_epoch"] for s in ("s1", "s2", "s3")] == [1, 1, 1]
    assert slow["stop_reason"] == "max epochs" and slow["last_epoch"] == EPOCHS - 1
    assert math.isnan(slow["s1_stop_epoch"])
    assert bad["stop_reason"] == "error" and bad["status"] == "ERROR"
    assert "checkpoint file not found" in bad["error"] and "missing.pt" in bad["error"]


def test_the_console_says_why_each_trial_ended(experiment):
    """The three end reasons on real trials (by construction: min_delta 1e6 stops every scale
    at epoch 1; patience 10+ cannot stop within 4 epochs; a missing checkpoint fails)."""
    exp = load_experiment(experiment)
    ends = {line.split("]")[0].lstrip("["): line for line in CONSOLE.getvalue().splitlines()
            if "] end " in line}
    ids = {s: _by_strategy(exp, s)["trial_id"] for s in ("entropy", "progressive", "none")}
    assert set(ends) == set(ids.values())
    assert ends[ids["entropy"]].endswith("after 2 of 4 epochs: all scales stopped "
                                         "(s1@1 s2@1 s3@1); best loss " +
                                         f"{_by_strategy(exp, 'entropy')['best_loss']:.4f} at "
                                         f"epoch {int(_by_strategy(exp, 'entropy')['best_epoch'])}")
    assert "after 4 of 4 epochs: epoch budget reached;" in ends[ids["progressive"]]
    error = ends[ids["none"]]
    assert "end    error: " in error and "missing.pt" in error and "error.txt in " in error
    starts = [line for line in CONSOLE.getvalue().splitlines() if "] start " in line]
    assert len(starts) == 3 and any("unfreeze_h_epoch=1  unfreeze_context_epoch=2" in line
                                    for line in starts)


def test_compute_saved_arithmetic(experiment):
    exp = load_experiment(experiment)
    saved = exp.compute_saved().set_index("family")
    total = saved.loc["all"]
    assert total["trials"] == 3 and total["errored"] == 1 and total["stopped_early"] == 1
    assert total["epochs_used"] == 2 + EPOCHS + 0
    assert total["epochs_budget"] == 3 * EPOCHS
    assert total["epochs_saved"] == 3 * EPOCHS - (2 + EPOCHS)
    assert total["epochs_saved_fraction"] == pytest.approx(1 - (2 + EPOCHS) / (3 * EPOCHS))
    fast, slow = _by_strategy(exp, "entropy"), _by_strategy(exp, "progressive")
    assert saved.loc["entropy", "epochs_saved"] == EPOCHS - 2
    assert saved.loc["progressive", "epochs_saved"] == 0
    # Full-budget device-hours extrapolate each trial's own hours per epoch; the errored
    # trial (no epoch) gets the experiment's mean per epoch.
    assert slow["device_hours_budget"] == pytest.approx(slow["device_hours"])
    assert fast["device_hours_budget"] == pytest.approx(fast["device_hours"] / 2 * EPOCHS)
    mean = (fast["device_hours"] + slow["device_hours"]) / (2 + EPOCHS)
    assert saved.loc["none", "device_hours_budget"] == pytest.approx(mean * EPOCHS)
    assert total["device_hours_used"] == pytest.approx(fast["device_hours"] + slow["device_hours"])
    assert total["device_hours_saved"] == pytest.approx(
        total["device_hours_budget"] - total["device_hours_used"])


def test_export_round_trips(experiment, tmp_path):
    exp = load_experiment(experiment)
    files = exp.export(tmp_path)
    for name in ("trials", "epochs", "compute_saved"):
        csv = pd.read_csv(files[f"{name}.csv"])
        parquet = pd.read_parquet(files[f"{name}.parquet"])
        assert len(csv) == len(parquet) == len(getattr(exp, name) if name != "compute_saved"
                                                 else exp.compute_saved())
    epochs = pd.read_parquet(files["epochs.parquet"])
    assert epochs["loss"].tolist() == exp.epochs["loss"].tolist()


def _parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_evaluate_parser(sub)
    add_analyze_parser(sub)
    return parser.parse_args(argv)


def test_evaluate_trials_then_analyze_writes_the_report(experiment, tmp_path, capsys):
    exp = load_experiment(experiment)
    data = tmp_path / "images"
    data.mkdir()
    from PIL import Image

    with Image.open(bundled_photos("val")[0]) as img:  # a 192 x 256 crop keeps it quick
        img.convert("RGB").crop((128, 160, 384, 352)).save(data / "crop.png")
    folders = [str(experiment / t) for t in exp.finished()["trial_dir"]]
    assert cmd_evaluate(_parse(["evaluate", *folders, "--data", str(data),
                                "--codecs", "jpeg"])) == 0
    evaluation = experiment / "evaluation"
    per_image = pd.read_csv(evaluation / "per_image.csv")
    assert set(per_image["curve"]) == {"hpcm", "start"} and len(per_image) == 3
    # The bits are the bitstream's: recompress the crop with the first checkpoint.
    from analysis.evaluate import code_image, load, load_images, resolve_checkpoint

    info = resolve_checkpoint(folders[0])
    coded = code_image(load(info), load_images(data)["crop"])
    row = per_image[per_image["checkpoint"] == info.path].iloc[0]
    assert row["bits"] == coded["bits"] == 8 * sum(len(s) for g in coded["strings"] for s in g)
    assert row["bpp"] == pytest.approx(row["bits"] / (192 * 256))
    bd_table = pd.read_csv(evaluation / "bd.csv")
    assert set(bd_table["anchor"]) == {"start", "jpeg"}

    out = tmp_path / "report"
    assert cmd_analyze(_parse(["analyze", str(experiment), "--out", str(out)])) == 0
    printed = capsys.readouterr().out
    assert "winner" in printed and str(out / "report.html") in printed
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} >= {"convergence_winner.png", "compute_used_vs_saved.png",
                                      "loss_vs_context_lr_ratio.png", "rate_distortion.png",
                                      "unfreeze_epochs_vs_loss.png", "loss_curves.png"}
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(pngs)
    import base64

    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode() in html
    md = (out / "report.md").read_text()
    for png in pngs:
        assert f"]({png.name})" in md
    assert "BD-rate" in md and "Winning config" in md and "Compute saved" in md
    best = json.loads((out / "best_config.json").read_text())
    assert best["freeze_strategy"] in ("entropy", "progressive")
    for name in ("trials", "epochs", "compute_saved"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()


def test_analyze_refuses_a_folder_without_trials(tmp_path):
    with pytest.raises(ValueError, match="no trial folder"):
        cmd_analyze(_parse(["analyze", str(tmp_path)]))
    with pytest.raises(ValueError, match="no such experiment folder"):
        cmd_analyze(_parse(["analyze", str(tmp_path / "nope")]))
