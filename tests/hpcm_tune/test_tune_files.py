"""hpcm_tune.tune_files on files in the formats Ray Tune writes (an experiment folder with its
state, trial folders with params.json, result.json and checkpoint folders).

The same repair on a real sweep's state: tests/trainables/test_sweep.py."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import tempfile
from pathlib import Path

import pytest

from hpcm_tune.names import MARKER
from hpcm_tune.tune_files import (TornStateError, checkpoint_at, experiment_state,
                                  latest_checkpoint, per_epoch, read_params, read_results,
                                  repair_torn_state, state_file_intact, sweep_options,
                                  trial_dirs, trial_id_from_dirname)

STAMP = "2026-11-28_14-42-41"


def _state(*trials: tuple[str, str, str | None]) -> bytes:
    """An experiment_state file as Tune writes it: per trial, its static and runtime
    metadata, each a JSON string of its own."""
    data = [[json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"trial_{tid}"}),
             json.dumps({"num_failures": 0, "error_filename": error})]
            for tid, status, error in trials]
    return json.dumps({"trial_data": data, "runner_data": {}, "stats": {}}).encode()


def _row(epoch: int, loss: float, **extra) -> str:
    return json.dumps({"loss": loss, "epoch": epoch, "training_iteration": epoch + 1,
                       "trial_id": "aa11", "config": {"lmbda": 0.01}, **extra})


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """Two recorded trials, one folder Tune never recorded; two saves of the state."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / MARKER).write_text(json.dumps({"epochs": 4, "scheduler": "asha"}))
    old = root / "experiment_state-2026-11-28_14-40-00.json"
    old.write_bytes(_state(("aa11", "RUNNING", None)))
    # A resumed driver's final upload copies every session's state file anew, the older
    # ones possibly last: the latest save is the latest session's, whatever the file times.
    os.utime(old, (4e9, 4e9))
    (root / f"experiment_state-{STAMP}.json").write_bytes(
        _state(("aa11", "TERMINATED", None), ("bb22", "ERROR", "error.txt")))
    trial = root / "trial_aa11"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps({"lmbda": 0.01, "epochs": 4}))
    # Epoch 1 reported again after a restore (the second report wins); Tune writes NaN;
    # the last line is torn (a killed driver, or a report being written).
    (trial / "result.json").write_text("\n".join([
        _row(0, 2.0, checkpoint_dir_name="checkpoint_000000"),
        _row(1, 1.5, checkpoint_dir_name="checkpoint_000001"),
        _row(1, 1.0, checkpoint_dir_name="checkpoint_000002", psnr=float("nan")),
        _row(2, 1.2)[:25]]) + "\n")
    for name in ("checkpoint_000000", "checkpoint_000002"):  # Tune kept the best and latest
        (trial / name).mkdir()
    (root / "trial_bb22").mkdir()
    (root / "trial_bb22" / "params.json").write_text("{")  # unreadable
    (root / "trial_cc33").mkdir()
    (root / "trial_cc33" / "result.json").write_text("")
    (root / "not_a_trial").mkdir()
    return root


def test_trial_folders_and_what_the_latest_state_records(experiment):
    assert [d.name for d in trial_dirs(experiment)] == ["trial_aa11", "trial_bb22",
                                                        "trial_cc33"]
    state = experiment_state(experiment)
    assert set(state) == {"trial_aa11", "trial_bb22"}  # trial_cc33: never recorded
    assert state["trial_aa11"].status == "TERMINATED"  # the latest save, not the older one
    assert (state["trial_bb22"].status, state["trial_bb22"].error_filename) == ("ERROR",
                                                                              "error.txt")
    assert experiment_state(experiment / "not_a_trial") == {}
    assert sweep_options(experiment) == {"epochs": 4, "scheduler": "asha"}
    assert sweep_options(experiment / "not_a_trial") == {}


