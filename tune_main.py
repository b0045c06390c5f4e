#!/usr/bin/env python3
"""hpcm-tune: Ray Tune sweeps for context-aware fine-tuning of HPCM compression models.

  python tune_main.py                      # the embedded demo sweep (tiny model, bundled photos)
  python tune_main.py run [options]        # a sweep
  python tune_main.py resume PATH          # continue an interrupted sweep
  python tune_main.py confirm PATH         # a sweep's top configs again at new seeds
  python tune_main.py finetune [options]   # one fine-tune without Ray, for debugging
  python tune_main.py inspect-model --model base
  python tune_main.py analyze PATH         # tables, plots and report.html of a sweep
  python tune_main.py evaluate CKPT...     # real bitstreams, codec anchors, BD-rate

torch, Ray and the project packages are imported inside the commands so --help is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from analysis import cli as analysis_cli  # argparse only; heavy imports stay in the commands
from hpcm_tune.errors import HpcmTuneError, InputError, UsageError
from hpcm_tune.files import is_uri, location
from trainables import cluster  # standard library only: --help stays instant
from hpcm_tune.names import (FREEZE_STRATEGIES, SAMPLERS, SCHEDULERS, SEARCH_PRESETS,
                             SEARCHED_KNOBS)

if TYPE_CHECKING:
    from trainables.spec import TrialSpec

COMMANDS = ("run", "resume", "confirm", "finetune", "inspect-model", "evaluate", "analyze")
log = logging.getLogger("hpcm-tune")


# -- arguments -------------------------------------------------------------------------
def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="tiny", choices=("tiny", "base", "large"),
                   help="HPCM preset (default: tiny, the shipped model pre-trained on the "
                   "bundled photos)")
    g.add_argument("--checkpoint", help="starting checkpoint: a hpcm-tune model or training "
                   "checkpoint, or an official LIC-HPCM state_dict (with --official)")
    g.add_argument("--official", action="store_true",
                   help="--checkpoint uses the official LIC-HPCM key layout of --model")
    g.add_argument("--train-dir", help="folder of training images (default: bundled photos)")
    g.add_argument("--val-dir", help="folder of validation images (default: bundled photos)")


def _max_side_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-side", type=int, metavar="N",
                   help="downsize validation images whose longer side exceeds N pixels (keeps "
                   "the aspect ratio; bounds memory and time; default: full size)")


def _training_args(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--lmbda", type=float,
                   help="rate-distortion lambda to fine-tune at (required with --checkpoint; "
                   "the demo task's default: 0.0003)")
    g.add_argument("--base-lr", type=float,
                   help="learning rate of g_a/g_s; the other groups scale it (default 1e-4; "
                   "the demo task's: 5e-4)")
    g.add_argument("--epochs", type=int, default=epochs, help="epoch budget per trial")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--crop-size", type=int, default=128)
    g.add_argument("--crops-per-image", type=int,
                   help="random training crops per image and epoch (default 2; the demo "
                   "task's: 6)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--checkpoint-every", type=int, default=1,
                   help="epochs between checkpoints (a new best is always saved)")
    g.add_argument("--keep-scale-best", action="store_true",
                   help="also keep the weights of each scale's best epoch")
    s = p.add_argument_group("per-scale stopper (default: derived from the epoch budget)")
    s.add_argument("--stopper", choices=("budget", "report", "off"),
                   help="budget: relative thresholds, patience a sixth of --epochs; report: the "
                   "original report's absolute settings (patience 50, min_delta 1e-4); off: "
                   "no per-scale stopping (default, the sweep benchmark's best with ASHA; "
                   "budget when a setting below is given)")
    s.add_argument("--patience", type=int)
    s.add_argument("--min-patience", type=int)
    s.add_argument("--max-patience", type=int)
    s.add_argument("--min-delta", type=float)
    s.add_argument("--stopper-warmup-epochs", type=int, dest="warmup_epochs",
                   help="first epochs the stopper does not judge")


def _ray_args(p, dashboard: bool = True) -> None:
    """The Ray cluster and console flags of the commands that run trials."""
    p.add_argument("--address", help="join a running Ray cluster (default: start a local one)")
    if dashboard:
        p.add_argument("--dashboard", action="store_true",
                       help="start the Ray dashboard of the local cluster on 127.0.0.1:8265")
    p.add_argument("--verbose", action="store_true",
                   help="Ray Tune's own console output instead of a few lines per trial")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tune_main.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a sweep (the default command)")
    _model_args(run)
    _max_side_arg(run)
    _training_args(run, epochs=12)
    g = run.add_argument_group("search")
    g.add_argument("--preset", default="optuna", choices=SEARCH_PRESETS,
                   help="the configs run first (default optuna: the two baselines, the "
                   "report's recommendation and plain fine-tuning; see README)")
    g.add_argument("--wide-space", action="store_true",
                   help="also search base_lr (within 4x of --base-lr, both ways) and "
                   "h_multiplier (0.1 to 1); the preset's configs (the baselines) keep "
                   "--base-lr and h_multiplier 0.5")
    g.add_argument("--max-context-lr-ratio", type=float, default=1.0, metavar="R",
                   help="search context-LR ratios up to R (default 1, the report's range; "
                   "above 1 the context model trains faster than the transforms: use it with "
                   "the default --scheduler leader-gap, or fifo; not asha)")
    g.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                   help="Optuna sampler (tpe: random start-up of a quarter of the trials, then "
                   "multivariate TPE with constant liar)")
    g.add_argument("--scheduler", choices=SCHEDULERS,
                   help="leader-gap (the default): from 1/3 of --epochs, cull a trial whose "
                   "gap to the leader at the same epoch predicts it ends more than 0.5%% behind "
                   "the leader's best, the leader chosen among the trials that train every "
                   "layer group at least as fast; asha: cull trials behind their peers at "
                   "rungs of 1/9, 1/3 of --epochs (the per-scale stopper ends the leaders); "
                   "hyperband: asynchronous Hyperband, ASHA's brackets: some trials are first "
                   "ranked at 1/3 of --epochs or never (a hedge for slow starters, for more "
                   "compute); fifo: no culling")
    g.add_argument("--num-samples", type=int, default=8, help="number of trials")
    g.add_argument("--optuna-storage", help="persist the study, e.g. sqlite:///study.db")
    g.add_argument("--warm-start", metavar="SWEEP",
                   help="start the search from an earlier sweep's folder: the same task's "
                   "trials are told to the sampler; another task's best configs run first")
    g.add_argument("--config", help="no search: fine-tune this JSON config of the searched "
                   "knobs (e.g. the best_config a sweep printed)")
    g.add_argument("--lambdas", help="with --config: one trial per lambda, comma-separated, "
                   "e.g. 0.0035,0.0067,0.013,0.025 (a rate-distortion curve)")
    g.add_argument("--budget-epochs", type=int, help="stop the sweep after this many epochs")
    g.add_argument("--budget-device-hours", type=float,
                   help="stop the sweep after this many device-hours")
    c = run.add_argument_group("cluster")
    c.add_argument("--cpus-per-trial", type=float, default=1)
    c.add_argument("--gpus-per-trial", type=float, default=0,
                   help="GPUs per trial; fractions share a GPU (default 0 = CPU)")
    c.add_argument("--max-concurrent", type=int, help="default: from the cluster's resources")
    c.add_argument("--max-failures", type=int, default=2,
                   help="retries of a trial after a worker failure")
    c.add_argument("--storage-path", default="results",
                   help="local folder, NFS path or s3:// URI for results (default: ./results)")
    c.add_argument("--name", help="experiment name (default: sweep-<date>-<time>)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace an existing experiment of the same name")
    _ray_args(c)
    c.add_argument("--wandb-project", help="also log trials to W&B (key from $WANDB_API_KEY)")
    c.add_argument("--mlflow-uri", help="also log trials to this MLflow tracking URI "
                   "(credentials from the MLFLOW_TRACKING_* environment variables)")

    resume = sub.add_parser("resume", help="continue an interrupted sweep")
    resume.add_argument("path", help="the experiment folder that `run` printed")
    resume.add_argument("--retry-errored", action="store_true",
                        help="restart trials that ended with an error")
    _ray_args(resume, dashboard=False)

    confirm = sub.add_parser(
        "confirm", help="train a sweep's top configs again at new seeds",
        description="Train the best configs of a finished sweep again at new training seeds "
        "(same task and epoch budget, no culling) and compare them seed by seed: does the "
        "winner's lead hold? Writes a new experiment next to the sweep; `analyze` reads it.")
    confirm.add_argument("path", help="the sweep folder that `run` printed")
    confirm.add_argument("--top", type=int, default=2,
                         help="how many of the sweep's best configs (default 2: the winner "
                         "and the runner-up)")
    confirm.add_argument("--no-plain", dest="with_plain", action="store_false",
                         help="leave out plain fine-tuning (context-LR ratio 1, nothing frozen), "
                         "which is otherwise confirmed too when it ran in the sweep and is not "
                         "among the top configs: the control the winner has to beat")
    confirm.add_argument("--seeds", type=int, default=2,
                         help="new training seeds per config (default 2; with the sweep's own "
                         "result of each config that is 3 seeds)")
    confirm.add_argument("--name", help="experiment name (default: <sweep folder>-confirm)")
    confirm.add_argument("--cpus-per-trial", type=float, help="default: the sweep's")
    confirm.add_argument("--gpus-per-trial", type=float,
                         help="default: the sweep's (0 trains on the CPU)")
    confirm.add_argument("--max-concurrent", type=int,
                         help="default: the sweep's, else from the cluster's resources")
    _ray_args(confirm)

    ft = sub.add_parser("finetune", help="one fine-tune without Ray (same code path)")
    _model_args(ft)
    _max_side_arg(ft)
    _training_args(ft, epochs=12)
    g = ft.add_argument_group("layer-wise learning rates")
    g.add_argument("--context-lr-ratio", type=float, default=0.1,
                   help="context model's LR / base LR (above 1: it trains faster)")
    g.add_argument("--freeze-strategy", default="entropy", choices=FREEZE_STRATEGIES)
    g.add_argument("--unfreeze-h-epoch", type=int, default=0)
    g.add_argument("--unfreeze-context-epoch", type=int, default=0)
    g.add_argument("--out", default="results/finetune", help="output folder")
    g.add_argument("--resume", action="store_true", help="continue from OUT/latest")

    inspect = sub.add_parser("inspect-model", help="parameter groups, LRs and freezing")
    _model_args(inspect)
    inspect.add_argument("--context-lr-ratio", type=float, default=0.1)
    inspect.add_argument("--freeze-strategy", default="entropy", choices=FREEZE_STRATEGIES)
    inspect.add_argument("--epoch", type=int, default=0, help="show freezing at this epoch")

    analysis_cli.add_evaluate_parser(sub)
    analysis_cli.add_analyze_parser(sub)
    return parser


# -- shared helpers --------------------------------------------------------------------
def _stopper_settings(args: argparse.Namespace) -> dict | None:
    """The per-scale stopper of --stopper and the flags that override its settings."""
    from stoppers import stopper_settings

    overrides = {key: getattr(args, key) for key in
                 ("patience", "min_patience", "max_patience", "min_delta", "warmup_epochs")
                 if getattr(args, key) is not None}
    if args.stopper is None:
        args.stopper = "budget" if overrides else "off"
        log.info("per-scale stopper: %s (%s)", args.stopper,
                 "stopper settings given" if overrides else "the default: it is for budgets "
                 "long enough that curves flatten; on the demo task it ended no trial early "
                 "within 12 epochs. --stopper budget turns it on")
    if args.stopper == "off" and overrides:
        raise UsageError(f"--stopper off takes no stopper settings, got "
                         f"{', '.join('--' + k.replace('_', '-') for k in overrides)}")
    try:
        settings = stopper_settings(args.stopper, args.epochs, overrides)
    except InputError as exc:
        raise UsageError(f"per-scale stopper: {exc}; adjust --patience/--min-patience/"
                         "--max-patience/--min-delta/--stopper-warmup-epochs") from exc
    if args.stopper == "budget":
        log.info("per-scale stopper for a %d-epoch budget: %s", args.epochs, settings)
    return settings


class StartModel(NamedTuple):
    path: str
    kind: str  # "project" or "official"
    preset: str
    pad_multiple: int  # the image sides the model codes are multiples of


def _start_checkpoint(args: argparse.Namespace) -> StartModel:
    """The checkpoint file trials start from, validated once here rather than in every
    trial. Any checkpoint the project wrote is accepted: a model file, a training state
    (``trial_state.pt``, ``best.pt``) or the folder holding one (see
    ``analysis.evaluate.resolve_checkpoint``)."""
    if args.checkpoint is None:
        if args.model != "tiny":
            raise UsageError(f"fine-tuning {args.model} needs a trained checkpoint: pass "
                             "--checkpoint PATH (add --official for a LIC-HPCM file)")
        from trainables.pretrain import TINY_PAD_MULTIPLE, pretrained_tiny

        return StartModel(str(pretrained_tiny()), "project", "tiny", TINY_PAD_MULTIPLE)
    given = Path(args.checkpoint).expanduser().resolve()
    if not given.exists():
        raise UsageError(f"checkpoint file not found: {given}")
    import hpcm
    from analysis.evaluate import resolve_checkpoint

    path = Path(resolve_checkpoint(given).path)  # a folder: the checkpoint file it holds
    if args.official:
        model = hpcm.load_official_checkpoint(path, variant=args.model)
        return StartModel(str(path), "official", args.model, model.config.pad_multiple)
    model = hpcm.load_model(path)
    if model.config.name != args.model:
        log.info("the checkpoint is a %s model; --model %s ignored", model.config.name,
                 args.model)
    return StartModel(str(path), "project", model.config.name, model.config.pad_multiple)


def _trial_spec(args: argparse.Namespace) -> TrialSpec:
    """The trial settings of ``run`` and ``finetune``: the one place flags become a
    ``TrialSpec``. Folders and the checkpoint are checked here, once, not in every trial."""
    from trainables.spec import TrialSpec

    for name in ("train_dir", "val_dir"):
        folder = getattr(args, name)
        if folder is not None and not Path(folder).is_dir():
            raise UsageError(f"--{name.replace('_', '-')} {folder}: no such folder")
        if folder is not None:
            from trainables.data import check_image_folder

            check_image_folder(folder, args.crop_size if name == "train_dir" else None)
    checkpoint, kind, preset, multiple = _start_checkpoint(args)
    if args.lmbda is None:  # asked only now: a bad checkpoint is the first thing to report
        raise UsageError("--lmbda is required with --checkpoint: the rate-distortion lambda "
                         "to fine-tune at (e.g. 0.0067 for HPCM_Base_0.0067)")
    if args.crop_size % multiple:  # else every trial fails at its first batch
        raise UsageError(f"--crop-size {args.crop_size}: the {preset} model codes images whose "
                         f"sides are multiples of {multiple}; pass --crop-size "
                         f"{max(multiple, args.crop_size - args.crop_size % multiple)}")
    _warn_large_validation_images(args, preset)
    # finetune's fixed knobs; run's are searched (base_lr too when given)
    knobs = {k: getattr(args, k) for k in SEARCHED_KNOBS if getattr(args, k, None) is not None}
    return TrialSpec.from_config({
        "model": preset, "checkpoint": checkpoint, "checkpoint_kind": kind,
        "train_dir": args.train_dir and str(Path(args.train_dir).resolve()),
        "val_dir": args.val_dir and str(Path(args.val_dir).resolve()),
        "max_side": args.max_side, "checkpoint_every": args.checkpoint_every,
        "keep_scale_best": args.keep_scale_best, "stopper": _stopper_settings(args),
        "lmbda": args.lmbda, "epochs": args.epochs, "seed": args.seed,
        "batch_size": args.batch_size, "crop_size": args.crop_size,
        "crops_per_image": args.crops_per_image, **knobs,
    })


def _warn_large_validation_images(args: argparse.Namespace, preset: str) -> None:
    """Every epoch validates on whole images: say so when one is large enough to take GBs."""
    if args.val_dir is None:
        return  # the bundled photos are small
    from trainables.data import (downsized_size, image_sizes, large_image_warning,
                                 list_images)

    sizes = {p.name: size for p, size in image_sizes(list_images(args.val_dir)).items()}
    if args.max_side is not None:
        sizes = {n: downsized_size(*wh, args.max_side) for n, wh in sizes.items()}
    warning = large_image_warning(sizes, preset)
    if warning:
        log.warning("%s", warning)


def _fixed_config(args: argparse.Namespace) -> tuple[dict | None, list[float] | None]:
    """The validated --config / --lambdas of a run without search."""
    from trainables.spec import TrialSpec

    if args.config is None:
        if args.lambdas:
            raise UsageError("--lambdas needs --config (the config to fine-tune at each lambda)")
        return None, None
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read --config {args.config}: {exc}") from exc
    config = config.get("best_config", config) if isinstance(config, dict) else config
    if not isinstance(config, dict) or not set(config) <= set(SEARCHED_KNOBS):
        raise UsageError(f"--config {args.config} must be a JSON object with keys among "
                         f"{', '.join(SEARCHED_KNOBS)}")
    TrialSpec.from_config({**config, "epochs": args.epochs})  # validates the values
    lambdas = None
    if args.lambdas:
        try:
            lambdas = [float(v) for v in args.lambdas.split(",")]
        except ValueError as exc:
            raise UsageError(f"--lambdas {args.lambdas}: not a comma-separated list of numbers") from exc
        if not all(v > 0 and math.isfinite(v) for v in lambdas):
            raise UsageError(f"--lambdas must all be positive and finite, got {args.lambdas}")
    return config, lambdas


def _resolve_task(args: argparse.Namespace) -> None:
    """Fill the task settings left unset: the demo task's for the pre-trained tiny, the
    library's defaults otherwise (where there is a safe one); log what was chosen."""
    if args.checkpoint is None and args.model == "tiny":
        from trainables.demo import DEMO_TASK
        from trainables.pretrain import PRETRAIN_RECIPE

        chosen = {k: v for k, v in DEMO_TASK.items() if getattr(args, k) is None}
        for key, value in chosen.items():
            setattr(args, key, value)
        log.info("demo task: derive a lower-rate tiny model, fine-tuning the pre-trained one "
                 "(lambda %g) at lambda %g; demo settings used: %s", PRETRAIN_RECIPE.lmbda,
                 args.lmbda, chosen or "none (all given)")
        return
    if args.crops_per_image is None:
        args.crops_per_image = 2
    if args.base_lr is None:
        args.base_lr = 1e-4


