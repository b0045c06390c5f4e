"""The sweep's quiet console: a Ray Tune callback that prints a few lines per trial.

Ray Tune's own output (its status table with every reported column, each trial's full
config, the workers' logs) runs to about a thousand lines for the 8-trial demo. By default
``run`` and ``resume`` print this instead (``--verbose`` restores Tune's output):

* one line when a trial starts: its searched knobs (and, with Hyperband, when its bracket
  first ranks it);
* one line every ``every``-th epoch: s1 / s2 / s3, the loss, the best loss and the scales
  that have stopped. ``every`` keeps the whole sweep at about :data:`EPOCH_LINES` such lines:
  ``ceil(trials x epochs / EPOCH_LINES)`` (8 trials x 12 epochs: every 2nd epoch; 16 x 12:
  every 3rd); a trial's last epoch is left to its end line;
* one line when a trial ends, with why (:func:`end_reason`), its per-scale stop epochs and
  its best loss; a trial that fails and is retried gets one line too.

Nothing is lost: every epoch's metrics are in ``<experiment>/trial_<id>/result.json`` and each
trial's worker output in Ray's session logs (``logs/worker-*-<pid>.err``; the pid is in the
trial's results). The callback never raises: a formatting problem must not stop a sweep.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from ray.tune import Callback

from hpcm_tune.names import ALL_STOPPED, CULLED, SCALES, SEARCHED_KNOBS
from stoppers.adaptive_patience import ALL_STOPPED_KEY

log = logging.getLogger(__name__)

#: Per-epoch lines the whole sweep may print (start and end lines come on top: 2 per trial).
EPOCH_LINES = 64

BUDGET = "epoch budget reached"
ERROR = "error"
SWEEP_STOPPED = "stopped with the sweep (its budget is spent)"
INTERRUPTED = "interrupted (resume continues it)"
NO_EPOCH = "stopped before its first epoch"


def _get(result: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``key`` as a flat "a/b" result key or as nested dicts (Tune may deliver either)."""
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def end_reason(last: Mapping[str, Any] | None, epochs: int | None) -> str:
    """Why a trial that Tune ended without an error ended, from its last result.

    ``all scales stopped``: its per-scale stopper said so (``patience/all_stopped``);
    ``epoch budget reached``: its last epoch was the budget's last (``epoch + 1 == epochs``);
    ``culled by the scheduler``: neither, so Tune stopped it (a scheduler such as ASHA).
    """
    if not last or _get(last, "epoch") is None:
        return NO_EPOCH
    if bool(_get(last, ALL_STOPPED_KEY, False)):
        return ALL_STOPPED
    if epochs is not None and int(_get(last, "epoch")) + 1 >= int(epochs):
        return BUDGET
    return CULLED


def every_nth_epoch(trials: int, epochs: int, budget: int = EPOCH_LINES) -> int:
    """Print every n-th epoch so that ``trials x epochs / n`` stays within ``budget``."""
    return max(1, math.ceil(max(trials, 1) * max(epochs, 1) / budget))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _value(value: Any, width: int = 7) -> str:
    try:
        return f"{float(value):{width}.4f}"
    except (TypeError, ValueError):
        return f"{'-':>{width}}"


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