def test_params_and_result_rows_of_a_trial(experiment, caplog):
    assert read_params(experiment / "trial_aa11") == {"lmbda": 0.01, "epochs": 4}
    assert read_params(experiment / "trial_bb22") == {}  # unreadable: no config
    with caplog.at_level(logging.WARNING, "hpcm_tune.tune_files"):
        rows = read_results(experiment / "trial_aa11")
    assert [(r["epoch"], r["loss"]) for r in rows] == [(0, 2.0), (1, 1.5), (1, 1.0)]
    assert "skipped a torn line of" in caplog.text and "trial_aa11" in caplog.text
    assert all("config" not in r for r in rows) and math.isnan(rows[2]["psnr"])
    history = per_epoch(rows)
    assert [(h["epoch"], h["loss"]) for h in history] == [(0, 2.0), (1, 1.0)]
    assert per_epoch([{"training_iteration": 1}, {"training_iteration": 2}]) == [
        {"training_iteration": 1, "epoch": 0}, {"training_iteration": 2, "epoch": 1}]
    assert read_results(experiment / "trial_bb22") == []


def test_checkpoints_of_a_trial(experiment):
    trial = experiment / "trial_aa11"
    history = per_epoch(read_results(trial))
    assert checkpoint_at(trial, history, 1) == trial / "checkpoint_000002"
    assert checkpoint_at(trial, history, 0) == trial / "checkpoint_000000"
    (trial / "checkpoint_000000").rmdir()  # Tune deleted it: not the best any more
    assert checkpoint_at(trial, history, 0) is None
    assert latest_checkpoint(trial) == trial / "checkpoint_000002"
    assert latest_checkpoint(experiment / "trial_bb22") is None


@pytest.mark.parametrize("name, trial_id", [
    ("trial_aa11", "aa11"), ("hpcm_trainable_3f2a1_00002_2_lmbda=0.01", "3f2a1"),
    ("some_folder", "some_folder")])
def test_trial_id_from_the_folder_name(name, trial_id):
    assert trial_id_from_dirname(name) == trial_id


def test_state_files_are_intact_only_when_complete():
    state, searcher = _state(("aa11", "RUNNING", None)), pickle.dumps({"points": [1, 2]})
    assert state_file_intact(state) and state_file_intact(searcher)
    for torn in (state[:len(state) // 2], searcher[:-1], b""):
        assert not state_file_intact(torn)


def _staging(tmp_path: Path, monkeypatch, name: str) -> Path:
    """Ray's staging folder of the driver's artifacts, under a temp dir of this test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    folder = (tmp_path / "tmp" / "ray" / "session_2026-11-28_14-42-30_1_1" / "artifacts" /
              STAMP / name / "driver_artifacts")
    folder.mkdir(parents=True)
    return folder


def test_torn_state_is_restored_from_the_staging_copy(experiment, tmp_path, monkeypatch):
    staging = _staging(tmp_path, monkeypatch, "sweep")
    state = experiment / f"experiment_state-{STAMP}.json"
    searcher = experiment / f"searcher-state-{STAMP}.pkl"
    intact_state, intact_searcher = state.read_bytes(), pickle.dumps({"points": [1, 2]})
    (staging / state.name).write_bytes(intact_state)
    (staging / searcher.name).write_bytes(intact_searcher)
    state.write_bytes(intact_state[:100])  # what a SIGKILL mid-copy leaves
    searcher.write_bytes(intact_searcher[:-3])
    repair_torn_state(experiment, "sweep")
    assert state.read_bytes() == intact_state
    assert searcher.read_bytes() == intact_searcher
    assert experiment_state(experiment)["trial_aa11"].status == "TERMINATED"


def test_torn_state_without_an_intact_copy_refuses_to_resume(experiment, tmp_path,
                                                            monkeypatch):
    staging = _staging(tmp_path, monkeypatch, "sweep")
    state = experiment / f"experiment_state-{STAMP}.json"
    torn = state.read_bytes()[:100]
    state.write_bytes(torn)
    (staging / state.name).write_bytes(torn)  # the staging copy is torn too
    with pytest.raises(TornStateError, match="is damaged"):
        repair_torn_state(experiment, "sweep")
    with pytest.raises(TornStateError, match="is damaged"):
        repair_torn_state(experiment, "another-sweep")  # no copy of this experiment
    assert state.read_bytes() == torn  # never replaced by something else


def test_intact_state_is_left_alone(experiment, tmp_path, monkeypatch):
    staging = _staging(tmp_path, monkeypatch, "sweep")
    state = experiment / f"experiment_state-{STAMP}.json"
    before = state.read_bytes()
    (staging / state.name).write_bytes(_state())  # a different (older) staging copy
    repair_torn_state(experiment, "sweep")
    assert state.read_bytes() == before
