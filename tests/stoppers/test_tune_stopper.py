"""AllScalesStopper: unit tests on result dicts, plus one small real Ray Tune run."""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from stoppers import ALL_STOPPED_KEY, AdaptivePatience, AllScalesStopper, report_fields

REPO_ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------- synthetic traces
def trace(name: str, epoch: int) -> dict[str, float]:
    """Per-scale losses of a synthetic trial at ``epoch`` (1-based, like training_iteration)."""
    if name == "flat":
        return {"s1": 0.5, "s2": 0.6, "s3": 0.7}
    if name == "staggered":
        # Each scale converges at its own time; s3 is last.
        return {
            "s1": 1.0 + 0.01 * epoch,           # worsening from the start
            "s2": 0.9 ** min(epoch, 12),        # geometric, plateau at 12
            "s3": 2.0 - 0.05 * min(epoch, 25),  # linear, plateau at 25
        }
    if name == "improving":
        return {s: 10.0 - 0.01 * epoch for s in ("s1", "s2", "s3")}
    raise ValueError(f"unknown trace {name!r}")


PATIENCE_KWARGS = {"patience": 20, "min_patience": 5, "max_patience": 40}


def predicted_stop_epoch(name: str) -> int:
    """The epoch at which the plain class, fed the trace without Ray, stops all scales."""
    ap = AdaptivePatience(**PATIENCE_KWARGS)
    for epoch in range(1, 1000):
        ap.step(epoch, trace(name, epoch))
        if ap.should_stop():
            return epoch
    raise AssertionError(f"trace {name} never stops")


