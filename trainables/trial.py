"""One fine-tune trial: FineTuner + per-scale AdaptivePatience + checkpoints + reports.

``run_trial`` is the single code path of a sweep trial (``hpcm_trainable`` in
``trainables.tune_trainable``) and of ``tune_main.py finetune``; only the ``Session`` differs
(Ray Tune's report/checkpoint, or a local folder: ``trainables.local_session``). The patience
state is checkpointed together with the weights, so a trial restored after a crash replays
exactly the decisions of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Protocol

import hpcm
from hpcm_tune.errors import HpcmTuneError
from hpcm_tune.names import SCALES, STATE_FILE
from stoppers import AdaptivePatience, report_fields
from trainables.data import ImageFolderDataset, bundled_photos
from trainables.finetune import FineTuner, select_device
from trainables.spec import TrialSpec

log = logging.getLogger(__name__)


class ResumeMismatchError(HpcmTuneError, ValueError):
    """A resumed fine-tune was given settings that differ from the ones it ran with."""


# The trial settings that define what a trial's losses mean, saved with its state (besides
# the FineTuneConfig the trainer state holds) and compared on resume.
RESUME_OPTIONS = ("checkpoint", "checkpoint_kind", "train_dir", "val_dir", "max_side")
# How the settings are spelled on the command line, for the error message.
FLAGS = {"lmbda": "--lmbda", "epochs": "--epochs", "batch_size": "--batch-size",
         "crop_size": "--crop-size", "crops_per_image": "--crops-per-image", "seed": "--seed",
         "base_lr": "--base-lr", "context_lr_ratio": "--context-lr-ratio",
         "freeze_strategy": "--freeze-strategy", "unfreeze_h_epoch": "--unfreeze-h-epoch",
         "unfreeze_context_epoch": "--unfreeze-context-epoch", "checkpoint": "--checkpoint",
         "checkpoint_kind": "--official", "train_dir": "--train-dir", "val_dir": "--val-dir",
         "max_side": "--max-side", "architecture": "--model/--checkpoint"}


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value))  # layer_lr's fields are top-level flags
        else:
            out[prefix + key] = value
    return out


def check_resume(state: dict, spec: TrialSpec, model_config: dict) -> None:
    """Refuse to continue a saved trial with settings that change what its losses mean (the
    lambda, crops, learning rates, freezing, data, start model): metrics.jsonl would mix two
    runs. A changed epoch budget is allowed and logged.

    Raises:
        ResumeMismatchError: naming every changed setting, its new and its saved value.
    """
    trainer, finetune = state["trainer"], spec.finetune
    saved = _flat(trainer.get("finetune_config") or {})
    now = _flat(finetune.to_dict())
    saved_options = state.get("options")
    if saved_options is not None:
        saved.update({k: saved_options.get(k) for k in RESUME_OPTIONS})
        now.update({k: getattr(spec, k) for k in RESUME_OPTIONS})
    else:
        log.warning("this trial state predates the saving of its data folders and start "
                    "checkpoint: only the fine-tuning settings are compared on resume")
    saved["architecture"], now["architecture"] = trainer.get("config"), model_config
    changed = [k for k in now if k != "epochs" and k in saved and saved[k] != now[k]]
    if changed:
        listed = ", ".join(f"{FLAGS.get(k, k)} {now[k]} (it ran with {saved[k]})"
                           if k != "architecture" else
                           f"{FLAGS[k]}: another architecture (it ran with "
                           f"{(saved[k] or {}).get('name')})" for k in changed)
        raise ResumeMismatchError(
            f"cannot resume with other settings: {listed}; resume continues the same "
            "fine-tune (only --epochs may change): rerun with its settings, or start a new "
            "fine-tune from its weights (--checkpoint OUT with another --out)")
    done = int(trainer.get("epoch", 0))
    if saved.get("epochs") not in (None, finetune.epochs):
        if finetune.epochs <= done:
            raise ResumeMismatchError(
                f"--epochs {finetune.epochs}: this fine-tune already ran {done} epochs; "
                "pass a larger --epochs to continue it")
        log.warning("epoch budget changed from %s to %d on resume: the learning-rate schedule "
                    "continues on the %d-epoch budget from epoch %d", saved["epochs"],
                    finetune.epochs, finetune.epochs, done)


class Session(Protocol):
    """Where a trial restores from and reports to."""

    def restore(self) -> dict | None: ...

    def report(self, metrics: dict[str, Any], state: dict | None) -> None: ...


def start_model(spec: TrialSpec) -> hpcm.HPCM:
    """The model a trial starts from: a project checkpoint, an official one, or a preset."""
    if spec.checkpoint is None:
        return hpcm.create_model(spec.model)
    if spec.checkpoint_kind == "official":
        return hpcm.load_official_checkpoint(spec.checkpoint, variant=spec.model)
    return hpcm.load_model(spec.checkpoint)


def _datasets(spec: TrialSpec) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """Training crops from ``train_dir`` and validation images from ``val_dir``; each one
    that is not given is the bundled photos of its split (logged)."""
    for folder, flag, split in ((spec.train_dir, "train-dir", "train"),
                                (spec.val_dir, "val-dir", "val")):
        if not folder:
            log.info("no --%s: %s on the bundled %s photos", flag,
                     "training" if split == "train" else "validating", split)
    finetune = spec.finetune
    train = ImageFolderDataset(spec.train_dir or bundled_photos("train"), mode="train",
                               crop_size=finetune.crop_size,
                               crops_per_image=finetune.crops_per_image, seed=finetune.seed)
    val = ImageFolderDataset(spec.val_dir or bundled_photos("val"), mode="val",
                             seed=finetune.seed, max_side=spec.max_side)
    return train, val


def stopper_settings(spec: TrialSpec) -> dict[str, Any]:
    """The per-scale stopper's settings; without any, a patience beyond the epoch budget."""
    if spec.stopper is None:
        never = spec.finetune.epochs + 1
        return {"patience": never, "min_patience": never, "max_patience": never}
    return spec.stopper


