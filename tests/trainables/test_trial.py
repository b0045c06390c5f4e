"""run_trial (trainables.trial): the data a trial trains and validates on (each folder option
works on its own) and the trial loop: where it stops, when it saves, exact resume. The trial's
settings (TrialSpec) are tested in test_spec.py."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pytest
import torch

from trainables.data import bundled_photos
from trainables.spec import FineTuneConfig
from trainables.spec import TrialSpec
from trainables.trial import _datasets


def _spec(**folders) -> TrialSpec:
    return TrialSpec(finetune=FineTuneConfig(crop_size=128, crops_per_image=1), **folders)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("given, missing", [("val", "train"), ("train", "val")])
def test_each_folder_option_works_alone(given, missing, photo_dirs, caplog):
    # The folder given is used; the other one is the bundled photos, and that is logged.
    with caplog.at_level(logging.INFO, logger="trainables.trial"):
        datasets = dict(zip(("train", "val"), _datasets(_spec(
            **{f"{given}_dir": str(photo_dirs / given)}))))
    assert sorted(p.name for p in datasets[given].paths) == _files(photo_dirs / given)
    assert list(datasets[missing].paths) == bundled_photos(missing)
    verb = "training" if missing == "train" else "validating"
    assert any(f"no --{missing}-dir: {verb} on the bundled {missing} photos" in r.getMessage()
               for r in caplog.records)


def test_both_folders_and_max_side(photo_dirs):
    train, val = _datasets(_spec(train_dir=str(photo_dirs / "train"),
                                 val_dir=str(photo_dirs / "val"), max_side=200))
    assert sorted(p.name for p in train.paths) == _files(photo_dirs / "train")
    assert sorted(p.name for p in val.paths) == _files(photo_dirs / "val")
    assert max(val[0].shape[-2:]) == 200  # chelsea, 451 x 300, downsized


@pytest.mark.parametrize("folders", [{}, {"train_dir": None, "val_dir": None}])
def test_no_folder_is_the_bundled_photos(folders):
    train, val = _datasets(_spec(**folders))
    assert list(train.paths) == bundled_photos("train")
    assert list(val.paths) == bundled_photos("val")


# -- run_trial: the trial loop ---------------------------------------------------------------
class RecordingSession:
    """A Session that keeps every report and writes each state as a trial folder would
    (``save_state``; ``load_state`` restores it), like Tune's and the local session."""

    def __init__(self, directory: Path, restore_from: Path | None = None) -> None:
        self.directory, self.restore_from = directory, restore_from
        self.reports: list[tuple[dict, Path | None]] = []

    def restore(self) -> dict | None:
        from trainables.trial import load_state

        return None if self.restore_from is None else load_state(self.restore_from)

    def report(self, metrics: dict, state: dict | None) -> None:
        from trainables.trial import save_state

        saved = None
        if state is not None:
            saved = self.directory / f"epoch_{metrics['epoch']}"
            save_state(state, saved)
        self.reports.append((dict(metrics), saved))


EPOCHS = 3
EVERY = 2
# What an epoch's result is, apart from timings and the process it ran in.
RESULT_KEYS = ("epoch", "trained_epochs", "loss", "s1", "s2", "s3", "bpp", "mse", "best_loss",
               "best_epoch", "lr/g_a", "trainable_params")


@pytest.fixture(scope="module")
def loop_config(photo_dirs, pretrained_tiny_path):
    from stoppers import budget_settings

    return TrialSpec(model="tiny", checkpoint=str(pretrained_tiny_path),
                     train_dir=str(photo_dirs / "train"), val_dir=str(photo_dirs / "val"),
                     max_side=192, checkpoint_every=EVERY,
                     stopper=dict(budget_settings(EPOCHS), patience=1, min_patience=1,
                                  max_patience=2)).replace(
        lmbda=0.0483, batch_size=4, crops_per_image=1, epochs=EPOCHS, seed=0)


@pytest.fixture(scope="module")
def uninterrupted(loop_config, tmp_path_factory):
    from trainables.trial import run_trial

    # As a sweep trial that Ray assigned no GPU: the CPU on every machine, where resume is
    # bit-exact (cuDNN's kernels are not; test_a_trial_trains_on_a_gpu_with_bf16_autocast).
    session = RecordingSession(tmp_path_factory.mktemp("uninterrupted"))
    last = run_trial(loop_config, session, gpu_ids=[])
    return session, last


def test_a_trial_ends_where_its_stopper_says_or_at_the_budget(uninterrupted, loop_config):
    from stoppers import AdaptivePatience

    session, last = uninterrupted
    metrics = [m for m, _ in session.reports]
    assert [m["epoch"] for m in metrics] == list(range(len(metrics)))
    assert last == metrics[-1] and last["device"] == "cpu" and last["pid"] == os.getpid()
    replay, stop = AdaptivePatience(**loop_config.stopper), None
    for m in metrics:
        replay.step(m["epoch"], {s: m[s] for s in ("s1", "s2", "s3")})
        if replay.should_stop():
            stop = m["epoch"]
            break
    assert last["epoch"] == (EPOCHS - 1 if stop is None else stop)
    assert last["patience/all_stopped"] == (stop is not None)
    # The running best is the best reported loss and its epoch.
    for i, m in enumerate(metrics):
        best = min(range(i + 1), key=lambda j: metrics[j]["loss"])
        assert (m["best_loss"], m["best_epoch"]) == (metrics[best]["loss"], best)


def test_a_state_is_saved_on_a_new_best_at_the_end_and_every_n_epochs(uninterrupted):
    session, _ = uninterrupted
    for i, (m, saved) in enumerate(session.reports):
        expected = (m["best_epoch"] == m["epoch"] or i == len(session.reports) - 1
                    or (m["epoch"] + 1) % EVERY == 0)
        assert (saved is not None) == expected, m["epoch"]


def test_a_restored_trial_reports_what_it_would_have_without_the_interruption(
        uninterrupted, loop_config, tmp_path):
    """Weights, optimiser, schedule, data order and the stopper's state all come back: the
    epochs after the restored state are reported exactly as without the interruption."""
    from trainables.trial import run_trial

    session, _ = uninterrupted
    # The last state saved before the trial's end (the first epoch is always a new best).
    saved = [i for i, (_, state) in enumerate(session.reports[:-1]) if state is not None]
    assert saved, "the trial ended at its first epoch"
    resumed = RecordingSession(tmp_path, restore_from=session.reports[saved[-1]][1])
    run_trial(loop_config, resumed, gpu_ids=[])
    expected = [{k: m[k] for k in RESULT_KEYS if k in m} | {
        k: v for k, v in m.items() if k.startswith("patience/")}
        for m, _ in session.reports[saved[-1] + 1:]]
    got = [{k: m[k] for k in RESULT_KEYS if k in m} | {
        k: v for k, v in m.items() if k.startswith("patience/")} for m, _ in resumed.reports]
    assert got == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_trial_trains_on_a_gpu_with_bf16_autocast(loop_config, tmp_path):
    """The GPU path (channels_last, pinned memory, bf16 autocast in training and validation):
    finite per-scale losses that add up, reported from the GPU."""
    from trainables.trial import run_trial

    session = RecordingSession(tmp_path)
    last = run_trial(loop_config.replace(amp=True), session)
    assert last["device"] == "cuda" and len(session.reports) >= 1
    for metrics, _ in session.reports:
        assert math.isfinite(metrics["loss"])
        assert metrics["s1"] + metrics["s2"] + metrics["s3"] + metrics["bpp_z"] == pytest.approx(
            metrics["loss"], rel=1e-5)
