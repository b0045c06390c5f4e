"""``TrialSpec``: one fine-tune trial, typed, and its flat form in Ray Tune.

Both records (``FineTuneConfig``, ``TrialSpec``) import neither torch nor the model: a
sweep's driver builds them without paying for those imports.

A trial is its start model, its data, its fine-tune (``FineTuneConfig`` with the layer-wise
learning rates) and how it checkpoints and stops. Tune sees it as one flat dict
(:meth:`TrialSpec.to_config`): every field, the searched knobs included, is a top-level key,
so Tune's results show it as a ``config/<name>`` column and a search space's suggestion is
one key. The same flat dict is what the experiment marker holds; :meth:`TrialSpec.from_config`
reads it back and refuses a key it does not know (a misspelt knob would otherwise train at
its default without a word).

    CLI flags ──> TrialSpec ──to_config()──> param_space ──Tune──> trial config
                (one builder)                + searched knobs         │ from_config()
                                      run_trial(TrialSpec) <──────────┘
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hpcm_tune.errors import InputError
from trainables.layer_lr import LayerLRConfig


@dataclass(frozen=True)
class FineTuneConfig:
    """Everything that defines one fine-tune apart from the model and the data."""

    lmbda: float = 0.0067
    epochs: int = 20
    batch_size: int = 8
    crop_size: int = 128
    crops_per_image: int = 2
    layer_lr: LayerLRConfig = field(default_factory=LayerLRConfig)
    clip_norm: float = 1.0
    max_nonfinite_in_a_row: int = 5
    seed: int = 0
    amp: bool = True  # bf16 autocast; only ever used on CUDA

    def __post_init__(self) -> None:
        if not self.lmbda > 0:
            raise InputError(f"lambda must be > 0, got {self.lmbda}")
        for name in ("epochs", "batch_size", "crop_size", "crops_per_image",
                     "max_nonfinite_in_a_row"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        lr = self.layer_lr
        if lr.freeze_strategy == "progressive" and lr.unfreeze_context_epoch >= self.epochs:
            raise InputError(
                f"unfreeze_context_epoch ({lr.unfreeze_context_epoch}) must be below the "
                f"epoch budget ({self.epochs})"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FineTuneConfig":
        data = dict(data)
        data["layer_lr"] = LayerLRConfig(**data.get("layer_lr", {}))
        return cls(**data)


_LAYER_LR_FIELDS = tuple(f.name for f in dataclasses.fields(LayerLRConfig))
_FINETUNE_FIELDS = tuple(f.name for f in dataclasses.fields(FineTuneConfig) if f.name != "layer_lr")


@dataclass(frozen=True)
class TrialSpec:
    """Everything one fine-tune trial needs; the sweep sets ``epochs``, ``seed`` and the
    searched knobs of each trial."""

    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    #: The start model's preset (for ``checkpoint_kind="official"``, the file's variant).
    model: str = "tiny"
    #: The start weights: a project model file or trial state; None: the untrained preset.
    checkpoint: str | None = None
    #: "project", or "official" for a LIC-HPCM file (through ``hpcm``'s one converter).
    checkpoint_kind: str = "project"
    #: Image folders; None: the photos bundled with the installed packages.
    train_dir: str | None = None
    val_dir: str | None = None
    #: Validation images downsized to this long side (None: full size).
    max_side: int | None = None
    #: Save the trial state every this many epochs (and at every new best and at the end).
    checkpoint_every: int = 1
    #: Also keep each scale's best weights (``best_s1.pt`` ...) in the checkpoints.
    keep_scale_best: bool = False
    #: ``stoppers.AdaptivePatience`` settings of the per-scale stopper; None: it never stops.
    stopper: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.checkpoint_kind not in ("project", "official"):
            raise InputError(f"checkpoint_kind must be 'project' or 'official', got "
                             f"{self.checkpoint_kind!r}")
        if self.checkpoint_kind == "official" and self.checkpoint is None:
            raise InputError("an official start model needs its checkpoint file")
        if self.checkpoint_every <= 0:
            raise InputError(f"checkpoint_every must be > 0, got {self.checkpoint_every}")
        if self.max_side is not None and self.max_side <= 0:
            raise InputError(f"max_side must be > 0, got {self.max_side}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every key of the flat form."""
        return cls._own_names() + _FINETUNE_FIELDS + _LAYER_LR_FIELDS

    @classmethod
    def _own_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "finetune")

    def to_config(self, leave_out: Iterable[str] = ()) -> dict[str, Any]:
        """The flat form (Tune's ``param_space``, the marker), without the keys ``leave_out``
        names (the knobs a searcher suggests)."""
        flat = {k: getattr(self, k) for k in self._own_names()}
        flat.update({k: getattr(self.finetune, k) for k in _FINETUNE_FIELDS})
        flat.update(dataclasses.asdict(self.finetune.layer_lr))
        for key in leave_out:
            flat.pop(key, None)
        return flat

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TrialSpec":
        """Read a flat form back; keys left out take their defaults.

        Raises:
            InputError: a key that is no field (named, with the known ones), or a bad value.
        """
        unknown = set(config) - set(cls.names())
        if unknown:
            raise InputError(f"unknown trial settings: {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(cls.names()))}")
        finetune = FineTuneConfig(layer_lr=LayerLRConfig.from_flat(config),
                                  **{k: config[k] for k in _FINETUNE_FIELDS if k in config})
        return cls(finetune=finetune,
                   **{k: config[k] for k in cls._own_names() if k in config})

    def replace(self, **changes: Any) -> "TrialSpec":
        """A copy with fields changed by their flat names (``epochs=``, ``context_lr_ratio=``)."""
        return self.from_config({**self.to_config(), **changes})
