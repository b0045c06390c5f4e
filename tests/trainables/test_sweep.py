"""The sweep service on a real local Ray cluster with fake GPUs, real Optuna and real photos.

One Ray cluster serves the whole module (starting Ray costs seconds). Drivers that are
killed run as subprocesses connected to that cluster and kill themselves at a fixed point
of the sweep (``tests/killed_driver.py``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.tune import Callback

from stoppers import AdaptivePatience, budget_settings
from tests.killed_driver import (KillDriverOnce, config_key, kill_cli_run, kill_sweep,
                                 resume_cli, stop_epochs)
from trainables.spec import TrialSpec
from trainables.sweep import SweepOptions, resume_sweep, run_sweep, summarize

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 6
# The CLI's budget settings with the patience flags the killed-driver test passes, so that
# it (going through the CLI) compares like with like.
STOPPER = dict(budget_settings(EPOCHS), patience=2, min_patience=1, max_patience=4)


@pytest.fixture(scope="module")
def cluster():
    """A head without GPUs and one worker node declaring two fake GPUs."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=2, num_gpus=2)
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c
    ray.shutdown()
    c.shutdown()


def _options(tmp_path, photo_dirs, checkpoint, name, trial_lmbda: float = 0.0483,
             **overrides) -> SweepOptions:
    trial = TrialSpec(model="tiny", checkpoint=str(checkpoint),
                      train_dir=str(photo_dirs / "train"), val_dir=str(photo_dirs / "val"),
                      stopper=STOPPER).replace(lmbda=trial_lmbda, batch_size=4,
                                               crops_per_image=2)
    values = dict(name=name, storage_path=str(tmp_path / "results"), trial=trial,
                  epochs=EPOCHS, num_samples=3, preset="seed-freeze", seed=0,
                  cpus_per_trial=1, gpus_per_trial=0.5, max_failures=2, scheduler="fifo")
    values.update(overrides)
    return SweepOptions(**values)


def _stop_epochs(results) -> dict[str, int]:
    """Last reported epoch per config (configs are distinct within one sweep)."""
    return {config_key(r.config): int(r.metrics["epoch"]) for r in results}


def _replayed_stop_epoch(history, settings: dict) -> int | None:
    """Where the plain AdaptivePatience with the trial's own stopper ``settings`` (from its
    config) stops on the reported values: the trajectory, and so the stop epoch, differs
    between CPUs' floating-point paths; this rule does not."""
    patience = AdaptivePatience(**settings)
    for _, row in history.iterrows():
        patience.step(int(row["epoch"]), {s: row[s] for s in ("s1", "s2", "s3")})
        if patience.should_stop():
            return int(row["epoch"])
    return None


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory, photo_dirs, pretrained_tiny_path):
    """An uninterrupted sweep: the ground truth the fault tests compare against."""
    tmp = tmp_path_factory.mktemp("reference")
    options = _options(tmp, photo_dirs, pretrained_tiny_path, "reference",
                       optuna_storage=f"sqlite:///{tmp / 'study.db'}")
    return options, run_sweep(options)


def test_sweep_reports_per_scale_metrics_and_stops_by_patience(reference):
    options, results = reference
    assert len(results) == 3 and not results.errors
    for result in results:
        history = result.metrics_dataframe
        for key in ("s1", "s2", "s3", "loss", "best_loss", "bpp", "bpp_s1", "bpp_s2", "bpp_s3",
                    "bpp_z", "mse", "psnr", "lr/g_a", "lr/context", "trainable_params",
                    "patience/s1/patience", "patience/s3/best_epoch", "images_per_s"):
            assert key in history, key
        # The running best is the best of the reported losses, never the last one.
        assert list(history["best_loss"]) == list(history["loss"].cummin())
        assert history["s1"].add(history["s2"]).add(history["s3"]).add(
            history["bpp_z"]).tolist() == pytest.approx(history["loss"].tolist(), rel=1e-6)
        # The trial stopped exactly where the plain AdaptivePatience says, or at the budget.
        stop = _replayed_stop_epoch(history, result.config["stopper"])
        assert int(history["epoch"].iloc[-1]) == (EPOCHS - 1 if stop is None else stop)
        # Fake GPUs: Ray assigned one, torch sees none, the trial fell back to CPU.
        assert result.metrics["device"] == "cpu" and result.metrics["gpu_ids"] != ""
    summary = summarize(results, options)
    # How many trials stop early depends on the trajectory (the CPU): count what the rule says.
    replayed = [_replayed_stop_epoch(r.metrics_dataframe, r.config["stopper"]) for r in results]
    assert summary["stopped_early"] == sum(e is not None and e < EPOCHS - 1 for e in replayed)
    assert summary["epochs_used"] == sum(len(r.metrics_dataframe) for r in results)
    assert summary["epochs_budget"] == 3 * EPOCHS


