"""The fine-tuning loop: one HPCM model, layer-wise LRs, exact checkpoint/resume.

``FineTuner`` knows nothing about Ray; the Tune trainable and ``tune_main.py finetune`` both
drive it epoch by epoch, so a sweep trial and a debugging run execute the same code.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

import torch
from pytorch_msssim import ms_ssim
from torch import nn
from torch.utils.data import Dataset

import hpcm
from hpcm.checkpoint import TRAINING_FORMAT
from hpcm_tune.errors import HpcmTuneError
from hpcm_tune.names import SCALES
from trainables.data import make_loader
from trainables.layer_lr import LayerLRManager
from trainables.losses import psnr, rate_distortion, scale_distortion_shares
from trainables.spec import FineTuneConfig

log = logging.getLogger(__name__)


class NonFiniteLossError(HpcmTuneError, RuntimeError):
    """The fine-tune diverged: non-finite losses for too many batches in a row, or a
    non-finite validation loss."""


def select_device(gpu_ids: list | None = None) -> torch.device:
    """The device a trial trains on; the choice is always logged.

    ``gpu_ids`` are the GPUs a scheduler assigned (``ray.get_gpu_ids()``): none (``[]``)
    means CPU even where torch sees a GPU, since a trial that takes an unassigned GPU
    crowds the trials Ray did give it to. ``None`` (no scheduler: ``tune_main.py finetune``,
    the benchmarks) means CUDA whenever a GPU is visible.
    """
    if gpu_ids is not None and not gpu_ids:
        if torch.cuda.is_available():
            log.info("no GPU assigned to this trial (--gpus-per-trial 0): training on the CPU "
                     "although torch sees %d GPU(s)", torch.cuda.device_count())
        else:
            log.info("no GPU assigned to this trial: training on CPU")
        return torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        log.info("training on CUDA (%s)", torch.cuda.get_device_name(device))
        return device
    if gpu_ids:
        log.warning("GPUs %s were assigned but torch sees no CUDA device: falling back to CPU",
                    gpu_ids)
    else:
        log.info("no CUDA device: training on CPU")
    return torch.device("cpu")


class FineTuner:
    """Runs epochs of rate-distortion fine-tuning and validation on one model."""

    def __init__(self, model: hpcm.HPCM, config: FineTuneConfig, train_set: Dataset,
                 val_set: Dataset, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:  # channels_last speeds up the convolutions with cuDNN
            model = model.to(device, memory_format=torch.channels_last)
        self.model = model.to(device)
        self.train_set = train_set
        self.val_set = val_set
        self.loader = make_loader(train_set, config.batch_size, shuffle=True,
                                  seed=config.seed, pin_memory=self.cuda)
        self.layers = LayerLRManager(self.model, config.layer_lr)
        self.optimizer = torch.optim.Adam(self.layers.param_groups())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, self.layers.schedules(config.epochs))
        self.epoch = 0  # the next epoch to run
        self.skipped_batches = 0
        torch.manual_seed(config.seed)

    # -- one epoch ---------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """Train one epoch; returns mean training terms, LRs and throughput."""
        cfg = self.config
        self.layers.apply(self.epoch)
        self.loader.set_epoch(self.epoch)  # crops and order depend on (seed, epoch) only
        trainable = [p for g in self.optimizer.param_groups for p in g["params"]
                     if p.requires_grad]
        self.model.train()
        sums: dict[str, float] = {}
        images, in_a_row, start = 0, 0, time.perf_counter()
        for x in self.loader:
            x = x.to(self.device, non_blocking=True)
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and cfg.amp):
                out = self.model(x)
            terms = rate_distortion(out["x_hat"], x, out["likelihoods"], cfg.lmbda)
            self.optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(terms["loss"]))
            if finite:
                terms["loss"].backward()
                norm = nn.utils.clip_grad_norm_(trainable, cfg.clip_norm)
                finite = bool(torch.isfinite(norm))
            if not finite:  # skip the batch, as the official recipe does
                self.skipped_batches += 1
                in_a_row += 1
                if in_a_row >= cfg.max_nonfinite_in_a_row:
                    raise NonFiniteLossError(
                        f"{in_a_row} batches in a row had a non-finite loss or gradient at "
                        f"epoch {self.epoch}: the fine-tune diverged (lower the learning rate)")
                continue
            in_a_row = 0
            self.optimizer.step()
            images += x.shape[0]
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * x.shape[0]
        elapsed = time.perf_counter() - start
        self.scheduler.step()
        self.epoch += 1
        if images == 0:
            raise NonFiniteLossError(f"no finite batch in epoch {self.epoch - 1}")
        metrics = {f"train/{k}": v / images for k, v in sums.items()}
        metrics["images_per_s"] = images / elapsed
        metrics["skipped_batches"] = self.skipped_batches
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Eval-mode (hard rounding) metrics averaged over the validation images.

        Raises:
            NonFiniteLossError: the loss or a scale's loss is not finite (diverged).
        """
        cfg = self.config
        self.model.eval()
        multiple = self.model.config.pad_multiple
        rows = []
        for i in range(len(self.val_set)):
            x = self.val_set[i].unsqueeze(0).to(self.device)
            x_pad, padding = hpcm.pad_to_multiple(x, multiple)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and cfg.amp):
                out = self.model(x_pad)
            x_hat = hpcm.crop_padding(out["x_hat"], padding).float().clamp(0, 1)
            shares = scale_distortion_shares(
                self.model.g_s, out["latents"]["y"], out["latents"]["y_hat"], x,
                crop=lambda t: hpcm.crop_padding(t, padding))
            terms = {k: float(v) for k, v in rate_distortion(
                x_hat, x, out["likelihoods"], cfg.lmbda, distortion_shares=shares).items()}
            terms["psnr"] = psnr(terms["mse"])
            # MS-SSIM's five scales need at least 161 pixels per side.
            terms["ms_ssim"] = (float(ms_ssim(x_hat, x, data_range=1.0))
                                if min(x.shape[-2:]) > 160 else float("nan"))
            rows.append(terms)
        metrics = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "ms_ssim"}
        # MS-SSIM: the mean over the images where it is defined, and how many they are.
        defined = [r["ms_ssim"] for r in rows if r["ms_ssim"] == r["ms_ssim"]]  # not NaN
        metrics["ms_ssim"] = sum(defined) / len(defined) if defined else float("nan")
        metrics["ms_ssim_images"] = len(defined)
        diverged = [k for k in ("loss", *SCALES) if not math.isfinite(metrics[k])]
        if diverged:  # the per-scale stopper cannot judge it, and every later epoch is lost
            raise NonFiniteLossError(
                f"validation {diverged[0]} is {metrics[diverged[0]]} after epoch "
                f"{self.epoch - 1}: the trial diverged (lower the learning rate)")
        return metrics

    def learning_rates(self) -> dict[str, float]:
        return {f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups}

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit: weights, optimizer, schedule, RNG."""
        state = {
            "format": TRAINING_FORMAT,
            "version": 1,
            "config": asdict(self.model.config),
            "finetune_config": self.config.to_dict(),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "skipped_batches": self.skipped_batches,
            "rng_cpu": torch.get_rng_state(),
        }
        if self.cuda:
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != TRAINING_FORMAT:
            raise hpcm.CheckpointError("not a hpcm-tune training checkpoint "
                             f"(format {state.get('format')!r})")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.skipped_batches = int(state["skipped_batches"])
        torch.set_rng_state(state["rng_cpu"])
        if self.cuda and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
