"""The quiet console (trainables.console) fed real trial results, without running Ray.

``tests/data/console_trial_results.json`` holds result dicts of real demo trials, as Tune
handed them to callbacks (captured from ``result.json`` of a ``tune_main.py`` demo sweep):
one trial whose scales all stopped, one that ran its whole epoch budget, and Tune's error.txt
of a trial whose checkpoint was missing. On real sweeps: tests/analysis/test_experiment.py
(all three end reasons) and tests/trainables/test_sweep.py (the CLI's whole console).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainables.console import (
    ALL_STOPPED,
    BUDGET,
    CULLED,
    EPOCH_LINES,
    INTERRUPTED,
    NO_EPOCH,
    SWEEP_STOPPED,
    ConsoleReporter,
    end_reason,
    every_nth_epoch,
    with_console,
)
from trainables.sweep import SweepOptions

DATA = json.loads((Path(__file__).parents[1] / "data" / "console_trial_results.json").read_text())


def _trial(name: str, rows: list[dict] | None = None, **extra) -> SimpleNamespace:
    """A stand-in for ray.tune.experiment.Trial with the attributes the console reads."""
    captured = DATA["trials"][name]
    return SimpleNamespace(trial_id=captured["trial_id"], config=captured["config"],
                           last_result=(rows if rows is not None else captured["results"])[-1],
                           status="TERMINATED", error_file=None, path=None, **extra)


def _run(reporter: ConsoleReporter, name: str, rows: list[dict] | None = None,
         end: str = "complete") -> list[str]:
    trial = _trial(name, rows)
    reporter.on_trial_start(0, [trial], trial)
    for row in rows if rows is not None else DATA["trials"][name]["results"]:
        trial.last_result = row
        reporter.on_trial_result(0, [trial], trial, dict(row))
    getattr(reporter, f"on_trial_{end}")(0, [trial], trial)
    return reporter.stream.getvalue().splitlines()


def test_the_captured_trials_are_what_the_tests_say():
    stopped = DATA["trials"]["stopped"]["results"]
    budget = DATA["trials"]["budget"]["results"]
    assert stopped[-1]["patience/all_stopped"] is True
    assert stopped[-1]["epoch"] + 1 < DATA["trials"]["stopped"]["config"]["epochs"]
    assert budget[-1]["patience/all_stopped"] is False
    assert budget[-1]["epoch"] + 1 == DATA["trials"]["budget"]["config"]["epochs"]


def test_end_reasons_of_real_results():
    epochs = DATA["trials"]["budget"]["config"]["epochs"]
    stopped = DATA["trials"]["stopped"]["results"]
    budget = DATA["trials"]["budget"]["results"]
    assert end_reason(stopped[-1], epochs) == ALL_STOPPED
    assert end_reason(budget[-1], epochs) == BUDGET
    # Tune stopped it after an epoch in the middle, its scales still running: a scheduler.
    assert end_reason(budget[2], epochs) == CULLED
    assert end_reason(None, epochs) == end_reason({}, epochs) == NO_EPOCH
    # Tune may hand results nested ({"patience": {"all_stopped": ...}}).
    nested = {"epoch": 3, "patience": {"all_stopped": True}}
    assert end_reason(nested, epochs) == ALL_STOPPED


def test_a_stopped_trial_prints_start_sampled_epochs_and_why_it_ended():
    reporter = ConsoleReporter(epochs=12, trials=8, stream=io.StringIO())
    lines = _run(reporter, "stopped")
    trial_id = DATA["trials"]["stopped"]["trial_id"]
    config = DATA["trials"]["stopped"]["config"]
    rows = DATA["trials"]["stopped"]["results"]
    assert all(line.startswith(f"[{trial_id}] ") for line in lines)
    assert lines[0].split("] ", 1)[1].startswith("start")
    assert f"context_lr_ratio={config['context_lr_ratio']:.4g}" in lines[0]
    assert f"freeze_strategy={config['freeze_strategy']}" in lines[0]
    # 8 trials x 12 epochs: every 2nd epoch (1, 3, 5, ...), never the last (the end line).
    assert reporter.every == 2
    printed = [int(line.split("epoch")[1].split()[0]) for line in lines if "] epoch" in line]
    assert printed == [e for e in range(len(rows) - 1) if e % 2 == 1]
    row = rows[printed[-1]]
    epoch_line = " ".join([line for line in lines if "] epoch" in line][-1].split())
    assert f"s1 {row['s1']:.4f}" in epoch_line and f"loss {row['loss']:.4f}" in epoch_line
    assert f"best {row['best_loss']:.4f}" in epoch_line
    stopped = [s for s in ("s1", "s2", "s3") if row[f"patience/{s}/stopped"]]
    assert epoch_line.endswith("stopped " + (",".join(stopped) or "-"))
    last = rows[-1]
    stops = " ".join(f"{s}@{last[f'patience/{s}/stop_epoch']}" for s in ("s1", "s2", "s3"))
    assert lines[-1] == (f"[{trial_id}] end    after {last['epoch'] + 1} of 12 epochs: "
                         f"{ALL_STOPPED} ({stops}); best loss {last['best_loss']:.4f} "
                         f"at epoch {last['best_epoch']}")
    assert len(lines) == 2 + len(printed)


@pytest.fixture
def error_txt(tmp_path) -> Path:
    """Tune's error.txt of a failed trial."""
    path = tmp_path / "error.txt"
    path.write_text(DATA["error_txt"])
    return path


