"""HPCM (hierarchical progressive context modelling) learned image codec.

A re-implementation of Li et al., "Learned Image Compression with Hierarchical Progressive
Context Modeling" (ICCV 2025) on top of CompressAI, with presets for the official Base and
Large models and a reduced "tiny" model, and loaders for official checkpoints.
"""

from __future__ import annotations

import dataclasses
import warnings

# CompressAI imports torch_geometric, which calls torch.jit.script at import time, and torch
# >= 2.10 deprecates that with a FutureWarning in every process importing hpcm (each Ray
# worker too). Not the user's business: ignored for that one import, nowhere else.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated",
                            category=FutureWarning, module="torch.jit._script")
    import compressai  # noqa: F401

from hpcm_tune.errors import InputError

from .checkpoint import (
    CheckpointError,
    convert_official_state_dict,
    load_model,
    load_official_checkpoint,
    read_checkpoint_file,
    read_weights,
    save_model,
    save_weights,
    training_state,
    write_checkpoint_file,
)
from .config import PRESETS, HPCMConfig
from .lattices import scale_labels
from .model import HPCM
from .padding import crop_padding, pad_to_multiple

__all__ = [
    "HPCM",
    "HPCMConfig",
    "PRESETS",
    "create_model",
    "load_official_checkpoint",
    "load_model",
    "save_model",
    "save_weights",
    "read_weights",
    "write_checkpoint_file",
    "training_state",
    "convert_official_state_dict",
    "CheckpointError",
    "read_checkpoint_file",
    "scale_labels",
    "pad_to_multiple",
    "crop_padding",
]


def create_model(name: str, **overrides) -> HPCM:
    """Builds an untrained :class:`HPCM` from a preset ("base", "large", "tiny").

    Keyword arguments replace config fields, e.g. ``create_model("tiny", M=128)``.
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}")
    return HPCM(dataclasses.replace(PRESETS[name], **overrides))
