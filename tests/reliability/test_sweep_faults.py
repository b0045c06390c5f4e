"""Faults and bad input that need a Ray cluster: real processes, real files, one cluster.

A ``ray.cluster_utils.Cluster`` (one worker node, 2 CPUs, one fake GPU) serves the module;
the CLI runs in-process (``tune_main.main``, which connects with ``--address`` and
disconnects at the end) or, where a driver must be killed, as a subprocess that kills
itself at a fixed point of the sweep (``tests/killed_driver.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import signal
from pathlib import Path

import optuna
import pytest
import ray
from ray.cluster_utils import Cluster

import tune_main
from tests.killed_driver import KillDriverOnce, interrupt_cli_run, kill_cli_run, stop_epochs
from tests.reliability.helpers import cli_error, tree, write_garbage, write_png



@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=2, num_gpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


@contextlib.contextmanager
def connected(cluster):
    ray.init(address=cluster.address)
    try:
        yield
    finally:
        ray.shutdown()


def _run_args(cluster, photo_dirs: Path, checkpoint: Path, storage: Path, name: str,
              *extra: str) -> list[str]:
    return ["run", "--address", cluster.address, "--checkpoint", str(checkpoint),
            "--lmbda", "0.0483",
            "--train-dir", str(photo_dirs / "train"), "--val-dir", str(photo_dirs / "val"),
            "--batch-size", "4", "--crops-per-image", "1", "--epochs", "3",
            "--num-samples", "1", "--max-failures", "0", "--storage-path", str(storage),
            "--name", name, "--patience", "1", "--min-patience", "1", "--max-patience", "2",
            *extra]


# -- bad input that reaches the cluster -------------------------------------------------
def test_more_gpus_per_trial_than_the_cluster_has(cluster, photo_dirs, tmp_path, capsys,
                                                  pretrained_tiny_path):
    line = cli_error(capsys, _run_args(cluster, photo_dirs, pretrained_tiny_path,
                                       tmp_path / "results", "gpus", "--gpus-per-trial", "2"))
    assert "2 GPUs" in line and "largest node has 2 CPUs and 1 GPUs" in line
    assert not (tmp_path / "results" / "gpus").exists()


def test_epoch_budget_below_the_search_space_minimum(cluster, photo_dirs, tmp_path, capsys,
                                                     pretrained_tiny_path):
    argv = _run_args(cluster, photo_dirs, pretrained_tiny_path, tmp_path / "results", "short")
    argv[argv.index("--epochs") + 1] = "2"
    assert "at least 3 epochs" in cli_error(capsys, argv)
    assert not (tmp_path / "results" / "short").exists()


@pytest.mark.parametrize("url", ["nosuchdb://user@host/db", "sqlite:////nonexistent/dir/s.db",
                                 "not a url"])
def test_optuna_storage_that_cannot_be_opened(url, cluster, photo_dirs, tmp_path, capsys,
                                              pretrained_tiny_path):
    line = cli_error(capsys, _run_args(cluster, photo_dirs, pretrained_tiny_path,
                                       tmp_path / "results", "db", "--optuna-storage", url))
    assert "cannot open --optuna-storage" in line and url in line
    assert not (tmp_path / "results" / "db").exists()


def test_unwritable_storage_path(cluster, photo_dirs, tmp_path, capsys, pretrained_tiny_path):
    blocker = tmp_path / "a-file"  # a folder cannot be made under a file, even as root
    blocker.write_text("x")
    line = cli_error(capsys, _run_args(cluster, photo_dirs, pretrained_tiny_path,
                                       blocker / "results", "unwritable"))
    assert "--storage-path" in line and str(blocker) in line


@pytest.mark.parametrize("kind, message", [("empty", "no .png/.jpg/.jpeg file"),
                                           ("unreadable", "could be read"),
                                           ("small", "smaller than crop_size=128")])
def test_run_refuses_a_train_folder_without_usable_images(kind, message, cluster, photo_dirs,
                                                          tmp_path, capsys,
                                                          pretrained_tiny_path):
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "unreadable":
        write_garbage(folder / "a.png")
    elif kind == "small":
        write_png(folder / "a.png", (100, 80))
    argv = _run_args(cluster, photo_dirs, pretrained_tiny_path, tmp_path / "results", "data")
    argv[argv.index("--train-dir") + 1] = str(folder)
    line = cli_error(capsys, argv)
    assert message in line and str(folder) in line
    assert not (tmp_path / "results" / "data").exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "tune-only", "marker-only"])
def test_resume_refuses_what_this_project_did_not_make(kind, cluster, tmp_path, capsys):
    path = tmp_path / "experiment"
    if kind != "missing":
        path.mkdir()
    if kind == "tune-only":  # a Tune experiment of someone else: never unpickled
        (path / "tuner.pkl").write_bytes(b"\x80\x04K\x01.")
    if kind == "marker-only":
        (path / "hpcm_tune_experiment.json").write_text(
            json.dumps({"name": "experiment", "storage_path": str(tmp_path)}))
    before = tree(path)
    line = cli_error(capsys, ["resume", str(path), "--address", cluster.address])
    assert str(path) in line
    assert {"missing": "does not exist", "marker-only": "no Tune experiment state"}.get(
        kind, "not a hpcm-tune experiment") in line
    assert tree(path) == before


# -- --overwrite: the old experiment goes only once the new sweep has started ------------
def _old_experiment(storage: Path, name: str) -> Path:
    experiment = storage / name
    (experiment / "trial_old").mkdir(parents=True)
    (experiment / "hpcm_tune_experiment.json").write_text(json.dumps({"name": name}))
    (experiment / "trial_old" / "result.json").write_text('{"loss": 1.0}\n')
    return experiment


def test_overwrite_puts_the_old_experiment_back_when_a_check_on_the_cluster_refuses(
        cluster, photo_dirs, tmp_path, capsys, pretrained_tiny_path):
    experiment = _old_experiment(tmp_path / "results", "mine")
    before = tree(experiment)
    # Only the cluster knows that no node has 2 GPUs: this check runs once Ray is up.
    line = cli_error(capsys, _run_args(cluster, photo_dirs, pretrained_tiny_path,
                                       tmp_path / "results", "mine", "--lmbda", "0.0483",
                                       "--overwrite", "--gpus-per-trial", "2"))
    assert "largest node has 2 CPUs and 1 GPUs" in line
    assert tree(experiment) == before
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["mine"]  # nothing left aside


def test_overwrite_replaces_the_old_experiment_once_the_new_sweep_runs(
        cluster, photo_dirs, tmp_path, capsys, caplog, pretrained_tiny_path):
    experiment = _old_experiment(tmp_path / "results", "mine")
    with caplog.at_level(logging.INFO):
        assert tune_main.main(_run_args(cluster, photo_dirs, pretrained_tiny_path,
                                        tmp_path / "results", "mine", "--lmbda", "0.0483",
                                        "--overwrite")) == 0
    assert not (experiment / "trial_old").exists()
    assert json.loads((experiment / "hpcm_tune_experiment.json").read_text())["epochs"] == 3
    assert len(list(experiment.glob("trial_*/result.json"))) == 1
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["mine"]
    assert any("the new sweep has started: removed the previous experiment" in r.getMessage()
               for r in caplog.records)


# -- a trial that diverges --------------------------------------------------------------
@pytest.fixture(scope="module")
def diverged(cluster, photo_dirs, tmp_path_factory, pretrained_tiny_path):
    """Two trials side by side: base_lr 1e-4, and base_lr 100, which makes the tiny model's
    validation loss NaN in its first epoch (measured; no fault is injected). Measured on a
    2-core EPYC: finite up to base_lr 0.5, NaN from 1.0; 100 leaves a wide margin for other
    CPUs' floating-point paths and their own pre-trained tiny."""
    from stoppers import budget_settings
    from trainables.given_configs import GivenConfigs
    from trainables.spec import TrialSpec
    from trainables.sweep import SweepOptions, run_sweep

    trial = TrialSpec(model="tiny", checkpoint=str(pretrained_tiny_path),
                      train_dir=str(photo_dirs / "train"), val_dir=str(photo_dirs / "val"),
                      stopper=dict(budget_settings(3), patience=1, min_patience=1)).replace(
        lmbda=0.0483, batch_size=4, crops_per_image=1, context_lr_ratio=0.1,
        freeze_strategy="none")
    options = SweepOptions(name="diverge", storage_path=str(tmp_path_factory.mktemp("nan")),
                           trial=trial, epochs=3, num_samples=2, max_failures=0,
                           max_concurrent=2, scheduler="fifo")
    with connected(cluster):
        results = run_sweep(options, searcher=GivenConfigs(
            [{"base_lr": 1e-4}, {"base_lr": 100.0}]))
    return options, results