def test_budget_culled_error_and_sweep_end_lines(error_txt):
    budget = DATA["trials"]["budget"]["results"]
    end = _run(ConsoleReporter(epochs=12, stream=io.StringIO()), "budget")[-1]
    assert f"after 12 of 12 epochs: {BUDGET}" in end
    end = _run(ConsoleReporter(epochs=12, stream=io.StringIO()), "budget", budget[:4])[-1]
    assert f"after 4 of 12 epochs: {CULLED}" in end

    reporter = ConsoleReporter(epochs=12, stream=io.StringIO())
    trial = _trial("budget", budget[:1])
    trial.path = "/results/sweep/trial_x"
    reporter.on_trial_start(0, [trial], trial)
    trial.error_file = str(error_txt)
    reporter.on_trial_error(0, [trial], trial)
    line = reporter.stream.getvalue().splitlines()[-1]
    assert line == (f"[{trial.trial_id}] end    error: {DATA['error_txt'].strip().splitlines()[-1]}"
                    " (error.txt in /results/sweep/trial_x)")

    # The sweep ends with two trials running (3 and 2 epochs in): Tune stops them without a
    # complete callback, alike when the sweep's budget is spent and when it is interrupted.
    for budget_epochs, reason in ((5, SWEEP_STOPPED), (6, INTERRUPTED), (None, INTERRUPTED)):
        reporter = ConsoleReporter(epochs=12, budget_epochs=budget_epochs, stream=io.StringIO())
        running, other = _trial("budget", budget[:3]), _trial("stopped", budget[:2])
        assert [t.last_result["training_iteration"] for t in (running, other)] == [3, 2]
        for trial in (running, other):
            reporter.on_trial_start(0, [trial], trial)
        reporter.on_experiment_end([running, other])
        lines = reporter.stream.getvalue().splitlines()
        assert lines[-2].endswith(f"after 3 of 12 epochs: {reason}; best loss "
                                  f"{budget[2]['best_loss']:.4f} at epoch "
                                  f"{budget[2]['best_epoch']}"), budget_epochs
        assert f"after 2 of 12 epochs: {reason}" in lines[-1]


def test_a_retried_trial_gets_one_line_and_no_second_start(error_txt):
    reporter = ConsoleReporter(epochs=12, stream=io.StringIO())
    trial = _trial("budget")
    reporter.on_trial_start(0, [trial], trial)
    trial.error_file = str(error_txt)
    reporter.on_trial_recover(0, [trial], trial)
    reporter.on_trial_start(0, [trial], trial)
    lines = reporter.stream.getvalue().splitlines()
    assert len(lines) == 2 and "retrying from its last checkpoint" in lines[1]
    assert DATA["error_txt"].strip().splitlines()[-1] in lines[1]