def _check_numbers(args: argparse.Namespace) -> None:
    checks = {"--lmbda": args.lmbda is None or args.lmbda > 0, "--epochs": args.epochs > 0,
              "--batch-size": args.batch_size > 0, "--crop-size": args.crop_size > 0,
              "--crops-per-image": args.crops_per_image > 0,
              "--checkpoint-every": args.checkpoint_every > 0}
    if hasattr(args, "num_samples"):
        checks.update({"--num-samples": args.num_samples > 0,
                       "--cpus-per-trial": args.cpus_per_trial > 0,
                       "--gpus-per-trial": args.gpus_per_trial >= 0,
                       "--budget-epochs": args.budget_epochs is None or args.budget_epochs > 0})
    for flag, ok in checks.items():
        value = getattr(args, flag[2:].replace('-', '_'))
        if isinstance(value, float) and not math.isfinite(value):  # inf passes "> 0"
            raise UsageError(f"{flag} must be positive and finite, got {value}")
        if not ok:
            raise UsageError(f"{flag} must be positive, got {value}")
    for flag in ("--base-lr", "--context-lr-ratio", "--min-delta", "--budget-device-hours"):
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} must be a finite number, got {value}")
    if getattr(args, "budget_device_hours", None) is not None and args.budget_device_hours <= 0:
        raise UsageError(f"--budget-device-hours must be positive, got {args.budget_device_hours}")
    if getattr(args, "max_side", None) is not None and args.max_side < 16:
        raise UsageError(f"--max-side must be at least 16 pixels, got {args.max_side}")