REASON = "the trial diverged"


def test_diverging_trial_fails_alone_with_its_reason(diverged):
    _, results = diverged
    assert len(results) == 2 and len(results.errors) == 1
    good = next(r for r in results if r.error is None)
    bad = next(r for r in results if r.error is not None)
    assert good.config["base_lr"] == 1e-4 and bad.config["base_lr"] == 100.0
    # The sweep went on: the other trial trained to its stopper's end with finite losses.
    assert math.isfinite(good.metrics["best_loss"]) and good.metrics["training_iteration"] >= 2
    assert REASON in str(bad.error)
    assert REASON in (Path(bad.path) / "error.txt").read_text()


def test_summary_counts_a_trial_that_diverged_before_its_first_report(diverged):
    from trainables.sweep import summarize

    options, results = diverged
    summary = summarize(results, options)
    assert summary["trials"] == 2 and summary["errors"] == 1


def test_plain_resume_leaves_the_diverged_trial_alone(diverged, cluster, capsys):
    options, results = diverged
    bad = next(r for r in results if r.error is not None)
    error_file = Path(bad.path) / "error.txt"
    failures = error_file.read_text().count("Failure #")
    assert tune_main.main(["resume", options.path, "--address", cluster.address]) == 0
    assert "(1 errored" in capsys.readouterr().out
    assert error_file.read_text().count("Failure #") == failures


