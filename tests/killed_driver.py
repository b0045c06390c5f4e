"""A sweep driver killed at a fixed point of the sweep, for the resume tests.

The driver is a subprocess (the CLI's ``run``, or ``run_sweep`` with given options) with one
extra Tune callback, :class:`KillDriverOnce`, which SIGKILLs the driver itself when a given
trial reports a given epoch: every run tests the same point of the sweep, not whatever a
test's polling loop happened to see. Nothing in the product knows about it: the callback
joins the sweep's callbacks like any tracker (``trainables.tracking.tracking_callbacks`` is
wrapped in the driver process only).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

from ray.tune import Callback

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """This process's environment when the driver starts: Ray sets RAY_AUTH_MODE=token in it
    once a test cluster is up, and a driver without it cannot join that cluster."""
    return dict(os.environ, PYTHONPATH=str(REPO))

# The searched knobs that tell one trial's config from another's within a sweep.
KNOBS = ("context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch", "unfreeze_context_epoch")


class KillDriverOnce(Callback):
    """SIGKILL the driver itself (or send it ``sig``: SIGINT is a user's Ctrl-C) when its
    ``trial_number``-th trial (in the order of their first reports) reports
    ``trained_epochs``. Once: ``marker`` records the kill (the trial's id), so a resumed
    driver, which unpickles this callback with the experiment, goes on."""

    def __init__(self, trial_number: int, trained_epochs: int, marker: Path,
                 sig: int = signal.SIGKILL) -> None:
        self.trial_number, self.trained_epochs, self.marker = (
            trial_number, trained_epochs, Path(marker))
        self.sig = sig
        self.started: list[str] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.trial_id not in self.started:
            self.started.append(trial.trial_id)
        if (len(self.started) >= self.trial_number
                and trial.trial_id == self.started[self.trial_number - 1]
                and result["trained_epochs"] == self.trained_epochs
                and not self.marker.exists()):
            self.marker.write_text(trial.trial_id)
            os.kill(os.getpid(), self.sig)


_DRIVER = """\
import pickle, sys
killer, how, what = pickle.loads(bytes.fromhex(sys.argv[1]))
if how == "cli":
    import trainables.tracking as tracking
    trackers = tracking.tracking_callbacks
    tracking.tracking_callbacks = lambda *a, **k: [*(trackers(*a, **k) or []), killer]
    import tune_main
    sys.exit(tune_main.main(what))
import ray
from trainables.sweep import run_sweep
address, options = what
ray.init(address=address)
run_sweep(options, callbacks=[killer])
"""


def _killed(how: str, what, killer: KillDriverOnce, timeout: float,
            status: int = -signal.SIGKILL) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", _DRIVER,
                           pickle.dumps((killer, how, what)).hex()],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == status, (
        f"the driver was not killed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    assert killer.marker.is_file()
    return proc


def kill_cli_run(argv: list[str], killer: KillDriverOnce, timeout: float = 300) -> None:
    """``tune_main.py`` with ``argv`` (a ``run``) in a subprocess, killed by ``killer``."""
    _killed("cli", list(argv), killer, timeout)


def interrupt_cli_run(argv: list[str], killer: KillDriverOnce, timeout: float = 300
                      ) -> subprocess.CompletedProcess:
    """``tune_main.py`` with ``argv`` in a subprocess that ``killer`` (with ``sig=SIGINT``)
    interrupts as Ctrl-C does: the CLI ends the sweep itself, with exit status 130."""
    return _killed("cli", list(argv), killer, timeout, status=130)


def kill_sweep(address: str, options, killer: KillDriverOnce, timeout: float = 300) -> None:
    """``run_sweep(options)`` in a subprocess connected to ``address``, killed by ``killer``."""
    _killed("sweep", (address, options), killer, timeout)


def resume_cli(path: str | Path, address: str, timeout: float = 300
               ) -> subprocess.CompletedProcess:
    """``tune_main.py resume`` as a user runs it; asserts that it succeeded."""
    proc = subprocess.run([sys.executable, str(REPO / "tune_main.py"), "resume", str(path),
                           "--address", address], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def config_key(config: dict) -> str:
    """One trial's searched knobs, as a comparable key."""
    return json.dumps({k: config.get(k) for k in KNOBS}, sort_keys=True)


def stop_epochs(path: str | Path) -> dict[str, int]:
    """Last epoch each trial of the experiment at ``path`` reported, by config (distinct
    within a sweep: a config run twice fails here)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(path))
    stops = {config_key(t.config): int(analysis.trial_dataframes[t.trial_id]["epoch"].max())
             for t in analysis.trials}
    assert len(stops) == len(analysis.trials), [t.config for t in analysis.trials]
    return stops
