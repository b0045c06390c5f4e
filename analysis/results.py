"""A sweep's results as two tidy pandas DataFrames, read from the experiment folder alone.

No Ray cluster is needed: the loader reads the files Ray Tune and the trainable write
(``hpcm_tune_experiment.json``, ``experiment_state-*.json`` and every trial folder's
``params.json``, ``result.json`` and ``error.txt``, through :mod:`hpcm_tune.tune_files`), so
it works on a finished sweep, on one still running (trials show as ``running``) and on a copy
of the folder on another machine.

    >>> from analysis import load_experiment
    >>> exp = load_experiment("results/sweep-20261125-171458")
    >>> exp.trials        # one row per trial: config, best loss, per-scale bests, stop reason...
    >>> exp.epochs        # one row per (trial, epoch): every reported metric
    >>> exp.compute_saved()   # epochs / device-hours used vs every trial at its full budget
    >>> exp.export("out")     # trials / epochs / compute_saved as CSV and Parquet
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcm_tune.errors import InputError
from hpcm_tune.names import ALL_STOPPED, CULLED, SCALES, searched_knobs
from hpcm_tune.tune_files import (TrialState, checkpoint_at, experiment_state, latest_checkpoint,
                                  per_epoch, read_params, read_results, sweep_options,
                                  trial_dirs, trial_id_from_dirname)

if TYPE_CHECKING:
    import pandas as pd

    from search_spaces.spaces import FineTuneSpace

log = logging.getLogger(__name__)
#: Epochs a trial must share with the winner (from the third on) to measure the gap noise.
NOISE_EPOCHS = 5
#: A lead of this many gap noises or more is clear: on the demo task's grid (6 configs, seeds
#: 0-2) such orders held at both other seeds 66 times of 66; below 1 noise (or TIE_PCT) a tie.
CLEAR_NOISES = 2.0
TIE_PCT = 0.1
#: Values of ``trials["stop_reason"]``.
STOP_REASONS = (ALL_STOPPED, CULLED, "max epochs", "budget",
                "error", "running", "pending", "interrupted")
#: Those of trials that have not ended: their unrun epochs are no compute saved (yet).
UNFINISHED = ("running", "pending", "interrupted")


@dataclass
class Experiment:
    """A loaded experiment: ``trials`` (one row per trial) and ``epochs`` (per trial and epoch).

    ``trials`` columns: ``trial_id``, ``trial_dir``, ``status`` (Tune's), ``family`` (the freeze
    strategy), the config (searched knobs first, then ``lmbda``, ``epochs`` = the trial's epoch
    budget, ...), ``best_loss`` / ``best_epoch``, ``bpp`` / ``psnr`` / ``ms_ssim`` at the best
    epoch, per scale ``<s>_best`` / ``<s>_best_epoch`` / ``<s>_stop_epoch``, ``last_epoch``,
    ``epochs_run``, ``stop_reason`` (see :data:`STOP_REASONS`), ``error`` (last line of
    ``error.txt``), ``wall_time_s``, ``devices``, ``device_hours``, ``images_per_s`` (mean),
    ``epochs_budget``, ``epochs_saved``, ``device_hours_budget`` (the trial's device-hours per
    epoch times its budget), ``best_checkpoint`` / ``last_checkpoint`` (folders or None).

    ``epochs`` columns: ``trial_id``, ``epoch`` and every key the trial reported (``loss``,
    ``s1``..``s3``, ``bpp*``, ``psnr``, ``ms_ssim``, ``lr/<group>``, ``patience/...``,
    ``time_total_s``, ...). Epochs re-reported after a worker restore appear once (the last).
    """

    path: Path
    options: dict[str, Any]
    trials: "pd.DataFrame"
    epochs: "pd.DataFrame"
    searched: list[str] = field(default_factory=list)

    # -- summaries -----------------------------------------------------------------------
    def finished(self) -> "pd.DataFrame":
        """Trials with a finite best loss and no error, best first."""
        t = self.trials
        ok = t["best_loss"].notna() & (t["stop_reason"] != "error")
        return t[ok].sort_values("best_loss", kind="stable")

    @property
    def lambdas(self) -> list[float]:
        """The rate-distortion lambdas the trials trained at (several: ``run --config
        --lambdas``, a rate-distortion curve)."""
        if "lmbda" not in self.trials:
            return []
        return sorted({float(v) for v in self.trials["lmbda"] if _present(v)})

    def per_lambda(self) -> "pd.DataFrame":
        """The finished trials by lambda: best loss, its epoch, bpp and PSNR there."""
        cols = ["lmbda", "trial_id", "best_loss", "best_epoch", "bpp", "psnr", "epochs_run",
                "stop_reason"]
        done = self.finished().sort_values("lmbda", kind="stable")
        return done[[c for c in cols if c in done]]

    def config_of(self, trial: "pd.Series") -> dict[str, Any]:
        """A trial's searched knobs, as plain Python values (those it has: the unfreeze
        epochs only for progressive unfreezing)."""
        return {k: _plain(trial[k], k) for k in self.searched if k in trial and _present(trial[k])}

    def winner(self) -> dict[str, Any] | None:
        """The best trial and how far ahead it is: of the runner-up, of the best clearly
        different config (``best_other``), of every other trial (``versus``) and of each
        baseline (``search_spaces.BASELINES``: under its key, e.g. ``recommended``, None if
        it did not run or won: ``is_recommended``); read them with :func:`lead_reading`.
        None if no trial finished, or if the trials trained at several lambdas: their losses
        weigh distortion differently, so the lowest lambda's would always "win" (see
        :meth:`per_lambda`); or if the experiment is a seed confirmation, judged over its
        seeds (:func:`analysis.confirmation.compare`)."""
        done = self.finished()
        if done.empty or len(self.lambdas) > 1 or self.options.get("confirm"):
            return None
        best = done.iloc[0]
        out: dict[str, Any] = {
            "trial_id": best["trial_id"],
            "config": self.config_of(best),
            "best_loss": float(best["best_loss"]),
            "best_epoch": int(best["best_epoch"]),
            "trials_finished": len(done),
            "families": self.family_bests(done),
            "runner_up": None,
        }
        out["noise"], out["noise_trials"] = self.gap_noise(
            best["trial_id"], [t for t in done["trial_id"] if t != best["trial_id"]])
        rest = [row for _, row in done.iloc[1:].iterrows()]
        # Where the winner stands against every other trial, in the sweep's noise.
        out["versus"] = [self._versus(best, row, out["noise"]) for row in rest]
        if rest:
            out["runner_up"] = dict(out["versus"][0], neighbour=self.neighbours(best, rest[0]))
        # A search that converged puts its next-best trials next to the winner: their small
        # gap says the region is flat there, not that the winner is uncertain. The lead that
        # matters is over the best trial of a clearly different config.
        others = [v for v, row in zip(out["versus"], rest) if not self.neighbours(best, row)]
        out["best_other"] = others[0] if others else None
        # ... and against what a user would have run without the sweep.
        from search_spaces.presets import BASELINES

        for baseline in BASELINES:
            out[f"is_{baseline.key}"] = baseline.ran_in(best)
            out[baseline.key] = next(
                (v for v, row in zip(out["versus"], rest) if baseline.ran_in(row)), None)
        # ... and where it lies in the searched ranges: at an end, the optimum may lie past it.
        space = self.space()
        out["range_ends"] = space.ends_reached(out["config"]) if space else []
        return out

    def space(self) -> "FineTuneSpace | None":
        """The search space the sweep sampled, rebuilt from its options (as ``run`` built
        it); None for a sweep of a fixed config or a folder without options."""
        o = self.options
        if "epochs" not in o or o.get("fixed_config") is not None:
            return None
        from search_spaces.spaces import FineTuneSpace

        return FineTuneSpace(max_epochs=o["epochs"], wide=o.get("wide_space", False),
                             max_context_lr_ratio=o.get("max_context_lr_ratio", 1.0),
                             base_lr=o["trial"]["base_lr"])

    def gap_noise(self, winner: str, others: list[str]) -> tuple[float, int]:
        """How much the loss gap between the winner and another trial jitters from epoch to
        epoch: the yardstick of the winner's lead, and the number of trials it comes from.

        The trials of a sweep train on the same crops in the same order, so their curves
        share most of their noise; what is left in the epoch-paired gap is the noise that
        decides an order. Per trial with at least :data:`NOISE_EPOCHS` epochs beside the
        winner's from the third on (the first two are the LR warm-up and its aftermath): the
        sd of the gap's second differences over sqrt(6) (a linear trend cancels, white noise
        of sd s gives 6 s^2); the median over such trials (nan if none: trials culled early
        are too short). On the demo task's grid (6 configs, seeds 0-2), an order
        by two or more of these noises held at the other two seeds 66 times of 66, by one
        to two 14 of 16, by less than one 2 of 8.
        """
        import numpy as np

        if self.epochs.empty:
            return math.nan, 0
        losses = self.epochs.pivot_table(index="epoch", columns="trial_id", values="loss")
        losses = losses[losses.index >= 2]
        noises = []
        for other in others:
            if winner not in losses or other not in losses:
                continue
            gap = (losses[other] - losses[winner]).dropna().to_numpy()
            if len(gap) >= NOISE_EPOCHS:
                noises.append(float(np.std(np.diff(gap, 2), ddof=1) / math.sqrt(6)))
        return (float(np.median(noises)) if noises else math.nan), len(noises)

    @staticmethod
    def family_bests(done: "pd.DataFrame") -> list[dict[str, Any]]:
        """Each freeze strategy's best trial, best first, with its number of trials and how
        many of them were culled. A family's median would mostly say which context-LR
        ratios the search happened to try in it (and trials culled early count at
        their loss then); its best trial is what the strategy reached in this sweep."""
        rows = []
        for family, group in done.groupby("family"):
            top = group.loc[group["best_loss"].idxmin()]
            rows.append({"family": family, "best_loss": float(top["best_loss"]),
                         "trial_id": top["trial_id"], "trials": len(group),
                         "culled": int((group["stop_reason"] == CULLED).sum())})
        return sorted(rows, key=lambda r: r["best_loss"])

    def _versus(self, best: "pd.Series", other: "pd.Series", noise: float) -> dict[str, Any]:
        """``other`` against the winner: its config, loss and gap (absolute, %, in the
        sweep's gap noise, :meth:`gap_noise`).

        A culled trial is compared with the winner after as many epochs
        (``after_epochs``): the best loss of each over those epochs. Its own loss is a best so
        far, and set against the winner's final best, the gap would mostly count the epochs
        the culled trial never trained (dozens of noises after 3 epochs of 12)."""
        culled = other["stop_reason"] == CULLED
        after = int(other["epochs_run"]) if culled else None
        if after is not None and after < int(best["epochs_run"]):
            ours, theirs = (self._best_in_first(t, after)
                            for t in (best["trial_id"], other["trial_id"]))
        else:
            after, ours, theirs = None, float(best["best_loss"]), float(other["best_loss"])
        gap = theirs - ours
        return {
            "trial_id": other["trial_id"],
            "config": self.config_of(other),
            "best_loss": float(other["best_loss"]),
            "gap": gap,
            "gap_pct": 100 * gap / abs(ours),
            "gap_in_noise": gap / noise if noise and math.isfinite(noise) else math.nan,
            "culled": culled,
            "epochs_run": int(other["epochs_run"]),
            "after_epochs": after,
        }

    def _best_in_first(self, trial_id: str, epochs: int) -> float:
        """A trial's best loss over its first ``epochs`` epochs."""
        history = self.history(trial_id)
        return float(history["loss"].iloc[:epochs].min())

    def neighbours(self, a: "pd.Series", b: "pd.Series") -> bool:
        """Two trials of practically one config: the same freeze strategy, continuous knobs
        within a factor of NEIGHBOUR_FACTOR, unfreeze epochs within one epoch."""
        for k in self.searched:
            x, y = a.get(k), b.get(k)
            if not (_present(x) and _present(y)):
                if _present(x) != _present(y):
                    return False
            elif k in INT_KNOBS:
                if abs(float(x) - float(y)) > 1:
                    return False
            elif isinstance(x, str) or isinstance(y, str):
                if x != y:
                    return False
            elif max(x, y) > NEIGHBOUR_FACTOR * min(x, y):
                return False
        return True

    def compute_saved(self) -> "pd.DataFrame":
        """Epochs and device-hours used vs every trial running its full epoch budget.

        One row ``all`` and one per config family (freeze strategy). Every trial counts its
        full budget, errored ones included (as the sweep's own summary does); ``errored``
        says how many there are. A trial's full-budget device-hours extrapolate its own
        device-hours per epoch (the experiment's mean for a trial without any epoch).
        """
        import pandas as pd

        t = self.trials
        rows = []
        groups = [("all", t)] + [(f, g) for f, g in t.groupby("family", sort=True)]
        for name, g in groups:
            used, budget = int(g["epochs_run"].sum()), int(g["epochs_budget"].sum())
            dh_used, dh_budget = float(g["device_hours"].sum()), float(g["device_hours_budget"].sum())
            rows.append({
                "family": name, "trials": len(g),
                "errored": int((g["stop_reason"] == "error").sum()),
                "stopped_early": int((g["stop_reason"] == ALL_STOPPED).sum()),
                "epochs_used": used, "epochs_budget": budget, "epochs_saved": budget - used,
                "epochs_saved_fraction": 1 - used / budget if budget else math.nan,
                "device_hours_used": dh_used, "device_hours_budget": dh_budget,
                "device_hours_saved": dh_budget - dh_used,
                "device_hours_saved_fraction": 1 - dh_used / dh_budget if dh_budget else math.nan,
            })
        return pd.DataFrame(rows)

    def history(self, trial_id: str) -> "pd.DataFrame":
        """The epochs of one trial."""
        return self.epochs[self.epochs["trial_id"] == trial_id].sort_values("epoch")

    def export(self, folder: str | Path) -> dict[str, Path]:
        """Writes trials, epochs and compute_saved as CSV and Parquet; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, df in (("trials", self.trials), ("epochs", self.epochs),
                         ("compute_saved", self.compute_saved())):
            csv, parquet = folder / f"{name}.csv", folder / f"{name}.parquet"
            df.to_csv(csv, index=False)
            _for_parquet(df).to_parquet(parquet, index=False)
            written[f"{name}.csv"], written[f"{name}.parquet"] = csv, parquet
        return written


# -- loading ----------------------------------------------------------------------------
def load_experiment(path: str | Path) -> Experiment:
    """Loads a finished or running experiment from its folder (no Ray cluster needed).

    Raises:
        InputError: ``path`` is not a folder or holds no trial folder.
    """
    import pandas as pd

    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: no such experiment folder (give the folder `run` printed)")
    options = sweep_options(root)
    state = experiment_state(root)
    dirs = trial_dirs(root)
    if state:
        # A killed driver can leave a trial it never recorded; resuming replaces it with a
        # new trial, so counting the folder would count its configuration twice.
        unrecorded = [d.name for d in dirs if d.name not in state]
        if unrecorded:
            log.warning("skipped trial folders that Tune's experiment state does not list "
                        "(left by an interrupted driver, or started after its last save): %s",
                        ", ".join(unrecorded))
            dirs = [d for d in dirs if d.name in state]
    if not dirs:
        raise InputError(f"{root} holds no trial folder (no */params.json): is it a Ray Tune "
                         "experiment folder?")

    trial_rows, epoch_frames = [], []
    for d in dirs:
        config = read_params(d)
        rows = read_results(d)
        info = state.get(d.name, TrialState())
        trial_id = (rows[-1].get("trial_id") if rows else None) or info.trial_id \
            or trial_id_from_dirname(d.name)
        history = per_epoch(rows)
        if history:
            frame = pd.DataFrame(history)
            frame = frame.drop(columns=["trial_id"], errors="ignore")
            frame.insert(0, "trial_id", trial_id)
            epoch_frames.append(frame)
        trial_rows.append(_trial_row(d, trial_id, config, history, info, options))

    trials = pd.DataFrame(trial_rows)
    knobs = searched_knobs(options.get("wide_space", False), options.get("fixed_config"))
    searched = [k for k in knobs if k in trials and trials[k].notna().any()]
    trials = _order_columns(trials, searched)
    _add_budget_columns(trials)
    epochs = (pd.concat(epoch_frames, ignore_index=True) if epoch_frames
              else pd.DataFrame(columns=["trial_id", "epoch"]))
    if len(epochs):
        epochs = epochs.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    return Experiment(path=root, options=options, trials=trials, epochs=epochs,
                      searched=searched)


def _error_text(trial_dir: Path, info: TrialState) -> str | None:
    candidates = [trial_dir / "error.txt"]
    if info.error_filename:
        candidates.append(trial_dir / info.error_filename)
    for path in candidates:
        if path.is_file():
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            return lines[-1] if lines else "error (empty error.txt)"
    return None


def _number(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _epoch_or_nan(value: Any) -> float:
    value = _number(value)
    return math.nan if not math.isfinite(value) or value < 0 else value


def best_loss_epoch(history: list[dict]) -> tuple[float, float]:
    """The lowest finite ``loss`` of a trial's epochs (:func:`~hpcm_tune.tune_files.per_epoch`)
    and its epoch, the earliest on a tie as the trainable's strict "<" running best; NaNs if
    no epoch has a finite loss."""
    finite = [(v, h["epoch"]) for h in history if math.isfinite(v := _number(h.get("loss")))]
    return min(finite) if finite else (math.nan, math.nan)


def _trial_row(d: Path, trial_id: str, config: dict, history: list[dict], info: TrialState,
               options: dict) -> dict:
    row: dict[str, Any] = {"trial_id": trial_id, "trial_dir": d.name,
                           "status": info.status or "UNKNOWN"}
    row["family"] = config.get("freeze_strategy", "all")
    for key, value in config.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        row[key] = value
    budget = config.get("epochs", options.get("epochs"))
    row["epochs"] = budget
    error = _error_text(d, info)
    last = history[-1] if history else {}
    row["last_epoch"] = last.get("epoch", math.nan)
    row["epochs_run"] = len(history)
    if history:
        best_loss, best_epoch = best_loss_epoch(history)
        at_best = (next(h for h in history if h["epoch"] == best_epoch)
                   if math.isfinite(best_loss) else {})
        row["best_loss"], row["best_epoch"] = best_loss, best_epoch
        for key in ("bpp", "psnr", "ms_ssim", "mse"):
            row[key] = _number(at_best.get(key))
        for s in SCALES:
            values = [(_number(h.get(s)), h["epoch"]) for h in history]
            values = [(v, e) for v, e in values if math.isfinite(v)]
            fallback = min(values) if values else (math.nan, math.nan)
            # The stopper's own best (it needs an improvement of min_delta to move).
            row[f"{s}_best"] = _number(last.get(f"patience/{s}/best", fallback[0]))
            row[f"{s}_best_epoch"] = _epoch_or_nan(last.get(f"patience/{s}/best_epoch", fallback[1]))
            row[f"{s}_stop_epoch"] = _epoch_or_nan(last.get(f"patience/{s}/stop_epoch"))
        row["wall_time_s"] = _number(last.get("time_total_s"))
        devices = _number(last.get("devices", 1))
        row["devices"] = devices if math.isfinite(devices) and devices > 0 else 1.0
        row["device"] = last.get("device")
        row["device_hours"] = row["wall_time_s"] * row["devices"] / 3600
        speeds = [_number(h.get("images_per_s")) for h in history]
        speeds = [v for v in speeds if math.isfinite(v)]
        row["images_per_s"] = sum(speeds) / len(speeds) if speeds else math.nan
        row["best_checkpoint"] = _as_str(checkpoint_at(d, history, best_epoch))
        row["last_checkpoint"] = _as_str(latest_checkpoint(d))
    else:
        row.update(best_loss=math.nan, best_epoch=math.nan, wall_time_s=0.0, devices=1.0,
                   device=None, device_hours=0.0, images_per_s=math.nan,
                   best_checkpoint=None, last_checkpoint=None)
    row["all_stopped"] = bool(last.get("patience/all_stopped", False))
    row["stop_reason"] = stop_reason(
        status=info.status, error=error, all_stopped=row["all_stopped"],
        epochs_run=len(history), last_epoch=last.get("epoch"), budget=budget,
        sweep_budget=bool(options.get("budget_epochs") or options.get("budget_device_hours")),
        culling=options.get("scheduler", "fifo") != "fifo")
    row["error"] = error
    row["num_failures"] = math.nan if info.num_failures is None else info.num_failures
    return row


def stop_reason(status: str | None, error: str | None, all_stopped: bool, epochs_run: int,
                last_epoch: int | None, budget: int | None, sweep_budget: bool,
                culling: bool = False) -> str:
    """Why a trial ended (one of :data:`STOP_REASONS`).

    ``error``: error.txt exists or Tune says ERROR; ``all scales stopped``: the per-scale
    stopper ended it; ``max epochs``: it ran its whole epoch budget; ``running`` / ``pending``:
    Tune still has it; ``budget``: ended early by the sweep's epoch / device-hour budget;
    ``culled by the scheduler``: ended early by a culling scheduler (ASHA at a rung,
    leader-gap on its prediction);
    ``interrupted``: ended early otherwise (e.g. a driver stopped and never resumed).
    """
    if error is not None or status == "ERROR":
        return "error"
    if all_stopped:
        return ALL_STOPPED
    if budget is not None and last_epoch is not None and int(last_epoch) + 1 >= int(budget):
        return "max epochs"
    if status == "RUNNING":
        return "running"
    if status == "PENDING" or (status is None and epochs_run == 0):
        return "pending"
    if status == "TERMINATED" and sweep_budget:
        return "budget"
    if status == "TERMINATED" and culling:
        return CULLED
    return "interrupted"


def _as_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _order_columns(trials: "pd.DataFrame", searched: list[str]) -> "pd.DataFrame":
    first = ["trial_id", "trial_dir", "status", "family", *searched]
    results = ["best_loss", "best_epoch", "bpp", "psnr", "ms_ssim", "mse",
               *[f"{s}_{k}" for s in SCALES for k in ("best", "best_epoch", "stop_epoch")],
               "last_epoch", "epochs_run", "stop_reason", "error", "all_stopped", "wall_time_s",
               "devices", "device", "device_hours", "images_per_s", "num_failures",
               "best_checkpoint", "last_checkpoint"]
    config = [c for c in trials.columns if c not in first and c not in results]
    cols = first + ["lmbda", "epochs"] + [c for c in config if c not in ("lmbda", "epochs")] + results
    return trials[[c for c in dict.fromkeys(cols) if c in trials.columns]]


def _add_budget_columns(trials: "pd.DataFrame") -> None:
    budget = trials["epochs"].astype(float)
    trials["epochs_budget"] = budget
    trials["epochs_saved"] = budget - trials["epochs_run"]
    run = trials["epochs_run"].astype(float)
    total_run = run.sum()
    mean_per_epoch = trials["device_hours"].sum() / total_run if total_run else 0.0
    per_epoch = (trials["device_hours"] / run.where(run > 0)).fillna(mean_per_epoch)
    trials["device_hours_budget"] = per_epoch * budget


def _for_parquet(df: "pd.DataFrame") -> "pd.DataFrame":
    """Object columns holding mixed types become strings (Parquet needs one type a column)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1:
                out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


def lead_reading(versus: dict[str, Any]) -> str:
    """How the winner's lead over a trial (an entry of ``winner()``) reads in the sweep's
    noise: ``"tie"`` (under one gap noise or 0.1 %), ``"clear"`` (CLEAR_NOISES or more) or
    ``"modest"`` (in between, or no noise estimate above 0.1 %)."""
    pct, in_noise = versus["gap_pct"], versus["gap_in_noise"]
    if pct < TIE_PCT or (math.isfinite(in_noise) and in_noise < 1):
        return "tie"
    if math.isfinite(in_noise) and in_noise >= CLEAR_NOISES:
        return "clear"
    return "modest"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


INT_KNOBS = ("unfreeze_h_epoch", "unfreeze_context_epoch")
#: Continuous knobs (learning-rate ratios and multipliers) within this factor are one config.
NEIGHBOUR_FACTOR = 1.5


def _plain(value: Any, key: str = "") -> Any:
    """numpy scalars to Python (for JSON); the epoch knobs (floats in a column with NaN) to int."""
    if hasattr(value, "item"):
        value = value.item()
    if key in INT_KNOBS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