# -- commands --------------------------------------------------------------------------
def _check_storage(storage: str, optuna_storage: str | None,
                   flag: str = "--storage-path") -> None:
    """Fail before any work when results or the Optuna study cannot be written."""
    if not is_uri(storage):
        folder = Path(storage)
        while not folder.exists():  # probe the nearest existing folder; create nothing yet
            folder = folder.parent
        try:
            if not folder.is_dir():
                raise NotADirectoryError(20, "not a directory", str(folder))
            probe = folder / f".hpcm-tune-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"cannot write results to {flag} {storage}: "
                             f"{exc.strerror or exc}") from exc
    if optuna_storage:
        from trainables.sweep import open_optuna_storage

        open_optuna_storage(optuna_storage)


def cmd_run(args: argparse.Namespace) -> int:
    _resolve_task(args)
    _check_numbers(args)
    address = cluster.cluster_address(args.address)
    if address is None:
        _check_local_resources(args)
    cluster.prepare(address)
    from trainables.sweep import SweepOptions, join_storage, run_sweep
    from trainables.tracking import tracking_callbacks
    from trainables.warm_start import load_warm_start

    name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    storage = location(args.storage_path)
    target = join_storage(storage, name)
    replace = not is_uri(target) and Path(target).exists()
    if replace and not args.overwrite:
        raise UsageError(f"experiment {target} already exists: choose another --name, "
                         "`resume` it, or pass --overwrite")
    fixed_config, lambdas = _fixed_config(args)
    args.scheduler = scheduler_for(args.scheduler, fixed_config is not None)
    if fixed_config is None:
        _check_search(args)
    elif args.warm_start:
        raise UsageError("--warm-start starts a search from an earlier sweep; --config runs "
                         "no search: drop one of them")
    _check_storage(storage, args.optuna_storage)
    trial = _trial_spec(args)
    if replace and Path(target) in Path(trial.checkpoint).parents:
        raise UsageError(f"--checkpoint {args.checkpoint} lies inside the experiment that "
                         "--overwrite would replace; copy it elsewhere first or choose another "
                         "--name")
    options = SweepOptions(
        name=name, storage_path=storage, trial=trial, epochs=args.epochs,
        num_samples=args.num_samples, preset=args.preset, wide_space=args.wide_space,
        max_context_lr_ratio=args.max_context_lr_ratio, seed=args.seed,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, max_failures=args.max_failures,
        optuna_storage=args.optuna_storage, budget_epochs=args.budget_epochs,
        budget_device_hours=args.budget_device_hours,
        sampler=args.sampler, scheduler=args.scheduler,
        fixed_config=fixed_config, lambdas=lambdas,
    )
    if args.warm_start:
        options.warm_start = load_warm_start(location(args.warm_start), options)
    callbacks = tracking_callbacks(args.wandb_project, args.mlflow_uri, name)
    if not replace:
        return _sweep(address, args.dashboard,
                      lambda: (run_sweep(options, callbacks=callbacks, verbose=args.verbose),
                               options), verbose=args.verbose)
    # Every check that can refuse the sweep has passed, but some run only once Ray is up:
    # the old experiment is moved aside, deleted once the new sweep has started, put back
    # if it never starts.
    from trainables.replace import PreviousExperiment

    previous = PreviousExperiment(target)
    callbacks = [*(callbacks or []), previous.move_aside()]
    try:
        return _sweep(address, args.dashboard,
                      lambda: (run_sweep(options, callbacks=callbacks, verbose=args.verbose),
                               options), verbose=args.verbose)
    finally:
        previous.settle()


