"""A Ray Tune experiment around the HPCM trainable: Optuna search, per-scale stopper, resume.

The experiment folder holds Tune's own state plus ``hpcm_tune_experiment.json`` (the sweep
options). ``resume`` only restores folders that carry that marker: restoring unpickles
Tune's state, so it must never touch a directory this project did not create.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpcm_tune.errors import HpcmTuneError
from hpcm_tune.files import atomic_write, is_uri, location
from hpcm_tune.names import MARKER, SCALES, searched_knobs
from hpcm_tune.tune_files import (checkpoint_dirs, experiment_state_files, read_results,
                                  repair_torn_state)
from trainables.confirm import Confirmation
from trainables.spec import TrialSpec
from trainables.warm_start import WarmStart

log = logging.getLogger(__name__)

METRIC, MODE = "best_loss", "min"


class SweepError(HpcmTuneError, RuntimeError):
    """A sweep cannot start or resume; the message says what to do."""


@dataclass
class SweepOptions:
    """Everything a sweep needs; saved in the experiment folder for ``resume``."""

    name: str
    storage_path: str
    # Every trial's settings; the sweep sets each one's epochs, seed and searched knobs.
    trial: TrialSpec = field(default_factory=TrialSpec)
    epochs: int = 12
    num_samples: int = 8
    preset: str = "optuna"
    wide_space: bool = False
    max_context_lr_ratio: float = 1.0  # the searched ratios' upper end (the report's: 1)
    seed: int = 0
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent: int | None = None
    max_failures: int = 2
    optuna_storage: str | None = None
    budget_epochs: int | None = None
    budget_device_hours: float | None = None
    sampler: str = "tpe"  # hpcm_tune.names.SAMPLERS
    scheduler: str = "leader-gap"  # hpcm_tune.names.SCHEDULERS; the per-scale stopper always runs
    # A fixed config (the searched knobs) instead of a search, optionally at several lambdas:
    # one trial per lambda, e.g. to get a rate-distortion curve of a sweep's winner.
    fixed_config: dict[str, Any] | None = None
    lambdas: list[float] | None = None
    # An earlier sweep's results that the search starts from (``run --warm-start``).
    warm_start: WarmStart | None = None
    # No search: an earlier sweep's top configs at new seeds (``tune_main.py confirm``).
    confirm: Confirmation | None = None

    @property
    def path(self) -> str:
        return join_storage(self.storage_path, self.name)

    @property
    def searched(self) -> tuple[str, ...]:
        """The knobs this sweep sets per trial (``hpcm_tune.names.searched_knobs``)."""
        return searched_knobs(self.wide_space, self.fixed_config)

    def to_json(self) -> str:
        """The marker's content: the trial in its flat form, as Tune shows it."""
        return json.dumps({**asdict(self), "trial": self.trial.to_config()}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SweepOptions":
        data = json.loads(text)
        warm, confirm = data.get("warm_start"), data.get("confirm")
        return cls(**{**data, "trial": TrialSpec.from_config(data.get("trial", {})),
                      "warm_start": WarmStart(**warm) if warm else None,
                      "confirm": Confirmation(**confirm) if confirm else None})


def join_storage(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}" if is_uri(storage_path) else str(
        Path(storage_path) / name)


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default spells out every config value, paths included)."""
    return f"trial_{trial.trial_id}"


def _trainable(options: SweepOptions):
    from ray import tune

    from trainables.tune_trainable import hpcm_trainable

    return tune.with_resources(
        hpcm_trainable, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})


def _node_shapes() -> list[dict]:
    """Resources of the alive nodes and of every node type the autoscaler can still launch
    (on a `ray up` cluster with min_workers 0 no GPU node is alive when a sweep starts)."""
    import ray
    from ray._private.state import state

    shapes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    config = state.get_cluster_config()  # None unless an autoscaler published one
    if config is not None:
        shapes += [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]
    return shapes


def max_concurrent_trials(options: SweepOptions) -> int:
    """How many trials the cluster can run at once with the per-trial resources."""
    import ray
    from ray._private.state import state

    if options.max_concurrent:
        return options.max_concurrent
    total = dict(ray.cluster_resources())
    for key, value in (state.get_max_resources_from_cluster_config() or {}).items():
        total[key] = max(total.get(key, 0), value)
    fits = [total.get("CPU", 0) / options.cpus_per_trial]
    if options.gpus_per_trial:
        fits.append(total.get("GPU", 0) / options.gpus_per_trial)
    concurrent = max(1, int(min(fits)))
    if total.get("GPU", 0) and not options.gpus_per_trial:
        log.warning("the cluster has %g GPU(s) but trials ask for none, so they train on the "
                    "CPU; pass --gpus-per-trial (0.25 puts 4 trials on one GPU)", total["GPU"])
    log.info("max_concurrent_trials=%d from the cluster's resources %s", concurrent,
             {k: total[k] for k in ("CPU", "GPU") if k in total})
    return concurrent


def check_resources(options: SweepOptions) -> None:
    """Refuse a trial shape that no node of the cluster can ever hold (never stuck PENDING)."""
    nodes = _node_shapes()
    if not any(n.get("CPU", 0) >= options.cpus_per_trial
               and n.get("GPU", 0) >= options.gpus_per_trial for n in nodes):
        most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        raise SweepError(
            f"a trial asks for {options.cpus_per_trial:g} CPUs and {options.gpus_per_trial:g} GPUs "
            f"but the largest node has {most_cpus:g} CPUs and {most_gpus:g} GPUs: lower "
            "--cpus-per-trial/--gpus-per-trial or add bigger nodes")


def open_optuna_storage(url: str):
    """The Optuna study storage at ``url`` (an RDB URL such as ``sqlite:///study.db``).

    Raises:
        SweepError: it cannot be opened (the first line of the reason, and what to give).
    """
    import optuna
    import sqlalchemy.exc

    try:
        return optuna.storages.RDBStorage(url)
    except (ValueError, ImportError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise SweepError(f"cannot open --optuna-storage {url}: {str(exc).splitlines()[0]}; "
                         "give a writable URL such as sqlite:///study.db") from exc


def _optuna_search(options: SweepOptions):
    """OptunaSearch over the fine-tuning space, starting with the preset's points and what
    an earlier sweep gives (``trainables.warm_start``)."""
    from search_spaces import FineTuneSpace, make_sampler, preset_points, startup_trials
    from stoppers.scheduler import asha_grace_period
    from trainables.optuna_search import ResumableOptunaSearch

    task = options.trial.to_config()
    space = FineTuneSpace(max_epochs=options.epochs, wide=options.wide_space,
                          max_context_lr_ratio=options.max_context_lr_ratio,
                          base_lr=task["base_lr"])
    if space.max_context_lr_ratio > 1 and options.scheduler == "asha":
        log.warning("context-LR ratios above 1 with ASHA: its first rung ranks the trials "
                    "after %d epochs, before a faster learning rate pays off (on the demo task "
                    "it culled every ratio from 1.1 to 3.8 after 3 epochs, and ratio 2 wins "
                    "after 12); --scheduler leader-gap judges them against the leader from "
                    "a third of the budget on, fifo runs them all to the end",
                    asha_grace_period(options.epochs))
    if space.wide and options.scheduler in ("asha", "hyperband"):
        log.warning("--wide-space with --scheduler %s: a higher base LR lags early, as a faster "
                    "context model does (on the demo task, 16 trials at 3 seeds, ASHA culled "
                    "the trials that would have won at 2 seeds of 3 and ended up to 1.9 %% "
                    "behind TPE + FIFO); the default --scheduler leader-gap judges a trial only "
                    "against leaders that train as fast, fifo runs every trial to the end",
                    options.scheduler)
    points = preset_points(options.preset, options.epochs)
    warm = options.warm_start
    told = warm.trials_within(space) if warm and warm.same_task else []
    if told:  # what the earlier sweep ran is known: not run again
        points = [p for p in points if p not in [t["params"] for t in told]]
    elif warm and not warm.same_task:
        best = warm.best_configs(startup_trials(options.num_samples), options.epochs, space)
        points += [p for p in best if p not in points]
    points = [space.complete(p, task) for p in points]
    storage = open_optuna_storage(options.optuna_storage) if options.optuna_storage else None
    search = ResumableOptunaSearch(
        space=space,
        metric=METRIC, mode=MODE, points_to_evaluate=points or None,
        sampler=make_sampler(options.sampler, options.num_samples, options.seed),
        study_name=options.name, storage=storage,
    )
    for trial in told:
        search.add_evaluated_point(trial["params"], trial["best_loss"], user_attrs={
            "warm_start_from": warm.source, "warm_start_trial": trial["trial_id"]})
    return search


def param_space(options: SweepOptions) -> dict[str, Any]:
    """Tune's ``param_space``: every trial's settings in their flat form, the sweep's epoch
    budget and seed; a fixed config's knobs (and its lambdas, a grid) or none of the searched
    ones: those come from the searcher alone, so a knob the search leaves out (the unfreeze
    epochs of a non-progressive trial) stays out of the trial's results."""
    from ray import tune

    trial = options.trial.replace(epochs=options.epochs, seed=options.seed)
    if options.fixed_config is None:
        return trial.to_config(leave_out=options.searched)
    space = trial.replace(**options.fixed_config).to_config()
    if options.lambdas:
        space["lmbda"] = tune.grid_search(list(options.lambdas))
    return space


def build_tuner(options: SweepOptions, callbacks: list | None = None, verbose: bool = False,
                searcher=None):
    """The Tuner of a new sweep (Ray must be initialised); ``callbacks`` are Tune callbacks.
    Unless ``verbose``, Tune prints nothing and ``trainables.console`` a few lines per trial.
    ``searcher``: a Tune searcher instead of the Optuna search (tests: given configs)."""
    from ray import tune

    from stoppers import AllScalesStopper
    from stoppers.scheduler import make_scheduler
    from trainables.console import tune_verbosity, with_console

    if (options.fixed_config is not None or options.confirm is not None) \
            and options.scheduler != "fifo":
        # A curve's losses at different lambdas differ in scale; a confirmation compares
        # every config at every seed, at its full budget.
        raise SweepError(f"{'a fixed config' if options.confirm is None else 'a confirmation'} "
                         f"runs no search: use scheduler 'fifo', not {options.scheduler!r}")
    if options.fixed_config is not None:
        searcher, num_samples = None, 1  # one trial, or one per lambda of the grid
    elif options.confirm is not None:  # the given configs and seeds, in order
        from trainables.given_configs import GivenConfigs

        points = options.confirm.points()
        searcher, num_samples = GivenConfigs(points), len(points)
    else:
        searcher, num_samples = searcher or _optuna_search(options), options.num_samples
    return tune.Tuner(
        _trainable(options),
        param_space=param_space(options),
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric=METRIC, mode=MODE,
            scheduler=make_scheduler(options.scheduler, options.epochs),
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent_trials(options),
            trial_dirname_creator=trial_dirname,
            # A new trial runs in the finished one's worker process (same resources): it
            # skips the seconds of importing torch and compressai (and of a CUDA context).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=options.name,
            storage_path=options.storage_path,
            stop=AllScalesStopper(max_trial_epochs=options.budget_epochs,
                                  max_device_hours=options.budget_device_hours),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            callbacks=with_console(options, callbacks, verbose),
            verbose=tune_verbosity(verbose),
            # Tune always keeps the latest checkpoint too, so this keeps latest + best.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="loss",
                checkpoint_score_order="min"),
        ),
    )