def _ran_together(a, b) -> bool:
    """Whether trial ``a`` reported an epoch strictly between ``b``'s first and last reports
    (Tune's whole-second timestamps): trials run one after the other never do."""
    first, last = b["timestamp"].min(), b["timestamp"].max()
    return bool(((a["timestamp"] > first) & (a["timestamp"] < last)).any())


def test_two_trials_share_a_fake_gpu_at_half_a_gpu_each(reference):
    _, results = reference
    for r in results:  # one GPU id each, and half of it counted as the trial's device share
        assert len(r.metrics["gpu_ids"].split(",")) == 1 and r.metrics["devices"] == 0.5
    # Two trials (two worker processes) held the same GPU at the same time.
    shared = [(a, b) for i, a in enumerate(results) for b in list(results)[i + 1:]
              if a.metrics["gpu_ids"] == b.metrics["gpu_ids"]
              and a.metrics["pid"] != b.metrics["pid"]
              and (_ran_together(a.metrics_dataframe, b.metrics_dataframe)
                   or _ran_together(b.metrics_dataframe, a.metrics_dataframe))]
    assert shared, [(r.metrics["gpu_ids"], r.metrics_dataframe["timestamp"].tolist())
                    for r in results]


def test_conditional_columns_only_for_progressive(reference):
    _, results = reference
    df = results.get_dataframe()
    progressive = df["config/freeze_strategy"] == "progressive"
    assert progressive.sum() == 1
    assert df.loc[progressive, "config/unfreeze_h_epoch"].notna().all()
    assert df.loc[~progressive, "config/unfreeze_h_epoch"].isna().all()
    assert (df.loc[progressive, "config/unfreeze_h_epoch"]
            < df.loc[progressive, "config/unfreeze_context_epoch"]).all()


def test_optuna_learns_each_trials_best_loss(reference):
    options, results = reference
    study = optuna.load_study(study_name=options.name, storage=options.optuna_storage)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 3
    best_by_params = {json.dumps(r.config.get("freeze_strategy")): r.metrics_dataframe["loss"].min()
                      for r in results}
    for t in finished:
        assert t.value == pytest.approx(best_by_params[json.dumps(t.params["freeze_strategy"])])
        assert len(t.intermediate_values) >= 1