def _check_local_resources(args: argparse.Namespace) -> None:
    """A local cluster has this machine's CPUs and GPUs: refuse a trial that cannot fit
    before Ray starts (a cluster's resources are checked once joined)."""
    import os

    cpus = os.cpu_count() or 1
    if args.cpus_per_trial > cpus:
        raise UsageError(f"--cpus-per-trial {args.cpus_per_trial:g} but this machine has {cpus} "
                         "CPUs; lower it, or join a cluster with --address")
    if args.gpus_per_trial > 0:
        import torch

        gpus = torch.cuda.device_count()
        have = f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "no GPU torch can use"
        if args.gpus_per_trial > gpus:
            raise UsageError(f"--gpus-per-trial {args.gpus_per_trial:g} but this machine has "
                             f"{have}; lower --gpus-per-trial (0 trains on the CPU), or join "
                             "a cluster with --address")


def _check_search(args: argparse.Namespace) -> None:
    """The search space and preset of a sweep, checked before Ray starts."""
    from search_spaces import FineTuneSpace, preset_points

    try:
        FineTuneSpace(max_epochs=args.epochs, wide=args.wide_space)
        preset_points(args.preset, args.epochs)
    except InputError as exc:
        raise UsageError(f"--epochs {args.epochs}: {exc}; pass --epochs 3 or more, or "
                         "--config to fine-tune one fixed config") from exc
    try:
        FineTuneSpace(max_epochs=args.epochs, max_context_lr_ratio=args.max_context_lr_ratio)
    except InputError as exc:
        raise UsageError(f"--max-context-lr-ratio: {exc}") from exc