def test_resume_retry_errored_runs_the_diverged_trial_again(diverged, cluster, capsys, caplog):
    options, results = diverged
    good = next(r for r in results if r.error is None)
    bad = next(r for r in results if r.error is not None)
    error_file = Path(bad.path) / "error.txt"
    failures = error_file.read_text().count("Failure #")
    good_rows = (Path(good.path) / "result.json").read_text()

    caplog.clear()
    assert tune_main.main(["resume", options.path, "--retry-errored",
                           "--address", cluster.address]) == 0
    out = capsys.readouterr().out
    assert "sweep finished" in out and "(1 errored" in out
    assert any("unpickles the experiment state" in r.getMessage() for r in caplog.records)
    # The diverged trial ran again (one more failure, same reason); the finished one did not.
    text = error_file.read_text()
    assert text.count("Failure #") == failures + 1
    assert REASON in text.split("Failure #")[-1]
    assert (Path(good.path) / "result.json").read_text() == good_rows


# -- the driver is killed: the Optuna study continues -----------------------------------
def test_ctrl_c_ends_the_sweep_as_interrupted_and_resume_finishes_it(
        cluster, photo_dirs, tmp_path, capsys, caplog, pretrained_tiny_path):
    # Tune ends the running trials alike when a sweep's budget is spent and on Ctrl-C; the
    # console and the summary must not call them culled or stopped by a budget.
    storage = tmp_path / "results"
    argv = _run_args(cluster, photo_dirs, pretrained_tiny_path, storage, "ctrl-c",
                     "--max-concurrent", "2")
    argv[argv.index("--num-samples") + 1] = "2"
    proc = interrupt_cli_run(argv, KillDriverOnce(trial_number=1, trained_epochs=1,
                                                  marker=tmp_path / "interrupted-marker",
                                                  sig=signal.SIGINT))
    # Both trials were running (the second reports before the first's second epoch ends,
    # or had not reported yet); neither reached the epoch the scheduler first judges (2 of 6).
    assert "=== sweep interrupted after" in proc.stdout, proc.stdout
    assert re.search(r"0 culled by the scheduler, [12] interrupted\)", proc.stdout)
    assert "interrupted (resume continues it)" in proc.stdout
    assert "culled by the scheduler;" not in proc.stdout and "budget" not in proc.stdout
    # analyze counts no compute as saved while trials have not ended.
    assert tune_main.main(["analyze", str(storage / "ctrl-c")]) == 0
    assert re.search(r"epochs used \d+ of 6 \(so far; [12] running, pending or interrupted\)",
                     capsys.readouterr().out)
    # A warm start from it says that it tells trials that have not ended.
    from trainables.sweep import read_marker
    from trainables.warm_start import load_warm_start

    with caplog.at_level(logging.INFO, logger="trainables.warm_start"):
        warm = load_warm_start(str(storage / "ctrl-c"), read_marker(str(storage / "ctrl-c")))
    assert warm.same_task and any(
        f"{len(warm.trials)} of them not ended, told at their best so far" in r.getMessage()
        for r in caplog.records)

    assert tune_main.main(["resume", str(storage / "ctrl-c"), "--address",
                           cluster.address]) == 0
    out = capsys.readouterr().out
    assert "=== sweep finished in" in out and "trials: 2 (0 errored" in out
    assert "interrupted" not in out
    assert tune_main.main(["analyze", str(storage / "ctrl-c")]) == 0
    assert re.search(r"epochs used \d+ of 6 \(\d+% saved\)", capsys.readouterr().out)
    assert len(stop_epochs(storage / "ctrl-c")) == 2  # each config once: none run twice