class ConsoleReporter(Callback):
    """Prints the quiet console described in the module docstring.

    Args:
        epochs: the epoch budget of a trial (a trial's own ``epochs`` config wins).
        trials: the number of trials; Tune's ``total_num_samples`` wins when it knows it.
        every: print every n-th epoch; default: :func:`every_nth_epoch`.
        knobs: config keys to show at a trial's start (those present).
        scheduler: the sweep's scheduler (``hpcm_tune.names.SCHEDULERS``).
        budget_epochs, budget_device_hours: the sweep's compute budget (None: none); a
            trial that the sweep's end stops is said to be stopped by it only when spent.
        stream: where to print (default: ``sys.stdout`` at the time of printing).
    """

    def __init__(self, epochs: int, trials: int | None = None, every: int | None = None,
                 knobs: tuple[str, ...] = SEARCHED_KNOBS, scheduler: str = "fifo",
                 budget_epochs: int | None = None, budget_device_hours: float | None = None,
                 stream: IO[str] | None = None) -> None:
        self.epochs = epochs
        self.trials = trials
        self.fixed_every = every
        self.knobs = tuple(knobs)
        self.scheduler = scheduler
        self.budget = (budget_epochs, budget_device_hours)
        self.stream = stream
        self._started: set[str] = set()
        self._ended: set[str] = set()
        self._warned_device: set[str] = set()
        self._failed = False

    # -- pickling: the callback travels in Tune's experiment state; a stream does not ----
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["stream"] = None
        return state

    @property
    def every(self) -> int:
        return self.fixed_every or every_nth_epoch(self.trials or 1, self.epochs)

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def _safely(self, hook, *args) -> None:
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - the console must never end a sweep
            if not self._failed:
                self._failed = True
                log.warning("the sweep's console reporter failed; the sweep goes on "
                            "(results are in the experiment folder)", exc_info=True)

    # -- Tune hooks ----------------------------------------------------------------------
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        if total_num_samples and total_num_samples > 0:
            self.trials = total_num_samples
        self._safely(self._header)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._safely(self._start, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._safely(self._result, trial, result)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._safely(self._recover, trial)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._safely(self._end, trial, None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._safely(self._end, trial, ERROR)

    def on_experiment_end(self, trials, **info) -> None:
        # Trials still running when the sweep ends get no complete callback: its budget was
        # spent, or it was interrupted (Ctrl-C).
        from stoppers.tune_stopper import budget_spent

        latest = {t.trial_id: t.last_result for t in trials
                  if "training_iteration" in (t.last_result or {})}
        reason = SWEEP_STOPPED if budget_spent(latest, *self.budget) else INTERRUPTED
        for trial in trials:
            if trial.trial_id in self._started and trial.trial_id not in self._ended:
                self._safely(self._end, trial, reason)

    # -- lines ---------------------------------------------------------------------------
    def _header(self) -> None:
        nth = {1: "every epoch", 2: "every 2nd epoch", 3: "every 3rd epoch"}.get(
            self.every, f"every {self.every}th epoch")
        trials = (f"{self.trials} trial{'s' if self.trials != 1 else ''}" if self.trials
                  else "trials")
        self._print(f"{trials} of up to {self.epochs} epochs (numbered from 0); a line per trial "
                    f"at its start, {nth} and its end (--verbose: Ray Tune's own output)")

    def _prefix(self, trial) -> str:
        return f"[{trial.trial_id}]"

    def _start(self, trial) -> None:
        if trial.trial_id in self._started:  # a retry after a failure: _recover said so
            return
        self._started.add(trial.trial_id)
        config = trial.config or {}
        knobs = "  ".join(f"{k}={_number(config[k])}" for k in self.knobs if k in config)
        self._print(f"{self._prefix(trial)} start  {knobs}{self._bracket(trial)}".rstrip())

    def _bracket(self, trial) -> str:
        """With Hyperband, when the trial's bracket first ranks it: why a trial behind its
        peers may run on."""
        if self.scheduler != "hyperband":
            return ""
        from stoppers.scheduler import make_scheduler

        hyperband = make_scheduler("hyperband", self._epochs_of(trial))
        rungs = hyperband.bracket_rungs(hyperband.bracket_of(trial.config or {}))
        return (f"  (Hyperband: first ranked after {min(rungs)} epochs)" if rungs
                else "  (Hyperband: never culled)")

    def _epochs_of(self, trial) -> int:
        return int((trial.config or {}).get("epochs", self.epochs))

    def _result(self, trial, result: Mapping[str, Any]) -> None:
        epoch = _get(result, "epoch")
        if epoch is None:
            return
        self._device_warning(trial, result)
        final = (bool(_get(result, ALL_STOPPED_KEY, False)) or bool(result.get("done"))
                 or int(epoch) + 1 >= self._epochs_of(trial))
        if final or (int(epoch) + 1) % self.every:
            return
        stopped = ",".join(s for s in SCALES if _get(result, f"patience/{s}/stopped"))
        scales = "  ".join(f"{s} {_value(_get(result, s))}" for s in SCALES)
        self._print(f"{self._prefix(trial)} epoch {int(epoch):>3}  {scales}  "
                    f"loss {_value(_get(result, 'loss'))}  "
                    f"best {_value(_get(result, 'best_loss'))}  stopped {stopped or '-'}")

    def _device_warning(self, trial, result: Mapping[str, Any]) -> None:
        """The one worker warning that matters on the console: GPUs that torch cannot use."""
        gpu_ids, device = _get(result, "gpu_ids"), _get(result, "device")
        if gpu_ids and device == "cpu" and trial.trial_id not in self._warned_device:
            self._warned_device.add(trial.trial_id)
            self._print(f"{self._prefix(trial)} warning: GPUs {gpu_ids} were assigned but "
                        "torch sees no CUDA device: training on CPU")

    def _recover(self, trial) -> None:
        self._print(f"{self._prefix(trial)} failed ({_last_line(self._error_text(trial))}); "
                    "retrying from its last checkpoint")

    @staticmethod
    def _error_text(trial) -> str | None:
        path = getattr(trial, "error_file", None)
        if not path:
            return None
        try:
            with open(path, errors="replace") as f:
                return f.read().split("Failure #")[-1]
        except OSError:
            return None

    def _end(self, trial, reason: str | None) -> None:
        if trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        last = trial.last_result or {}
        epochs = self._epochs_of(trial)
        if reason == ERROR:
            where = f" (error.txt in {trial.path})" if getattr(trial, "path", None) else ""
            self._print(f"{self._prefix(trial)} end    error: "
                        f"{_last_line(self._error_text(trial))}{where}")
            return
        reason = reason or end_reason(last, epochs)
        if _get(last, "epoch") is None:
            self._print(f"{self._prefix(trial)} end    {reason}")
            return
        ran = int(_get(last, "epoch")) + 1
        stops = " ".join(f"{s}@{int(e)}" for s in SCALES
                         if (e := _get(last, f"patience/{s}/stop_epoch", -1)) is not None
                         and int(e) >= 0)
        detail = f" ({stops})" if stops else ""
        best = _get(last, "best_loss")
        best_text = (f"; best loss {float(best):.4f} at epoch {_get(last, 'best_epoch')}"
                     if best is not None else "")
        self._print(f"{self._prefix(trial)} end    after {ran} of {epochs} epochs: "
                    f"{reason}{detail}{best_text}")


# -- wiring (trainables.sweep) ----------------------------------------------------------
def with_console(options, callbacks: list | None, verbose: bool) -> list:
    """The sweep's callbacks: ``callbacks`` plus, unless ``verbose``, a :class:`ConsoleReporter`
    for ``options`` (a ``trainables.sweep.SweepOptions``)."""
    callbacks = list(callbacks or [])
    if verbose:
        return callbacks
    fixed = options.fixed_config is not None
    trials = len(options.lambdas or [None]) if fixed else options.num_samples
    knobs = (options.searched + (("lmbda",) if options.lambdas else ())
             + (("seed",) if options.confirm else ()))
    return [ConsoleReporter(epochs=options.epochs, trials=trials, knobs=knobs,
                            scheduler=options.scheduler, budget_epochs=options.budget_epochs,
                            budget_device_hours=options.budget_device_hours), *callbacks]


def tune_verbosity(verbose: bool):
    """``RunConfig.verbose``: Tune's default output, or none (the console reporter's)."""
    return None if verbose else 0


def set_restored_console(tuner, options, verbose: bool) -> None:
    """Give a restored Tuner this invocation's console: the experiment state holds the
    original run's callbacks and verbosity (a quiet run resumed with --verbose, or the other
    way round). Ray Client tuners (no local copy of the run config) keep theirs."""
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None:
        return
    from ray import tune

    run_config = internal.get_run_config()
    kept = [c for c in run_config.callbacks or [] if not isinstance(c, ConsoleReporter)]
    run_config.callbacks = with_console(options, kept, verbose)
    run_config.verbose = tune.RunConfig().verbose if verbose else 0


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str | tuple[str, ...]) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


#: Environment of a quiet ``Tuner.fit`` (both read when fit starts): no traceback of a failed
#: trial (the console prints its last line and where error.txt is); Tune's legacy output
#: engine, the one that ``verbose=0`` silences (the new one prints an experiment box anyway).
QUIET_ENV = {"TUNE_PRINT_ALL_TRIAL_ERRORS": "0", "RAY_AIR_NEW_OUTPUT": "0"}
#: Tune's last log lines; the summary says where the results are and how to resume.
QUIET_LOGS = {"ray.tune.tune": ("Wrote the latest version of all result files",
                                "Experiment has been interrupted")}


@contextlib.contextmanager
def quiet_tune(enabled: bool):
    """While ``enabled``: :data:`QUIET_ENV` and :data:`QUIET_LOGS`; all restored after."""
    if not enabled:
        yield
        return
    saved = {key: os.environ.get(key) for key in QUIET_ENV}
    filters = [(logging.getLogger(name), _DropMessage(prefix))
               for name, prefix in QUIET_LOGS.items()]
    os.environ.update(QUIET_ENV)
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