def cmd_resume(args: argparse.Namespace) -> int:
    path = location(args.path)
    if not is_uri(path):
        if not Path(path).exists():
            raise UsageError(f"{args.path} does not exist; give the experiment folder that "
                             "`tune_main.py run` printed")
        from trainables.sweep import read_marker

        read_marker(path)  # a folder this project did not create is refused before Ray starts
    address = cluster.cluster_address(args.address)
    cluster.prepare(address)
    from trainables.sweep import resume_sweep

    return _sweep(address, False, lambda: resume_sweep(path, retry_errored=args.retry_errored,
                                                       verbose=args.verbose),
                  verbose=args.verbose)


def cmd_confirm(args: argparse.Namespace) -> int:
    path = location(args.path)
    if is_uri(path):
        raise UsageError(f"{args.path}: confirm reads a local sweep folder; copy the sweep from "
                         "remote storage first")
    if not Path(path).is_dir():
        raise UsageError(f"{args.path} does not exist; give the sweep folder that "
                         "`tune_main.py run` printed")
    for flag, value in (("--top", args.top), ("--seeds", args.seeds),
                        ("--max-concurrent", args.max_concurrent or 1)):
        if value < 1:
            raise UsageError(f"{flag} must be 1 or more, got {value}")
    cpus, gpus = args.cpus_per_trial, args.gpus_per_trial
    if cpus is not None and not (math.isfinite(cpus) and cpus > 0):
        raise UsageError(f"--cpus-per-trial must be positive and finite, got {cpus}")
    if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
        raise UsageError(f"--gpus-per-trial must be 0 or more and finite, got {gpus}")
    from analysis.confirmation import pick_candidates
    from analysis.results import load_experiment
    from trainables.confirm import confirmation_options
    from trainables.sweep import join_storage, read_marker, run_sweep

    source = read_marker(path)
    candidates = pick_candidates(load_experiment(path), args.top, args.with_plain)
    storage = str(Path(path).resolve().parent)  # next to the sweep, wherever it was copied
    name = args.name or f"{Path(path).resolve().name}-confirm"
    target = join_storage(storage, name)
    if Path(target).exists():
        raise UsageError(f"experiment {target} already exists: choose another --name, or "
                         "`resume` it")
    for what, file in (("start checkpoint", source.trial.checkpoint),
                       ("--train-dir", source.trial.train_dir),
                       ("--val-dir", source.trial.val_dir)):
        if file and not Path(file).exists():
            raise UsageError(f"the sweep's {what} {file} does not exist here: confirm on the "
                             "machine (or with the files) the sweep ran with")
    options = confirmation_options(
        source, str(Path(path).resolve()), candidates, args.seeds, name, storage,
        cpus_per_trial=cpus, gpus_per_trial=gpus, max_concurrent=args.max_concurrent)
    args.cpus_per_trial, args.gpus_per_trial = options.cpus_per_trial, options.gpus_per_trial
    log.info("confirming %d config(s) of %s (trials %s) at seeds %s: %d trials of %d epochs",
             len(candidates), source.name, ", ".join(c["trial_id"] for c in candidates),
             options.confirm.seeds, options.num_samples, options.epochs)
    address = cluster.cluster_address(args.address)
    if address is None:
        _check_local_resources(args)
    cluster.prepare(address)
    return _sweep(address, args.dashboard,
                  lambda: (run_sweep(options, verbose=args.verbose), options),
                  verbose=args.verbose)