def write_marker(options: SweepOptions) -> None:
    path, content = options.path, options.to_json().encode()
    if is_uri(path):  # remote storage: Tune writes there, the marker goes through pyarrow
        import pyarrow.fs

        fs, root = pyarrow.fs.FileSystem.from_uri(path)
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(f"{root}/{MARKER}") as f:
            f.write(content)
        return
    atomic_write(Path(path) / MARKER, content)


def read_marker(path: str) -> SweepOptions:
    """The options of the experiment at ``path`` (a folder or an s3:// / gs:// URI)."""
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(location(path))
    if fs.get_file_info(f"{root}/{MARKER}").type != pyarrow.fs.FileType.File:
        raise SweepError(f"{path} is not a hpcm-tune experiment (no {MARKER}); "
                         "give the folder that `tune_main.py run` printed")
    with fs.open_input_stream(f"{root}/{MARKER}") as f:
        return SweepOptions.from_json(f.read().decode())


def run_sweep(options: SweepOptions, callbacks: list | None = None, verbose: bool = False,
              searcher=None):
    """Start a new sweep and wait for it; returns Tune's ResultGrid (``build_tuner``'s
    arguments)."""
    from trainables.console import quiet_tune

    check_resources(options)
    _allow_frequent_snapshots()
    tuner = build_tuner(options, callbacks, verbose, searcher)
    write_marker(options)
    with quiet_tune(not verbose):
        return tuner.fit()