def _staged_checkpoints() -> set[Path]:
    """The checkpoint folders trials stage in the (one local node's) temp folder."""
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("hpcm-ckpt-*"))


def test_killed_driver_resume_continues_the_optuna_study(cluster, photo_dirs, tmp_path, capsys,
                                                         pretrained_tiny_path):
    staged_before = _staged_checkpoints()
    storage = tmp_path / "results"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    num_samples = 4
    argv = _run_args(cluster, photo_dirs, pretrained_tiny_path, storage, "killed",
                     "--optuna-storage", url, "--max-concurrent", "2")
    argv[argv.index("--num-samples") + 1] = str(num_samples)
    # Killed at the second trial's first report: two trials asked of Optuna, none of the
    # later ones finished.
    kill_cli_run(argv, KillDriverOnce(trial_number=2, trained_epochs=1,
                                      marker=tmp_path / "killed-marker"))
    experiment = storage / "killed"
    study = optuna.load_study(study_name="killed", storage=url)
    assert len(study.trials) >= 2  # the kill came mid-sweep
    assert sum(t.state.name == "COMPLETE" for t in study.trials) < num_samples

    assert tune_main.main(["resume", str(experiment), "--address", cluster.address]) == 0
    assert f"trials: {num_samples} (0 errored" in capsys.readouterr().out

    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    # The trial reporting when the driver died left its staged checkpoint in the worker's
    # temp folder; its resumed attempt removed it.
    assert _staged_checkpoints() <= staged_before
    keys = ("context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch", "unfreeze_context_epoch")
    tune_configs = sorted(json.dumps({k: t.config.get(k) for k in keys if k in t.config},
                                     sort_keys=True) for t in analysis.trials)
    study = optuna.load_study(study_name="killed", storage=url)
    # None left RUNNING: a trial asked for just before the kill, which Tune never recorded,
    # is told FAIL on resume and asked again (tests/trainables/test_optuna_search.py makes
    # that case happen every time).
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == num_samples, [t.state.name for t in study.trials]
    assert all(t.state.name == "FAIL" for t in study.trials if t not in complete)
    study_configs = sorted(json.dumps(t.params, sort_keys=True) for t in complete)
    assert len(set(study_configs)) == num_samples  # no config was evaluated twice
    assert study_configs == tune_configs
    # Optuna holds each trial's best loss, as Tune saw it.
    best = sorted(analysis.trial_dataframes[t.trial_id]["loss"].min() for t in analysis.trials)
    assert sorted(t.value for t in complete) == pytest.approx(best)