def _sweep(address: str | None, dashboard: bool, fit, verbose: bool = False) -> int:
    """Run ``fit() -> (ResultGrid, SweepOptions)`` on Ray and print the summary; exit status
    1 when every trial errored, 130 when interrupted (Ctrl-C). Unless ``verbose``, the
    workers' output stays in Ray's logs."""
    import ray

    from trainables.sweep import summarize

    cluster.connect(address, dashboard=dashboard, verbose=verbose)
    try:
        start = time.perf_counter()
        results, options = fit()
        summary = summarize(results, options)
        summary["worker_logs"] = cluster.worker_log_dir()
        if "best_config" in summary and options.fixed_config is None and not is_uri(options.path):
            summary["lead"] = _lead(options.path)
        if options.confirm is not None and not is_uri(options.path):
            summary["confirmation"] = _confirmation(options.path)
        _print_summary(summary, time.perf_counter() - start)
    finally:
        ray.shutdown()
    if summary["interrupted"]:
        return 130  # the shell's status for Ctrl-C
    return 1 if summary["trials"] and summary["errors"] == summary["trials"] else 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from trainables.local_session import LocalSession
    from trainables.trial import run_trial

    _resolve_task(args)
    _check_numbers(args)
    out = Path(args.out)
    if args.resume and not (out / "latest").is_dir():
        raise UsageError(f"--resume: {out}/latest does not exist")
    if not args.resume and (out / "latest").exists():
        raise UsageError(f"{out} already holds a fine-tune: pass --resume or another --out")
    _check_storage(str(out), None, flag="--out")
    metrics = run_trial(_trial_spec(args), LocalSession(out, resume=args.resume))
    if not metrics:  # resumed at its epoch budget: nothing was run
        raise UsageError(f"--resume: the fine-tune in {out} already ran its {args.epochs} "
                         "epochs; pass a larger --epochs to continue it")
    print(f"\nbest loss {metrics['best_loss']:.4f} at epoch {metrics['best_epoch']} (numbered "
          f"from 0); weights and state in {out.resolve()}")
    return 0