def test_gpus_torch_cannot_use_are_reported_once_per_trial():
    reporter = ConsoleReporter(epochs=12, stream=io.StringIO())
    rows = [dict(r, gpu_ids="0", device="cpu") for r in DATA["trials"]["budget"]["results"]]
    lines = _run(reporter, "budget", rows)
    warnings = [line for line in lines if "torch sees no CUDA device" in line]
    assert len(warnings) == 1 and "GPUs 0 were assigned" in warnings[0]


def test_line_budget_for_demo_sized_sweeps():
    """Per-epoch lines stay within EPOCH_LINES; with a start and an end line per trial the
    sweep prints at most EPOCH_LINES + 2 x trials lines (plus the summary)."""
    for trials, epochs in ((8, 12), (16, 12), (1, 300), (32, 300)):
        every = every_nth_epoch(trials, epochs)
        epoch_lines = trials * ((epochs - 1) // every)  # a trial's last epoch is its end line
        assert epoch_lines <= EPOCH_LINES, (trials, epochs)
        assert epoch_lines + 2 * trials <= 100 or trials > 16
    assert every_nth_epoch(8, 12) == 2 and every_nth_epoch(16, 12) == 3


def test_the_console_never_breaks_a_sweep(caplog):
    reporter = ConsoleReporter(epochs=12, stream=io.StringIO())
    broken = SimpleNamespace(trial_id="x", config=None, last_result={"epoch": "not a number"},
                             status="TERMINATED", error_file=None, path=None)
    with caplog.at_level(logging.WARNING):
        reporter.on_trial_result(0, [broken], broken, {"epoch": "not a number"})
        reporter.on_trial_complete(0, [broken], broken)
    assert sum("console reporter failed" in r.getMessage() for r in caplog.records) == 1


def test_the_reporter_pickles_without_its_stream():
    """Tune saves the run config, callbacks included, with the experiment state."""
    reporter = ConsoleReporter(epochs=12, trials=8, stream=io.StringIO())
    copy = pickle.loads(pickle.dumps(reporter))
    assert copy.stream is None and copy.every == 2


def test_with_console_adds_the_reporter_unless_verbose():
    options = SweepOptions(name="x", storage_path="/tmp", epochs=12, num_samples=16)
    other = object()
    quiet = with_console(options, [other], verbose=False)
    assert isinstance(quiet[0], ConsoleReporter) and quiet[1:] == [other]
    assert quiet[0].trials == 16 and quiet[0].every == 3 and quiet[0].scheduler == "leader-gap"
    assert "base_lr" not in quiet[0].knobs  # searched only with --wide-space
    wide = SweepOptions(name="x", storage_path="/tmp", epochs=12, wide_space=True)
    assert "base_lr" in with_console(wide, None, verbose=False)[0].knobs
    assert with_console(options, [other], verbose=True) == [other]
    curve = SweepOptions(name="x", storage_path="/tmp", epochs=12,
                         fixed_config={"context_lr_ratio": 0.1}, lambdas=[0.01, 0.02, 0.05])
    reporter = with_console(curve, None, verbose=False)[0]
    assert reporter.trials == 3 and "lmbda" in reporter.knobs


def test_with_hyperband_a_trial_start_says_when_its_bracket_first_ranks_it():
    from stoppers.scheduler import make_scheduler

    hyperband = make_scheduler("hyperband", 12)
    configs = [{"context_lr_ratio": 0.01 * (k + 1), "freeze_strategy": "none", "seed": 0}
               for k in range(30)]
    # One config of each bracket: first rung after 3 epochs, after 9, none.
    picked = [next(c for c in configs if hyperband.bracket_of(c) == i) for i in range(3)]
    for scheduler, notes in (("hyperband", ["  (Hyperband: first ranked after 3 epochs)",
                                            "  (Hyperband: first ranked after 9 epochs)",
                                            "  (Hyperband: never culled)"]),
                             ("asha", ["", "", ""])):
        reporter = ConsoleReporter(epochs=12, scheduler=scheduler, stream=io.StringIO())
        for k, config in enumerate(picked):
            trial = SimpleNamespace(trial_id=f"t{k}", config=config)
            reporter.on_trial_start(0, [trial], trial)
        lines = reporter.stream.getvalue().splitlines()
        assert [line.split("freeze_strategy=none")[1] for line in lines] == notes