def trace_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: owns the AdaptivePatience and checkpoints it.

    ``fail_marker``: if set and the file does not exist yet, create it and
    crash once at ``fail_at`` so Tune restores the last checkpoint and the
    trial re-reports the epochs after it.
    """
    from ray import tune

    ap = AdaptivePatience(**PATIENCE_KWARGS)
    start = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            saved = json.loads(Path(directory, "state.json").read_text())
        ap.load_state_dict(saved["patience"])
        start = saved["epoch"] + 1
    for epoch in range(start, config["max_epochs"] + 1):
        if config.get("fail_marker") and epoch == config["fail_at"]:
            marker = Path(config["fail_marker"])
            if not marker.exists():
                marker.write_text(str(epoch))
                raise RuntimeError("injected worker failure")
        metrics = trace(config["trace"], epoch)
        ap.step(epoch, metrics)
        result = {**metrics, **report_fields(ap), "epoch": epoch, "devices": config.get("devices", 1)}
        if epoch % config["checkpoint_every"] == 0:
            with tempfile.TemporaryDirectory() as directory:
                state = {"epoch": epoch, "patience": ap.state_dict()}
                Path(directory, "state.json").write_text(json.dumps(state))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(result)


# ------------------------------------------------------------------ unit level
def result_for(ap: AdaptivePatience, iteration: int, **extra: Any) -> dict[str, Any]:
    return {**report_fields(ap), "training_iteration": iteration, "time_total_s": 0.0, **extra}


def test_stopper_stops_exactly_when_all_scales_stopped():
    stopper = AllScalesStopper()
    ap = AdaptivePatience(**PATIENCE_KWARGS)
    decisions = []
    for epoch in range(1, 200):
        ap.step(epoch, trace("staggered", epoch))
        decisions.append(stopper("t1", result_for(ap, epoch)))
        if decisions[-1]:
            break
    expected = predicted_stop_epoch("staggered")
    assert len(decisions) == expected and decisions[-1] and not any(decisions[:-1])
    # Scales stopped at different epochs; the trial waited for the last one.
    stops = ap.stop_epoch
    assert len(set(stops.values())) == 3 and max(stops.values()) == expected
    assert not stopper.stop_all()


def test_stopper_reads_nested_results_and_rejects_bad_flags():
    stopper = AllScalesStopper()
    assert stopper("t", {"patience": {"all_stopped": True}}) is True
    assert stopper("t", {"patience": {"all_stopped": False}}) is False
    with pytest.raises(ValueError, match="did not report patience state"):
        stopper("t", {"loss": 1.0, "training_iteration": 3})
    with pytest.raises(ValueError, match="must be a bool"):
        stopper("t", {ALL_STOPPED_KEY: float("nan")})


@pytest.mark.parametrize(
    "kwargs",
    [{"max_trial_epochs": 0}, {"max_trial_epochs": 2.5}, {"max_device_hours": -1.0},
     {"max_device_hours": float("inf")}],
)
def test_stopper_rejects_bad_budgets(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AllScalesStopper(**kwargs)


def test_epoch_budget_counts_latest_iteration_per_trial():
    stopper = AllScalesStopper(max_trial_epochs=10)
    flags = {ALL_STOPPED_KEY: False}
    for it in range(1, 5):
        stopper("a", {**flags, "training_iteration": it})
    # "a" is restored from its iteration-2 checkpoint and re-reports 3 and 4:
    # still 4 epochs, not 6.
    for it in (3, 4):
        stopper("a", {**flags, "training_iteration": it})
    assert stopper.trial_epochs == 4
    for it in range(1, 6):
        stopper("b", {**flags, "training_iteration": it})
        assert not stopper.stop_all()
    stopper("b", {**flags, "training_iteration": 6})
    assert stopper.trial_epochs == 10 and stopper.stop_all()
    # The spent budget survives pickling with the experiment state.
    restored = pickle.loads(pickle.dumps(stopper))
    assert restored.trial_epochs == 10 and restored.stop_all()


def test_device_hour_budget_weights_by_reported_devices():
    stopper = AllScalesStopper(max_device_hours=1.0)
    flags = {ALL_STOPPED_KEY: False, "training_iteration": 1}
    stopper("a", {**flags, "time_total_s": 900.0, "devices": 2})  # 0.5 h
    stopper("b", {**flags, "time_total_s": 1200.0})               # no devices: 1 -> 0.333 h
    assert stopper.device_hours == pytest.approx(0.5 + 1 / 3)
    assert not stopper.stop_all()
    stopper("a", {**flags, "time_total_s": 1200.0, "devices": 2})  # latest replaces: 0.667 h
    assert stopper.device_hours == pytest.approx(2 / 3 + 1 / 3)
    assert stopper.stop_all()
    with pytest.raises(ValueError, match="devices"):
        stopper("c", {**flags, "time_total_s": 1.0, "devices": 0})
    with pytest.raises(ValueError, match="time_total_s"):
        stopper("c", {**flags})


# ------------------------------------------------------------- real Tune runs
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    # Tune pickles the trainable for its workers; pickling this test module by
    # value works whatever pytest's import mode, and PYTHONPATH lets the
    # workers import the project package.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_tune_trials_stop_at_the_predicted_epoch(ray_session, tmp_path):
    from ray import tune

    marker = tmp_path / "failed_once"
    stopper = AllScalesStopper()
    tuner = tune.Tuner(
        trace_trainable,
        param_space={
            "trace": tune.grid_search(["flat", "staggered"]),
            "max_epochs": 300,
            "checkpoint_every": 4,
            # Only the staggered trial reaches epoch 18 (flat stops earlier), so it
            # alone crashes there, after its checkpoint at 16, and re-reports 17.
            "fail_marker": str(marker),
            "fail_at": 18,
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="all_scales",
            storage_path=str(tmp_path / "results"),
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert not results.errors
    assert marker.read_text() == "18"  # the retry path really ran
    by_trace = {r.config["trace"]: r for r in results}
    for name, result in by_trace.items():
        expected = predicted_stop_epoch(name)
        assert result.metrics["epoch"] == expected, name
        assert result.metrics[ALL_STOPPED_KEY] is True
        # One epoch before, not all scales had stopped yet.
        rows = result.metrics_dataframe
        assert not rows.loc[rows["epoch"] == expected - 1, ALL_STOPPED_KEY].any()
    # Epoch 17 was reported, lost with the crash, and re-reported after the restore.
    assert (by_trace["staggered"].metrics_dataframe["epoch"] == 17).sum() == 2
    assert predicted_stop_epoch("staggered") > 18 > predicted_stop_epoch("flat")


def test_tune_epoch_budget_stops_the_experiment(ray_session, tmp_path):
    from ray import tune

    budget = 30
    stopper = AllScalesStopper(max_trial_epochs=budget)
    tuner = tune.Tuner(
        trace_trainable,
        param_space={
            "trace": tune.grid_search(["improving", "improving"]),
            "max_epochs": 1000,
            "checkpoint_every": 1000,
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="budget", storage_path=str(tmp_path / "results"), stop=stopper, verbose=0
        ),
    )
    results = tuner.fit()
    assert not results.errors
    # A trial may be stopped before its first report when the other one spent
    # the budget first; its metrics then hold only its trial_id.
    last = [r.metrics.get("training_iteration", 0) for r in results]
    assert len(last) == 2 and all(it < 1000 for it in last)
    reported = [r.metrics for r in results if "training_iteration" in r.metrics]
    assert reported and all(m[ALL_STOPPED_KEY] is False for m in reported)
    # Tune handles one result per controller step and checks stop_all after each
    # step; each result raises the sum by one. Allow one in-flight result of slack.
    assert budget <= sum(last) <= budget + 1
    # After the fact, the trials' last results tell a spent budget from an interrupt.
    from stoppers.tune_stopper import budget_spent

    latest = {str(i): m for i, m in enumerate(reported)}
    assert budget_spent(latest, budget, None)
    assert not budget_spent(latest, budget + 2, None) and not budget_spent(latest, None, None)