def cmd_inspect_model(args: argparse.Namespace) -> int:
    import hpcm
    from trainables.layer_lr import LayerLRConfig, LayerLRManager

    if args.checkpoint:
        model = (hpcm.load_official_checkpoint(args.checkpoint, variant=args.model)
                 if args.official else hpcm.load_model(args.checkpoint))
    else:
        model = hpcm.create_model(args.model)
    progressive = dict(unfreeze_h_epoch=1, unfreeze_context_epoch=2)
    config = LayerLRConfig(context_lr_ratio=args.context_lr_ratio,
                           freeze_strategy=args.freeze_strategy,
                           **(progressive if args.freeze_strategy == "progressive" else {}))
    manager = LayerLRManager(model, config)
    manager.apply(args.epoch)
    total = sum(p.numel() for p in model.parameters())
    print(f"HPCM-{model.config.name}: {total:,} parameters; freeze strategy "
          f"{config.freeze_strategy}, epoch {args.epoch}")
    print(f"{'group':<9}{'parameters':>13}{'lr':>11}  frozen  starts")
    for row in manager.table(args.epoch):
        starts = "never" if row["starts_epoch"] is None else row["starts_epoch"]
        print(f"{row['group']:<9}{row['parameters']:>13,}{row['lr']:>11.2e}  "
              f"{'yes' if row['frozen'] else 'no':<6}  {starts}")
    print(f"trainable now: {manager.trainable_parameter_count():,}")
    return 0


def scheduler_for(asked: str | None, fixed_config: bool) -> str:
    """The scheduler a sweep runs: ``asked`` (``--scheduler``), else leader-gap, the one the
    sweep benchmark showed best (README, Performance). A fixed config (``--config``) is no
    search: nothing to cull, which is logged."""
    if fixed_config:
        if asked != "fifo":
            log.info("--config runs no search, so no scheduler culls its trials (a scheduler "
                     "would rank losses of different lambdas against each other)%s",
                     f": --scheduler {asked} not used" if asked else "")
        return "fifo"
    return asked or "leader-gap"


