"""Layer-wise learning rates, freeze strategies and progressive unfreezing for HPCM.

Every parameter belongs to exactly one group; each group gets ``base_lr * multiplier``.
All groups are handed to the optimizer from the start and freezing only toggles
``requires_grad``: Adam skips parameters without gradients, so a group unfrozen at epoch
``e`` really trains from ``e`` on with its own learning rate. (The fine-tuning report this
project grew from froze parameters before building the optimizer and never added them
later, so its progressive unfreezing trained nothing new.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from hpcm_tune.errors import InputError
from hpcm_tune.names import FREEZE_STRATEGIES

if TYPE_CHECKING:  # torch only in annotations: the config is built where torch is not loaded
    from torch import nn

GROUPS: tuple[str, ...] = ("g_a", "g_s", "h_a", "h_s", "context", "entropy")

# Parameter-name prefixes of each group (HPCM keeps the official module names).
_GROUP_PREFIXES: dict[str, tuple[str, ...]] = {
    "g_a": ("g_a.",),
    "g_s": ("g_s.",),
    "h_a": ("h_a.",),
    "h_s": ("h_s.",),
    "context": (
        "y_spatial_prior_adaptor_list_",
        "y_spatial_prior_s1_s2.",
        "y_spatial_prior_s3.",
        "adaptive_params_list.",
        "attn_s1.",
        "attn_s2.",
        "attn_s3.",
        "context_net.",
    ),
    "entropy": ("means_hyper", "scales_hyper"),
}


def group_of(param_name: str) -> str:
    """Return the LR group of a parameter name; unknown names are an error, never ignored."""
    for group, prefixes in _GROUP_PREFIXES.items():
        if param_name.startswith(prefixes):
            return group
    raise ValueError(f"parameter {param_name!r} belongs to no LR group {GROUPS}")


@dataclass(frozen=True)
class LayerLRConfig:
    """Learning-rate multipliers, freezing and schedule of one fine-tune."""

    base_lr: float = 1e-4
    g_multiplier: float = 1.0
    h_multiplier: float = 0.5
    context_lr_ratio: float = 0.1
    entropy_multiplier: float = 1.0
    freeze_strategy: str = "entropy"
    unfreeze_h_epoch: int = 0
    unfreeze_context_epoch: int = 0
    warmup_epochs: int = 1
    decay_to: float = 0.1  # cosine decay of every group's LR down to this fraction

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise InputError(f"base_lr must be > 0, got {self.base_lr}")
        # Above 1 the context model trains faster than the transforms: on the demo task
        # (a new, lower rate) ratio 2 beat ratio 1 at every seed.
        for name in ("context_lr_ratio", "g_multiplier", "h_multiplier", "entropy_multiplier"):
            if not 0 < getattr(self, name) < math.inf:
                raise InputError(f"{name} must be a finite number > 0, got "
                                 f"{getattr(self, name)}")
        if self.freeze_strategy not in FREEZE_STRATEGIES:
            raise InputError(
                f"unknown freeze strategy {self.freeze_strategy!r}; "
                f"choose one of {', '.join(FREEZE_STRATEGIES)}"
            )
        if self.freeze_strategy == "progressive" and not (
            0 < self.unfreeze_h_epoch < self.unfreeze_context_epoch
        ):
            raise InputError(
                "progressive unfreezing needs 0 < unfreeze_h_epoch < unfreeze_context_epoch, "
                f"got {self.unfreeze_h_epoch} and {self.unfreeze_context_epoch}"
            )
        if self.warmup_epochs < 0 or not 0 < self.decay_to <= 1:
            raise InputError("warmup_epochs must be >= 0 and decay_to in (0, 1]")

    @classmethod
    def from_flat(cls, config: Mapping[str, Any]) -> LayerLRConfig:
        """The layer-wise settings of a flat trial config (Tune's); other keys are not its
        business, those it lacks take their defaults."""
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})

    def multiplier(self, group: str) -> float:
        return {
            "g_a": self.g_multiplier,
            "g_s": self.g_multiplier,
            "h_a": self.h_multiplier,
            "h_s": self.h_multiplier,
            "context": self.context_lr_ratio,
            "entropy": self.entropy_multiplier,
        }[group]

    def start_epoch(self, group: str) -> int | None:
        """First epoch (0-based) in which ``group`` trains; None if it never does."""
        if group == "entropy" and self.freeze_strategy != "none":
            return None
        if self.freeze_strategy == "progressive":
            if group in ("h_a", "h_s"):
                return self.unfreeze_h_epoch
            if group == "context":
                return self.unfreeze_context_epoch
        return 0

    def trains_as_fast_as(self, slow: LayerLRConfig, epochs: int | None = None) -> bool:
        """Whether every layer group that ``slow`` trains in its first ``epochs`` (None: ever)
        trains here too from no later an epoch, at no lower a peak LR, with no longer a warm-up
        and a decay to no lower a fraction: at each of those epochs, whatever the budget, no
        group's LR is below ``slow``'s. (A trial behind one that trains faster may still
        overtake it; behind one at least as fast, it is behind on equal terms.)"""
        for group in GROUPS:
            start = slow.start_epoch(group)
            if start is None or (epochs is not None and start >= epochs):
                continue
            own_start = self.start_epoch(group)
            if own_start is None or own_start > start:
                return False
            if self.base_lr * self.multiplier(group) < slow.base_lr * slow.multiplier(group):
                return False
        return self.warmup_epochs <= slow.warmup_epochs and self.decay_to >= slow.decay_to


class GroupSchedule:
    """LR factor of one group: linear warm-up from the group's start epoch, then cosine decay.

    A callable object (not a closure) so ``LambdaLR.state_dict`` can save it.
    """

    def __init__(self, start_epoch: int | None, warmup_epochs: int, total_epochs: int,
                 decay_to: float) -> None:
        self.start_epoch = start_epoch
        self.warmup_epochs = warmup_epochs
        self.total_epochs = total_epochs
        self.decay_to = decay_to

    def __call__(self, epoch: int) -> float:
        if self.start_epoch is None or epoch < self.start_epoch:
            return 0.0
        warmup = min(1.0, (epoch - self.start_epoch + 1) / (self.warmup_epochs + 1))
        progress = min(1.0, epoch / max(1, self.total_epochs - 1))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return warmup * (self.decay_to + (1 - self.decay_to) * cosine)


class LayerLRManager:
    """Builds the optimizer's parameter groups and applies freezing epoch by epoch."""

    def __init__(self, model: nn.Module, config: LayerLRConfig) -> None:
        self.config = config
        self.params: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
        for name, param in model.named_parameters():
            self.params[group_of(name)].append((name, param))

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups (every group, frozen ones included) with their LR."""
        return [
            {"params": [p for _, p in self.params[g]], "name": g,
             "lr": self.config.base_lr * self.config.multiplier(g)}
            for g in GROUPS if self.params[g]
        ]

    def schedules(self, total_epochs: int) -> list[GroupSchedule]:
        """One schedule per optimizer group, in ``param_groups()`` order."""
        return [
            GroupSchedule(self.config.start_epoch(g), self.config.warmup_epochs,
                          total_epochs, self.config.decay_to)
            for g in GROUPS if self.params[g]
        ]

    def is_frozen(self, group: str, epoch: int) -> bool:
        start = self.config.start_epoch(group)
        return start is None or epoch < start

    def apply(self, epoch: int) -> None:
        """Set ``requires_grad`` of every parameter for ``epoch``."""
        for group, params in self.params.items():
            frozen = self.is_frozen(group, epoch)
            for _, param in params:
                param.requires_grad_(not frozen)

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for ps in self.params.values() for _, p in ps if p.requires_grad)

    def table(self, epoch: int = 0) -> list[dict]:
        """Rows (group, parameters, lr, frozen) describing the groups at ``epoch``."""
        return [
            {
                "group": g,
                "parameters": sum(p.numel() for _, p in self.params[g]),
                "lr": self.config.base_lr * self.config.multiplier(g),
                "frozen": self.is_frozen(g, epoch),
                "starts_epoch": self.config.start_epoch(g),
            }
            for g in GROUPS
        ]