class KillWorkerOnce(Callback):
    """SIGKILL a trial's worker process (pid from its own report) at a given epoch, once."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.killed: list[int] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.killed and result.get("epoch") == self.epoch:
            self.killed.append(result["pid"])
            os.kill(result["pid"], signal.SIGKILL)


def test_killed_trial_resumes_from_its_checkpoint_and_stops_on_the_same_epoch(
        cluster, reference, tmp_path, photo_dirs, pretrained_tiny_path):
    _, expected = reference
    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, "killed-trial")
    killer = KillWorkerOnce(epoch=1)
    results = run_sweep(options, callbacks=[killer])
    assert killer.killed, "no worker was killed"
    assert not results.errors
    assert _stop_epochs(results) == _stop_epochs(expected)
    for result in results:
        epochs = result.metrics_dataframe["epoch"].tolist()
        # The epoch after the checkpoint is reported once more by the restored trial;
        # its metrics are identical to those of the first attempt.
        assert sorted(set(epochs)) == list(range(epochs[-1] + 1))
        history = result.metrics_dataframe.drop_duplicates("epoch", keep="last")
        twice = result.metrics_dataframe[result.metrics_dataframe["epoch"].duplicated(keep=False)]
        for _, rows in twice.groupby("epoch"):
            assert rows["loss"].nunique() == 1
        # It stopped where the plain AdaptivePatience says, or ran to the budget.
        stop = _replayed_stop_epoch(history, result.config["stopper"])
        assert epochs[-1] == (EPOCHS - 1 if stop is None else stop)


def test_killed_driver_resumes_with_the_same_stop_epochs(
        cluster, reference, tmp_path, photo_dirs, pretrained_tiny_path):
    """The CLI's driver is killed when its second trial reports its second epoch; `resume`
    ends every trial where the uninterrupted sweep ended it."""
    _, expected = reference
    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, "killed-driver")
    argv = ["run", "--address", cluster.address,
            "--checkpoint", str(pretrained_tiny_path), "--train-dir", options.trial.train_dir,
            "--val-dir", options.trial.val_dir, "--lmbda", "0.0483", "--batch-size", "4",
            "--crops-per-image", "2", "--epochs", str(EPOCHS), "--num-samples", "3",
            "--preset", "seed-freeze", "--gpus-per-trial", "0.5",
            "--storage-path", options.storage_path, "--name", options.name,
            "--patience", "2", "--min-patience", "1", "--max-patience", "4",
            "--scheduler", "fifo"]
    kill_cli_run(argv, KillDriverOnce(trial_number=2, trained_epochs=2,
                                      marker=tmp_path / "killed"))
    # Killed while it handled that report: the trial has at most those two epochs on disk.
    killed = (tmp_path / "killed").read_text()
    assert len((Path(options.path) / f"trial_{killed}" / "result.json").read_text(
    ).splitlines()) <= 2

    resumed = resume_cli(options.path, cluster.address)
    assert "sweep finished" in resumed.stdout
    assert stop_epochs(options.path) == _stop_epochs(expected)


# One trial at a time, so that the scheduler's decisions do not depend on which of two trials
# reaches a rung first; all four trials are preset points, so no sampler randomness either.
ONE_AT_A_TIME = dict(preset="seed-ablation", num_samples=4, max_concurrent=1)


# Hyperband at seed 2: the four preset points fall in both of its brackets at this budget
# (asserted below), so the rungs are rebuilt bracket by bracket. Leader-gap: the curves and
# the leader are rebuilt.
REBUILT = {"asha": "ASHA rungs rebuilt", "hyperband": "ASHA rungs rebuilt",
           "leader-gap": "leader-gap curves rebuilt"}


@pytest.mark.parametrize("scheduler, seed", [("asha", 0), ("hyperband", 2), ("leader-gap", 0)])
def test_killed_driver_resume_with_a_scheduler_keeps_its_rungs(
        cluster, tmp_path, photo_dirs, pretrained_tiny_path, scheduler, seed):
    from ray.tune import ExperimentAnalysis

    from stoppers.scheduler import make_scheduler

    # Leader-gap on the demo task's rate (lambda 0.0003), where the context-LR ratio matters:
    # ratios 1, 0.5, 0.1 (a baseline: never culled), 0.01 (several % behind on that task).
    task = dict(preset="seed-context-lr", trial_lmbda=0.0003) if scheduler == "leader-gap" else {}
    reference = _options(tmp_path / "reference", photo_dirs, pretrained_tiny_path,
                         f"{scheduler}-reference", scheduler=scheduler, seed=seed,
                         **(ONE_AT_A_TIME | task))
    results = run_sweep(reference)
    expected = _stop_epochs(results)
    # The summary counts as culled every trial that ended early but not by its scales (Tune
    # marks a stop decision's result done), and nothing as interrupted.
    early = [r for r in results if r.metrics["epoch"] + 1 < EPOCHS
             and not r.metrics["patience/all_stopped"]]
    summary = summarize(results, reference)
    assert (summary["culled"], summary["interrupted"]) == (len(early), 0)
    if scheduler == "leader-gap":
        culled = {r.metrics["trial_id"]: int(r.metrics["trained_epochs"]) for r in early}
        assert culled == _leader_gap_culls(results)
    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, f"{scheduler}-killed",
                       scheduler=scheduler, seed=seed, **(ONE_AT_A_TIME | task))
    # Killed at the third trial's first report: the first two have finished.
    kill_sweep(cluster.address, options, KillDriverOnce(trial_number=3, trained_epochs=1,
                                                        marker=tmp_path / "killed"))
    resumed = resume_cli(options.path, cluster.address)
    # The rungs were rebuilt from what the first two trials (finished before the kill) reported.
    rebuilt = [line for line in resumed.stderr.splitlines() if REBUILT[scheduler] in line]
    assert len(rebuilt) == 1, resumed.stderr[-3000:]
    assert int(rebuilt[0].split(" reports of ")[1].split()[0]) >= 2

    analysis = ExperimentAnalysis(options.path)
    assert len(analysis.trials) == 4  # none lost, none run twice
    for trial in analysis.trials:
        epochs = sorted(set(analysis.trial_dataframes[trial.trial_id]["epoch"]))
        assert epochs == list(range(len(epochs)))  # every epoch trained, once or replayed
    if scheduler != "leader-gap":
        brackets = {make_scheduler(scheduler, EPOCHS).bracket_of(t.config)
                    for t in analysis.trials}
        assert len(brackets) == (2 if scheduler == "hyperband" else 1)
    # Every trial ends where it ended without the kill: culled at the same rungs, or stopped
    # by the per-scale stopper at the same epoch.
    assert stop_epochs(options.path) == expected


def _leader_gap_culls(results) -> dict[str, int]:
    """Where the leader-gap rule culls the trials of a sweep that ran them one at a time,
    replayed on their recorded curves (the trajectories differ between CPUs' floating-point
    paths; the rule does not): trial id -> the epoch it is culled at."""
    from search_spaces import is_baseline
    from stoppers.scheduler import leader_gap_first_epoch, predicted_shortfall

    first = leader_gap_first_epoch(EPOCHS)
    kept: list[list[float]] = []  # the curves of the earlier trials not culled
    culls = {}
    for result in sorted(results, key=lambda r: r.metrics_dataframe["timestamp"].min()):
        df = result.metrics_dataframe.sort_values("trained_epochs")
        curve, scales_stopped = list(df["loss"]), list(df["patience/all_stopped"])
        for epoch in range(1, len(curve) + 1):
            if scales_stopped[epoch - 1]:  # Tune asks the per-scale stopper first
                break
            leader = min((c for c in kept if len(c) >= epoch), key=min, default=None)
            if (first <= epoch < EPOCHS and leader and not is_baseline(result.config)
                    and predicted_shortfall(curve[:epoch], leader) > 0.005):
                culls[result.metrics["trial_id"]] = epoch
                break
        if result.metrics["trial_id"] not in culls:
            kept.append(curve)
    return culls


def test_resume_refuses_a_folder_this_project_did_not_make(tmp_path):
    from trainables.sweep import SweepError

    (tmp_path / "tuner.pkl").write_bytes(b"not ours")
    with pytest.raises(SweepError, match="not a hpcm-tune experiment"):
        resume_sweep(str(tmp_path))


def test_fixed_config_at_several_lambdas_is_one_trial_per_lambda(
        cluster, tmp_path, photo_dirs, pretrained_tiny_path):
    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, "curve", epochs=2,
                       fixed_config={"context_lr_ratio": 0.2, "freeze_strategy": "entropy"},
                       lambdas=[0.05, 0.01])
    results = run_sweep(options)
    assert not results.errors
    assert sorted(r.config["lmbda"] for r in results) == [0.01, 0.05]
    assert all(r.config["context_lr_ratio"] == 0.2 for r in results)
    summary = summarize(results, options)
    assert [row["lmbda"] for row in summary["per_lambda"]] == [0.01, 0.05]
    for row, result in zip(summary["per_lambda"],
                           sorted(results, key=lambda r: r.config["lmbda"])):
        assert row["best_loss"] == result.metrics_dataframe["loss"].min()


def test_a_rate_distortion_curve_runs_every_lambda_to_its_budget_and_crowns_none(
        cluster, tmp_path, photo_dirs, pretrained_tiny_path):
    """A rate-distortion curve (``--config --lambdas``) has nothing to rank, and its losses at
    different lambdas are on different scales: a culling scheduler would cull the higher
    lambda's trial (one trial at a time, the lower lambda first: its loss is lower), and a
    "best" trial would always be the lowest lambda's."""
    from trainables.sweep import read_marker

    config = tmp_path / "best.json"
    config.write_text('{"context_lr_ratio": 0.2, "freeze_strategy": "entropy"}')
    storage = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tune_main.py"), "run", "--address", cluster.address,
         "--checkpoint", str(pretrained_tiny_path), "--lmbda", "0.0483",
         "--train-dir", str(photo_dirs / "train"), "--val-dir", str(photo_dirs / "val"),
         "--batch-size", "4", "--crops-per-image", "1", "--epochs", "4",
         "--config", str(config), "--lambdas", "0.01,0.05", "--max-concurrent", "1",
         "--gpus-per-trial", "0.5", "--storage-path", str(storage), "--name", "curve"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--config runs no search, so no scheduler culls its trials" in proc.stderr
    assert read_marker(str(storage / "curve")).scheduler == "fifo"
    rows = [json.loads(line) for trial in (storage / "curve").glob("trial_*")
            for line in (trial / "result.json").read_text().splitlines()]
    assert sorted({r["config"]["lmbda"] for r in rows}) == [0.01, 0.05]
    for lmbda in (0.01, 0.05):
        assert max(r["epoch"] for r in rows if r["config"]["lmbda"] == lmbda) == 3  # all 4
    assert "best loss:" not in proc.stdout and "lambda 0.05 " in proc.stdout
    # analyze, run as the summary printed it (a bare `python` on PATH may lack the packages):
    # a line and a table row per lambda, no winner, no best_config.json.
    (analyse,) = [line.removeprefix("analyse: ") for line in proc.stdout.splitlines()
                  if line.startswith("analyse: ")]
    shown = subprocess.run(shlex.split(analyse), cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert shown.returncode == 0, (analyse, shown.stderr[-3000:])
    printed = shown.stdout
    assert "winner" not in printed and "lead:" not in printed
    assert [line.split(" (")[0] for line in printed.splitlines()
            if line.startswith("lambda ")] == ["lambda 0.01", "lambda 0.05"]
    report = (storage / "curve" / "analysis" / "report.md").read_text()
    assert "## Rate-distortion points" in report and "## Winning config" not in report
    assert "lambdas 0.01, 0.05." in report
    assert not (storage / "curve" / "analysis" / "best_config.json").exists()


def test_confirm_trains_the_top_configs_at_new_seeds_and_judges_the_lead(
        reference, cluster, tmp_path, capsys):
    """``confirm`` on a copy of a finished sweep: its two best configs at one new seed, to
    their budget, the winner judged over both seeds; ``analyze`` reads the confirmation."""
    import tune_main
    from analysis import load_experiment
    from analysis.confirmation import COMPLETE
    from trainables.sweep import read_marker

    options, results = reference
    sweep = tmp_path / "sweep"
    shutil.copytree(options.path, sweep)
    command = [sys.executable, str(REPO / "tune_main.py"), "confirm", str(sweep),
               "--address", cluster.address, "--top", "2", "--seeds", "1"]
    proc = subprocess.run(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    top = sorted(results, key=lambda r: r.metrics["best_loss"])[:2]
    confirmed = tmp_path / "sweep-confirm"
    marker = read_marker(str(confirmed))
    assert marker.scheduler == "fifo" and marker.confirm.seeds == [1]
    assert ([c["trial_id"] for c in marker.confirm.candidates]
            == [r.metrics["trial_id"] for r in top])
    exp = load_experiment(confirmed)
    ran = sorted((config_key(row.to_dict()), int(row["seed"])) for _, row in exp.trials.iterrows())
    assert ran == sorted((config_key(r.config), 1) for r in top)
    assert set(exp.trials["stop_reason"]) <= set(COMPLETE)  # nothing culled
    # The verdict follows the losses at both seeds (the sweep's 0 and the new 1).
    loss = {(config_key(row.to_dict()), int(row["seed"])): row["best_loss"]
            for _, row in exp.trials.iterrows()}
    for r in top:
        loss[config_key(r.config), 0] = r.metrics["best_loss"]
    winner, other = (config_key(r.config) for r in top)
    ahead = sum(loss[other, s] > loss[winner, s] for s in (0, 1))
    verdict = {2: "its lead holds", 0: f"reversed: {top[1].metrics['trial_id']} is ahead at "
               "every seed"}.get(ahead, "a tie")
    assert f"winner vs {top[1].metrics['trial_id']}: ahead at {ahead} of 2 seeds" in proc.stdout
    assert verdict in proc.stdout and "best loss:" not in proc.stdout
    starts = [line for line in proc.stdout.splitlines() if "] start " in line]
    assert len(starts) == 2 and all(line.endswith("seed=1") for line in starts)
    best = min(top, key=lambda r: loss[config_key(r.config), 0] + loss[config_key(r.config), 1])
    assert f"use: {best.metrics['trial_id']}'s config" in proc.stdout
    assert tune_main.main(["analyze", str(confirmed)]) == 0
    assert verdict in capsys.readouterr().out
    report = (confirmed / "analysis" / "report.md").read_text()
    assert "## Seed confirmation" in report and "## Winning config" not in report
    saved = json.loads((confirmed / "analysis" / "best_config.json").read_text())
    assert config_key(saved) == config_key(best.config)
    # The sweep's own analysis says what its confirmation found.
    assert tune_main.main(["analyze", str(sweep)]) == 0
    assert f"seed confirmation sweep-confirm: winner vs {top[1].metrics['trial_id']}" in (
        capsys.readouterr().out)
    report = (sweep / "analysis" / "report.md").read_text()
    assert "Seed confirmation `sweep-confirm`" in report and verdict in report
    # Neither the same confirmation again nor a confirmation of the confirmation.
    assert tune_main.main(["confirm", str(sweep)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert tune_main.main(["confirm", str(confirmed), "--name", "again"]) == 2
    assert "is a confirmation already" in capsys.readouterr().err


def test_a_fixed_config_with_a_culling_scheduler_is_refused(tmp_path):
    from trainables.sweep import SweepError, build_tuner

    options = SweepOptions(name="curve", storage_path=str(tmp_path), epochs=4,
                           fixed_config={"context_lr_ratio": 0.2}, lambdas=[0.01, 0.05],
                           scheduler="asha")
    with pytest.raises(SweepError, match="a fixed config runs no search: use scheduler 'fifo'"):
        build_tuner(options)


def test_a_sweep_warm_started_from_the_same_task_tells_its_trials_and_runs_new_ones(
        reference, tmp_path, photo_dirs, pretrained_tiny_path):
    from trainables.sweep import read_marker
    from trainables.warm_start import load_warm_start

    earlier, earlier_results = reference
    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, "warm", seed=1,
                       num_samples=1, optuna_storage=f"sqlite:///{tmp_path / 'study.db'}")
    options.warm_start = load_warm_start(earlier.path, options)
    assert options.warm_start.same_task
    results = run_sweep(options)
    assert len(results) == 1 and not results.errors
    study = optuna.load_study(study_name=options.name, storage=options.optuna_storage)
    told = [t for t in study.trials if "warm_start_trial" in t.user_attrs]
    assert sorted((t.user_attrs["warm_start_trial"], t.value) for t in told) == sorted(
        (r.metrics["trial_id"], r.metrics["best_loss"]) for r in earlier_results)
    # The preset's points are what the earlier sweep ran: the one new trial is TPE's own.
    (new,) = [t for t in study.trials if t not in told]
    assert new.state == optuna.trial.TrialState.COMPLETE
    assert new.params not in [t.params for t in told]
    assert read_marker(options.path).warm_start == options.warm_start


def test_state_torn_by_a_killed_driver_is_restored_from_the_staging_copy(reference, tmp_path):
    from hpcm_tune.tune_files import TornStateError, repair_torn_state

    options, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(options.path, copy)
    (state,) = copy.glob("experiment_state-*.json")
    intact = state.read_bytes()
    state.write_bytes(intact[: len(intact) // 2])  # what a SIGKILL mid-copy leaves
    repair_torn_state(copy, options.name)
    assert state.read_bytes() == intact
    # No staging copy to take it from: refuse, never let Tune restart the sweep silently.
    state.write_bytes(b"")
    with pytest.raises(TornStateError, match="is damaged"):
        repair_torn_state(copy, "an-experiment-nobody-ran")


# -- the console (trainables.console) -------------------------------------------------------
NOISE = ("Checkpoint successfully created", "torch.jit.script", "Trial status",
         "Configuration for experiment", "started with configuration", "Trial progress",
         "(ImplicitFunc pid=", "(pid=", "Traceback", "Wrote the latest version")


def test_the_cli_console_is_a_few_lines_per_trial(cluster, tmp_path, photo_dirs,
                                                  pretrained_tiny_path):
    """A demo-like `run` (its own process, as a user starts it): no Tune tables or trial
    configs, no worker output (checkpoint messages, the torch.jit warning), a start and an
    end line per trial that says why the trial ended, and the worker logs where it says."""
    from trainables.console import end_reason

    experiment = tmp_path / "results" / "quiet"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tune_main.py"), "run", "--address", cluster.address,
         "--checkpoint", str(pretrained_tiny_path), "--train-dir", str(photo_dirs / "train"),
         "--val-dir", str(photo_dirs / "val"), "--lmbda", "0.0483", "--batch-size", "4",
         "--crops-per-image", "2", "--epochs", "3", "--num-samples", "2", "--gpus-per-trial", "0.5",
         "--storage-path", str(tmp_path / "results"), "--name", "quiet"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    lines = console.splitlines()
    for noise in NOISE:
        assert noise not in console, noise
    assert len(lines) <= 40, console
    summary = next(line for line in lines if line.startswith("worker logs: "))
    logs = Path(summary.split()[2].rsplit("/", 1)[0])
    trials = sorted(experiment.glob("trial_*"))
    assert len(trials) == 2
    for trial in trials:
        trial_id = trial.name.removeprefix("trial_")
        mine = [line for line in lines if line.startswith(f"[{trial_id}] ")]
        rows = [json.loads(x) for x in (trial / "result.json").read_text().splitlines() if x]
        assert mine[0].startswith(f"[{trial_id}] start  context_lr_ratio=")
        # Fake GPUs: assigned by Ray, invisible to torch; the one worker warning shown.
        assert "torch sees no CUDA device: training on CPU" in mine[1]
        reason = end_reason(rows[-1], 3)
        assert mine[-1].startswith(f"[{trial_id}] end    after {len(rows)} of 3 epochs: "
                                   f"{reason}")
        # The workers' own output is in Ray's session logs, where the summary says.
        # (Ray's log monitor may move a dead worker's file into logs/old/.)
        errs = list(logs.glob(f"**/worker-*-{rows[-1]['pid']}.err"))
        assert any("falling back to CPU" in e.read_text(errors="replace") for e in errs), errs
    assert "sweep finished" in console and f"results: {experiment}" in console
    # The winner's standing, read from the folder: one of the two trials is the preset's
    # first point, the original report's recommended config.
    lead = next(line for line in lines if line.startswith("lead: "))
    assert "over the runner-up" in lead and "recommended config" in lead
    # ... and, if plain fine-tuning won (ratio 1: the searched range's top), that the best
    # may lie past it. The other of the two, the recommendation (ratio 0.1), is mid-range.
    plain_won = "the winner is plain fine-tuning" in lead
    ranges = [line for line in lines if line.startswith("range: ")]
    assert len(ranges) == plain_won, console
    assert all("context_lr_ratio 1 lies at the top" in line for line in ranges)


def test_verbose_gives_tune_its_own_console_back(reference, tmp_path, photo_dirs,
                                                 pretrained_tiny_path):
    from ray import tune

    from trainables.console import ConsoleReporter, set_restored_console
    from trainables.sweep import _trainable, build_tuner

    def run_config(tuner):
        return tuner._local_tuner.get_run_config()

    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, "verbosity")
    other = Callback()
    quiet = run_config(build_tuner(options, [other]))
    assert quiet.verbose == 0 and isinstance(quiet.callbacks[0], ConsoleReporter)
    assert quiet.callbacks[1:] == [other]
    loud = run_config(build_tuner(options, [other], verbose=True))
    assert loud.verbose == tune.RunConfig().verbose and loud.callbacks == [other]
    # resume: the restored experiment carries the first run's console; the flag decides.
    options, _ = reference
    restored = tune.Tuner.restore(options.path, trainable=_trainable(options))
    assert isinstance(run_config(restored).callbacks[0], ConsoleReporter)
    set_restored_console(restored, options, verbose=True)
    assert not any(isinstance(c, ConsoleReporter) for c in run_config(restored).callbacks)
    set_restored_console(restored, options, verbose=False)
    assert sum(isinstance(c, ConsoleReporter) for c in run_config(restored).callbacks) == 1
    assert run_config(restored).verbose == 0


def test_trials_asking_for_no_gpu_on_a_cluster_with_gpus_are_warned_about(
        cluster, tmp_path, photo_dirs, pretrained_tiny_path, caplog):
    from trainables.sweep import max_concurrent_trials

    def concurrent(gpus: float) -> int:
        caplog.clear()
        with caplog.at_level("WARNING", logger="trainables.sweep"):
            return max_concurrent_trials(_options(tmp_path, photo_dirs, pretrained_tiny_path,
                                                  "resources", gpus_per_trial=gpus))

    # 2 CPUs and 2 fake GPUs: 1 CPU per trial allows 2 at once either way.
    assert concurrent(0) == 2
    assert "the cluster has 2 GPU(s) but trials ask for none" in caplog.text
    assert concurrent(0.5) == 2 and "ask for none" not in caplog.text


ASHA_RATIOS = "context-LR ratios above 1 with ASHA: its first rung ranks the trials after 3 epochs"
WIDE_CULLED = "a higher base LR lags early"


@pytest.mark.parametrize("space, scheduler, warnings", [
    ({"max_context_lr_ratio": 4.0}, "asha", [ASHA_RATIOS]),
    ({"max_context_lr_ratio": 4.0}, "fifo", []),
    ({}, "asha", []),
    ({"wide_space": True}, "leader-gap", []),
    ({"wide_space": True}, "asha", [WIDE_CULLED]),
    ({"wide_space": True}, "hyperband", [WIDE_CULLED]),
    ({"wide_space": True}, "fifo", []),
    ({}, "leader-gap", [])])
def test_spaces_a_culling_scheduler_misjudges_are_warned_about(space, scheduler, warnings, caplog,
                                                               pretrained_tiny_path):
    """Higher learning rates lag early: ratios above 1 with ASHA, and a searched base LR with
    ASHA or Hyperband, are warned about (leader-gap judges them against leaders as fast)."""
    from trainables.sweep import _optuna_search

    trial = TrialSpec(model="tiny", checkpoint=str(pretrained_tiny_path)).replace(lmbda=0.0003)
    options = SweepOptions(name="wide", storage_path="results", trial=trial, epochs=12,
                           num_samples=8, scheduler=scheduler, **space)
    with caplog.at_level("WARNING", logger="trainables.sweep"):
        _optuna_search(options)
    assert [w for w in (ASHA_RATIOS, WIDE_CULLED) if w in caplog.text] == warnings
    if WIDE_CULLED in warnings:
        assert f"--wide-space with --scheduler {scheduler}: {WIDE_CULLED}" in caplog.text


def test_with_a_wide_space_the_baselines_keep_the_tasks_base_lr(pretrained_tiny_path):
    # Left open, TPE drew the baselines' base LR and h multiplier: the report then measured
    # the winner against a "plain fine-tuning" that was not.
    from search_spaces import BASELINES
    from trainables.sweep import _optuna_search

    trial = TrialSpec(model="tiny", checkpoint=str(pretrained_tiny_path)).replace(
        lmbda=0.0003, base_lr=5e-4)
    options = SweepOptions(name="wide", storage_path="results", trial=trial, epochs=12,
                           num_samples=8, wide_space=True)
    search = _optuna_search(options)
    first = [search.suggest(f"t{i}") for i in range(len(BASELINES))]
    assert [b.config for b in BASELINES] == [
        {k: c[k] for k in b.config} for b, c in zip(BASELINES, first)]
    assert all(c["base_lr"] == 5e-4 and c["h_multiplier"] == 0.5 for c in first)
    drawn = [search.suggest(f"u{i}")["base_lr"] for i in range(3)]
    assert all(5e-4 / 4 <= lr <= 5e-4 * 4 for lr in drawn)  # around the task's
    assert len(set(drawn)) == 3  # after the baselines, the base LR is searched


def test_a_latest_checkpoint_deleted_after_the_last_state_save_is_repaired(reference, tmp_path):
    """Tune deletes a checkpoint that is neither the best nor the latest when a newer one
    arrives, and saves its state later: a driver killed in between leaves a state whose latest
    checkpoint is gone (seen once in CI: the trial's restore failed three times). The repair
    registers the newer checkpoints on disk, as the killed driver had."""
    from ray import cloudpickle

    from hpcm_tune.tune_files import checkpoint_dirs, experiment_state_files, read_results
    from trainables.sweep import repair_stale_checkpoints

    copy = tmp_path / "sweep"
    shutil.copytree(reference[0].path, copy)
    state_file = experiment_state_files(copy)[-1]
    data = json.loads(state_file.read_text())
    meta = json.loads(data["trial_data"][0][1])
    manager = cloudpickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"]))
    final = manager._latest_checkpoint_result
    trial_dir = copy / Path(final.checkpoint.path).parent.name
    # The state as the killed driver saved it: its latest checkpoint, an earlier epoch's, is
    # gone from the disk; the trial's newest checkpoint was saved after that state.
    rows = {row["checkpoint_dir_name"]: row for row in read_results(trial_dir)}
    kept = {d.name for d in checkpoint_dirs(trial_dir)}
    gone = min(name for name in rows if name and name not in kept)
    stale = type(final)(checkpoint=type(final.checkpoint)(
        path=str(Path(final.checkpoint.path).parent / gone),
        filesystem=final.checkpoint.filesystem), metrics=rows[gone])
    manager._latest_checkpoint_result = stale
    manager._checkpoint_results.append(stale)
    meta["checkpoint_manager"]["value"] = cloudpickle.dumps(manager).hex()
    data["trial_data"][0][1] = json.dumps(meta)
    state_file.write_text(json.dumps(data))

    assert repair_stale_checkpoints(copy) == [trial_dir.name]
    meta = json.loads(json.loads(state_file.read_text())["trial_data"][0][1])
    repaired = cloudpickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"]))
    latest = repaired._latest_checkpoint_result
    assert Path(latest.checkpoint.path).name == checkpoint_dirs(trial_dir)[-1].name
    assert latest.metrics["training_iteration"] == final.metrics["training_iteration"]
    assert all((trial_dir / Path(r.checkpoint.path).name).is_dir()
               for r in repaired._checkpoint_results)
    assert repair_stale_checkpoints(copy) == []  # nothing left to repair