def _lead(path: str) -> list[str]:
    """The winner's standing in the sweep's own noise, and where it lies in the searched
    ranges, read from the experiment folder."""
    from analysis.report import lead_summary, range_notes
    from analysis.results import load_experiment

    winner = load_experiment(path).winner()
    if not winner:
        return []
    return [lead_summary(winner), *(f"range: {note}" for note in range_notes(winner))]


def _confirmation(path: str) -> list[str]:
    """A seed confirmation's verdicts, read from the experiment folder."""
    from analysis.confirmation import compare, summary_lines
    from analysis.results import load_experiment

    return summary_lines(compare(load_experiment(path)))


def this_command() -> str:
    """How to run this CLI again from here, for the commands the summary prints: ``python
    tune_main.py`` where ``python`` on PATH is this interpreter (an activated venv), else this
    interpreter's path (``.venv/bin/python`` after the README's first command, where a bare
    ``python`` lacks the project's packages)."""
    on_path = shutil.which("python")
    same = on_path is not None and os.path.abspath(on_path) == os.path.abspath(sys.executable)
    return f"{'python' if same else _from_here(sys.executable)} {_from_here(__file__)}"


def _from_here(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it, quoted for a shell."""
    relative = os.path.relpath(path)
    return shlex.quote(os.path.abspath(path) if relative.startswith("..") else relative)


def _print_summary(summary: dict, wall_s: float) -> None:
    ended = ("interrupted after %.0f s: `resume` (below) continues it" if summary["interrupted"]
             else "finished in %.0f s") % wall_s
    print(f"\n=== sweep {ended} ===")
    cut = [f"{summary[key]} {words}" for key, words in (
        ("budget_stopped", "stopped when the sweep's budget was spent"),
        ("interrupted", "interrupted")) if summary[key]]
    print(f"trials: {summary['trials']} ({summary['errors']} errored, "
          f"{summary['stopped_early']} stopped early by the per-scale stopper, "
          f"{summary['culled']} culled by the scheduler{''.join(', ' + c for c in cut)})")
    if summary["interrupted"]:
        saved = "so far"
    elif summary["errors"] == summary["trials"]:
        saved = "every trial errored: its error.txt says why"
    else:
        saved = f"compute saved: {summary['compute_saved']:.0%}" + (
            ", the errored trials' unrun epochs included" if summary["errors"] else "")
    print(f"epochs used: {summary['epochs_used']} of {summary['epochs_budget']} ({saved})")
    if "best_config" in summary:
        print(f"best loss: {summary['best_loss']:.4f}")
        print(f"best config: {json.dumps(summary['best_config'])}")
        print(f"best trial's per-scale best epochs: {summary['best_scale_epochs']}")
    for line in summary.get("lead", []):
        print(line)
    for line in summary.get("confirmation", []):
        print(line)
    for row in summary.get("per_lambda", []):
        print(f"lambda {row['lmbda']:<8g} best loss {row['best_loss']:.4f}  bpp {row['bpp']:.4f}  "
              f"PSNR {row['psnr']:.2f} dB  ({row['epochs']} epochs)")
    print(f"results: {summary['path']} (every epoch: trial_<id>/result.json)")
    if summary.get("worker_logs"):
        print(f"worker logs: {summary['worker_logs']}/worker-*-<pid>.err (pid: in result.json)")
    command, path = this_command(), shlex.quote(summary["path"])
    print(f"analyse: {command} analyze {path}")
    print(f"resume:  {command} resume {path}")
    if "best_config" in summary and summary.get("lead"):  # a search's winner
        print(f"confirm: {command} confirm {path} (its top 2 configs, and plain fine-tuning, at "
              "2 more seeds: does the lead hold?)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = {"run": cmd_run, "resume": cmd_resume, "confirm": cmd_confirm,
               "finetune": cmd_finetune,
               "inspect-model": cmd_inspect_model, "evaluate": analysis_cli.cmd_evaluate,
               "analyze": analysis_cli.cmd_analyze}[args.command]
    try:
        return command(args)
    except HpcmTuneError as exc:  # what the user can fix; any other exception is a bug
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a sweep (a sweep's own is Tune's: _sweep)
        resume = (f": {args.out} holds the epochs saved so far; the same command with "
                  "--resume continues it" if args.command == "finetune" else "")
        print(f"\ninterrupted{resume}", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """Messages that list keys span lines (hpcm.checkpoint); the CLI prints one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