def run_trial(spec: TrialSpec, session: Session, gpu_ids: list | None = None,
              tags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune until every scale has stopped or the epoch budget is spent.

    ``gpu_ids`` are the GPUs the scheduler assigned; ``tags`` are constant fields added to
    every report (e.g. the node). Returns the last reported metrics.
    """
    finetune = spec.finetune
    device = select_device(gpu_ids)
    train_set, val_set = _datasets(spec)
    tuner = FineTuner(start_model(spec), finetune, train_set, val_set, device)
    patience = AdaptivePatience(scales=SCALES, **stopper_settings(spec))
    best = {"loss": math.inf, "epoch": -1}
    scale_best_weights: dict[str, dict] = {}

    state = session.restore()
    if state is not None:
        check_resume(state, spec, dataclasses.asdict(tuner.model.config))
        saved_stopper = state["patience"].get("config", {})
        if {"warmup_epochs": 0, "relative": False, **saved_stopper} != patience.config():
            # The stopper replays its decisions only with the settings it was saved with
            # (they follow the epoch budget by default, which may have grown).
            log.warning("the per-scale stopper continues with the settings it was saved "
                        "with, %s (this run's would be %s)", saved_stopper, patience.config())
            patience = AdaptivePatience(**saved_stopper)
        tuner.load_state_dict(state["trainer"])
        patience.load_state_dict(state["patience"])
        best = state["best"]
        scale_best_weights = state.get("scale_best_weights", {})
        log.info("resumed at epoch %d", tuner.epoch)

    every, keep_scale_best = spec.checkpoint_every, spec.keep_scale_best
    metrics: dict[str, Any] = {}
    first_epoch = tuner.epoch
    while tuner.epoch < finetune.epochs:
        epoch = tuner.epoch
        metrics = tuner.train_epoch()
        metrics.update(tuner.validate())
        if epoch == first_epoch and metrics.get("ms_ssim_images", len(val_set)) < len(val_set):
            log.info("ms_ssim is the mean over the %d of %d validation images above 160 pixels "
                     "a side (MS-SSIM is undefined for smaller ones; count in ms_ssim_images)",
                     metrics["ms_ssim_images"], len(val_set))
        decisions = patience.step(epoch, {s: metrics[s] for s in SCALES})
        new_best = metrics["loss"] < best["loss"]
        if new_best:
            best = {"loss": metrics["loss"], "epoch": epoch}
        if keep_scale_best:
            for scale, decision in decisions.items():
                if decision == "improved":
                    scale_best_weights[scale] = _cpu_copy(tuner.model.state_dict())
        metrics.update(tuner.learning_rates())
        metrics.update(report_fields(patience))
        metrics.update(
            epoch=epoch, trained_epochs=epoch + 1,  # the schedulers' time axis
            best_loss=best["loss"], best_epoch=best["epoch"],
            trainable_params=tuner.layers.trainable_parameter_count(),
            device=str(device), devices=len(gpu_ids) if gpu_ids else 1,
            gpu_ids=",".join(str(g) for g in gpu_ids or []), pid=os.getpid(),
        )
        metrics.update(tags or {})
        done = patience.should_stop() or tuner.epoch >= finetune.epochs
        save = new_best or done or (epoch + 1) % every == 0
        state = None
        if save:
            state = {"trainer": tuner.state_dict(), "patience": patience.state_dict(),
                     "best": best, "options": {k: getattr(spec, k) for k in RESUME_OPTIONS}}
            if keep_scale_best:
                state["scale_best_weights"] = scale_best_weights
        session.report(metrics, state)
        if patience.should_stop():
            log.info("all scales stopped at epoch %d", epoch)
            break
    return metrics


def _cpu_copy(state_dict: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def save_state(state: dict, directory: Path) -> Path:
    """Write a trial state; each scale's best weights go beside it as ``best_<scale>.pt``,
    model files loadable on their own with ``hpcm.load_model``.

    Raises:
        hpcm_tune.errors.WriteError: a file could not be written; earlier ones are unchanged.
    """
    directory, state = Path(directory), dict(state)
    for scale, weights in state.pop("scale_best_weights", {}).items():
        hpcm.save_weights(state["trainer"]["config"], weights, directory / f"best_{scale}.pt")
    return hpcm.write_checkpoint_file(state, directory / STATE_FILE)


def load_state(directory: Path) -> dict:
    directory = Path(directory)
    state = hpcm.read_checkpoint_file(directory / STATE_FILE)
    if not isinstance(state, dict) or not {"trainer", "patience", "best"} <= set(state):
        raise hpcm.CheckpointError(f"{directory / STATE_FILE} is not a hpcm-tune trial state")
    scale_files = {s: directory / f"best_{s}.pt" for s in SCALES}
    state["scale_best_weights"] = {
        s: hpcm.read_weights(f)[1] for s, f in scale_files.items() if f.is_file()}
    return state