def _allow_frequent_snapshots() -> None:
    """Tune snapshots the experiment whenever a trial has saved num_to_keep checkpoints; with
    short epochs that is often, and wanted (a driver crash loses less): skip its warning."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def repair_stale_checkpoints(experiment: Path) -> list[str]:
    """Give every trial whose latest checkpoint is gone the checkpoints saved after it.

    Tune deletes a checkpoint that is neither the best nor the latest as soon as a newer one
    arrives, and saves the experiment state only later: a driver killed in between leaves a
    state whose latest checkpoint no longer exists, and the restore of that trial fails until
    the trial ends in ERROR. The newer checkpoints are on disk, with their epochs in
    ``result.json``: they are registered as the killed driver had registered them, so the
    trial continues from the newest. Returns the repaired trials' folder names.
    """
    from ray import cloudpickle

    states = experiment_state_files(experiment)
    if not states:
        return []
    data = json.loads(states[-1].read_text())
    repaired = []
    for entry in data["trial_data"]:
        meta = json.loads(entry[1])
        field = meta.get("checkpoint_manager") or {}
        if field.get("_type") != "CLOUDPICKLE_FALLBACK":  # Tune's encoding of the manager
            continue
        manager = cloudpickle.loads(bytes.fromhex(field["value"]))
        latest = manager._latest_checkpoint_result
        if latest is None:
            continue
        stale = Path(latest.checkpoint.path)  # Tune's path; the folder is looked up here
        trial_dir = experiment / stale.parent.name
        if (trial_dir / stale.name).exists():
            continue
        logged = {row.get("checkpoint_dir_name"): row for row in read_results(trial_dir)}
        newer = [d for d in checkpoint_dirs(trial_dir) if d.name > stale.name and d.name in logged]
        if not newer:
            continue
        manager._checkpoint_results = [r for r in manager._checkpoint_results if (
            trial_dir / Path(r.checkpoint.path).name).exists()]
        for folder in newer:
            checkpoint = type(latest.checkpoint)(path=str(stale.parent / folder.name),
                                                 filesystem=latest.checkpoint.filesystem)
            manager.register_checkpoint(type(latest)(checkpoint=checkpoint,
                                                     metrics=logged[folder.name]))
        field["value"] = cloudpickle.dumps(manager).hex()
        entry[1] = json.dumps(meta)
        repaired.append(trial_dir.name)
        log.warning("%s: its latest checkpoint %s was deleted after the interrupted driver's "
                    "last save; it continues from %s", trial_dir.name, stale.name,
                    newer[-1].name)
    if repaired:
        atomic_write(states[-1], json.dumps(data).encode())
    return repaired


def resume_sweep(path: str, retry_errored: bool = False, verbose: bool = False):
    """Continue an interrupted sweep from its folder (Tuner.restore)."""
    from ray import tune

    from trainables.console import quiet_tune, set_restored_console

    options = read_marker(path)
    if not tune.Tuner.can_restore(path):
        raise SweepError(f"{path} holds no Tune experiment state to resume from")
    if not is_uri(path):
        repair_torn_state(Path(path), options.name)
        repair_stale_checkpoints(Path(path))
    log.warning("resuming unpickles the experiment state in %s: only resume folders "
                "you created yourself", path)
    check_resources(options)
    _allow_frequent_snapshots()
    # Errored trials stay errored unless asked for (a diverged trial would diverge again);
    # a retry keeps the trial's id, which OptunaSearch maps to its Optuna trial, and
    # continues from the trial's last checkpoint.
    tuner = tune.Tuner.restore(path, trainable=_trainable(options),
                               resume_errored=retry_errored)
    set_restored_console(tuner, options, verbose)
    with quiet_tune(not verbose):
        return tuner.fit(), options


def summarize(results, options: SweepOptions) -> dict[str, Any]:
    """Best config, its per-scale best epochs, epochs used vs the full budget, and how many
    trials ended early for each reason."""
    from stoppers.tune_stopper import budget_spent

    df = results.get_dataframe()
    epochs_used = int(df["training_iteration"].fillna(0).sum()) if len(df) else 0
    budget = len(results) * options.epochs  # trials that failed before reporting count too
    summary: dict[str, Any] = {
        "trials": len(results),
        "errors": len(results.errors),
        "epochs_used": epochs_used,
        "epochs_budget": budget,
        "compute_saved": 1 - epochs_used / budget if budget else math.nan,
        "stopped_early": int(((df.get("patience/all_stopped") == True)  # noqa: E712
                              & (df["training_iteration"] < options.epochs)).sum())
        if "patience/all_stopped" in df else 0,
        "path": options.path,
    }
    # A trial that ended early, neither errored nor stopped by its scales: culled (Tune marks
    # the result of a stop decision done), or still running (or pending) when the sweep ended.
    last = [r.metrics or {} for r in results if r.error is None]
    early = [m for m in last if m.get("epoch") is None or (
        not m.get("patience/all_stopped") and m["epoch"] + 1 < options.epochs)]
    summary["culled"] = sum(1 for m in early if m.get("done"))
    cut = len(early) - summary["culled"]
    spent = budget_spent({str(i): m for i, m in enumerate(last) if "training_iteration" in m},
                         options.budget_epochs, options.budget_device_hours)
    summary["budget_stopped"], summary["interrupted"] = (cut, 0) if spent else (0, cut)
    # Losses at different lambdas weigh distortion differently: a curve has no best trial;
    # a confirmation's is judged over its seeds (``analysis.confirmation``).
    if summary["trials"] > summary["errors"] and len(options.lambdas or []) < 2 \
            and options.confirm is None:
        best = results.get_best_result(metric=METRIC, mode=MODE)
        summary["best_loss"] = best.metrics[METRIC]
        summary["best_config"] = {k: v for k, v in best.config.items() if k in options.searched}
        summary["best_scale_epochs"] = {
            s: best.metrics.get(f"patience/{s}/best_epoch") for s in SCALES}
        summary["best_trial_path"] = best.path
    if options.lambdas:
        rows = df.sort_values("config/lmbda")
        summary["per_lambda"] = [
            {"lmbda": r["config/lmbda"], "best_loss": r[METRIC], "bpp": r["bpp"],
             "psnr": r["psnr"], "epochs": int(r["training_iteration"])}
            for _, r in rows.iterrows()]
    return summary
