"""Loading official HPCM checkpoints and saving / loading this project's model files."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import Tensor

from hpcm_tune.errors import HpcmTuneError, InputError
from hpcm_tune.files import atomic_write

from .config import PRESETS, HPCMConfig
from .entropy_models import GeneralizedGaussianConditional
from .model import HPCM

__all__ = [
    "CheckpointError",
    "convert_official_state_dict",
    "load_official_checkpoint",
    "save_model",
    "save_weights",
    "load_model",
    "read_weights",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "TRAINING_FORMAT",
    "project_checkpoint_kind",
    "read_checkpoint_file",
    "training_state",
    "write_checkpoint_file",
]

logger = logging.getLogger(__name__)

MODEL_FORMAT = "hpcm-tune-model"
MODEL_FORMAT_VERSION = 1
OFFICIAL_VARIANTS = ("base", "large")

PathOrDict = Union[str, os.PathLike, Mapping[str, Any]]

# Rebuilt by HPCM.update(); empty in the released files.
_OFFICIAL_CODER_BUFFERS = (
    "scale_table",
    "quantized_cdf_z", "cdf_length_z", "offset_z",
    "quantized_cdf_y", "cdf_length_y", "offset_y",
)
# Constants of the official entropy model; ours has them built in, so they must agree.
_OFFICIAL_ENTROPY_CONSTANTS = {
    "entropy_estimation.beta": 1.5,
    "entropy_estimation.scale_lower_bound.bound": 0.12,
    "entropy_estimation.likelihood_lower_bound.bound": 1e-9,
}
_ENTROPY_PREFIXES = ("entropy_y.", "entropy_z.")
# Entropy-coder buffers whose size depends on update(); CompressionModel.load_state_dict resizes them.
_RESIZABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


class CheckpointError(HpcmTuneError, ValueError):
    """A checkpoint cannot be read or does not fit the requested model."""


def _summarise(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else f" ({len(keys)})"
    return shown + more


def _template(config: HPCMConfig) -> dict[str, Tensor]:
    """The model's state_dict: shapes from a meta-device model, values of the small entropy buffers."""
    with torch.device("meta"):
        meta = HPCM(config)
    template = {k: v for k, v in meta.state_dict().items() if not k.startswith(_ENTROPY_PREFIXES)}
    # The entropy buffers carry values (beta, bounds), so take them from real modules.
    for prefix in _ENTROPY_PREFIXES:
        for key, value in GeneralizedGaussianConditional().state_dict().items():
            template[prefix + key] = value
    return template


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _compare(state_dict: Mapping[str, Tensor], template: Mapping[str, Tensor], resizable=()) -> tuple[list, list, list]:
    missing = sorted(set(template) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(template))
    wrong = sorted(
        f"{k}: {_shape(state_dict[k])} vs expected {_shape(template[k])}"
        for k in set(state_dict) & set(template)
        if _shape(state_dict[k]) != _shape(template[k]) and not k.endswith(resizable)
    )
    return missing, unexpected, wrong


def _mismatch_message(what: str, missing: list, unexpected: list, wrong: list, hint: str) -> str:
    parts = [what]
    if missing:
        parts.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_summarise(unexpected)}")
    if wrong:
        parts.append(f"wrong shapes: {_summarise(wrong)}")
    parts.append(hint)
    return "\n".join(parts)


def _official_keys_fit(state_dict: Mapping[str, Tensor], variant: str) -> bool:
    """Whether the network weights of ``state_dict`` have exactly the official ``variant``'s layout."""
    ignored = _OFFICIAL_CODER_BUFFERS + tuple(_OFFICIAL_ENTROPY_CONSTANTS)
    weights = {k: v for k, v in state_dict.items() if k not in ignored and not k.startswith("adaptive_params_list.")}
    wanted = {
        k: v for k, v in _template(PRESETS[variant]).items()
        if not k.startswith(_ENTROPY_PREFIXES + ("adaptive_params_list.",))
    }
    return _compare(weights, wanted) == ([], [], [])


def convert_official_state_dict(state_dict: Mapping[str, Tensor], variant: str = "base") -> dict[str, Tensor]:
    """Maps an official HPCM state_dict (``src/models/HPCM_{Base,Large}.py``) to this package's layout.

    * drops the official entropy-coder buffers (rebuilt by :meth:`HPCM.update`);
    * checks the official entropy constants (beta 1.5, scale bound 0.12, likelihood bound 1e-9)
      and replaces them by this model's ``entropy_y`` / ``entropy_z`` buffers;
    * fills missing ``adaptive_params_list.0..9`` with ones (released checkpoints predate the
      fix that registered them; they stayed at their initial value), logging a warning;
    * refuses anything else that is missing, unexpected or of the wrong shape.

    Raises:
        CheckpointError: listing the offending keys.
    """
    if variant not in OFFICIAL_VARIANTS:
        raise InputError(f"unknown official variant {variant!r}; choose one of {OFFICIAL_VARIANTS}")
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise CheckpointError(f"state_dict values must be tensors; not tensors: {_summarise(not_tensors)}")

    converted = {k: v for k, v in state_dict.items() if k not in _OFFICIAL_CODER_BUFFERS}
    for key, expected in _OFFICIAL_ENTROPY_CONSTANTS.items():
        if key not in converted:
            continue  # reported as missing below
        value = converted.pop(key)
        if value.numel() != 1 or not math.isclose(float(value.reshape(-1)[0]), expected, rel_tol=1e-5):
            raise CheckpointError(
                f"{key} = {value.tolist()} but this model implements {expected}; "
                "the checkpoint was trained with a different entropy model"
            )

    template = _template(PRESETS[variant])
    filled = []
    for key in (k for k in template if k.startswith("adaptive_params_list.")):
        if key not in converted:
            converted[key] = torch.ones(template[key].shape)
            filled.append(key)
    if filled:
        logger.warning(
            "official checkpoint has no %s (released files predate their registration); "
            "filled with ones, their initial and only value in those files", _summarise(filled)
        )

    missing, unexpected, wrong = _compare(converted, {k: v for k, v in template.items() if not k.startswith(_ENTROPY_PREFIXES)})
    missing = sorted(set(missing) | {k for k in _OFFICIAL_ENTROPY_CONSTANTS if k not in state_dict})
    if missing or unexpected or wrong:
        other = [v for v in OFFICIAL_VARIANTS if v != variant and _official_keys_fit(state_dict, v)]
        if other:
            hint = f"This looks like an HPCM-{other[0].capitalize()} checkpoint: pass variant={other[0]!r}."
        else:
            hint = (
                f"Is this an official HPCM-{variant.capitalize()} state_dict? Pass variant='base' or "
                "'large' to match the checkpoint; this project's own files load with hpcm.load_model()."
            )
        raise CheckpointError(
            _mismatch_message(f"checkpoint does not fit official HPCM-{variant}:", missing, unexpected, wrong, hint)
        )

    for key, value in template.items():
        if key.startswith(_ENTROPY_PREFIXES):
            converted[key] = value.clone()
    return converted


# What a file is, from its first bytes, for files that cannot be a checkpoint.
_NOT_CHECKPOINTS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"RIFF", "a RIFF file (WebP image, WAV audio, ...)"),
    (b"\x1f\x8b", "a gzip file"), (b"%PDF", "a PDF document"), (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ", "an xz file"), (b"7z\xbc\xaf", "a 7-Zip archive"),
)
_ACCEPTED = ("accepted: a torch.save file of a hpcm-tune model or training checkpoint "
             "(a model .pt, trial_state.pt, best.pt) or an official LIC-HPCM state_dict")
TRAINING_FORMAT = "hpcm-tune-train"  # the FineTuner state (trainables.finetune)


def _file_kind(path: Path) -> str | None:
    """None for a file torch.load may read (zip, pickle or legacy tar); else what it is."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80") or head[257:262] == b"ustar":
        return None
    for magic, kind in _NOT_CHECKPOINTS:
        if head.startswith(magic):
            return kind
    if head.lstrip()[:1] in (b"{", b"["):
        return "a text file (JSON?)"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a file of another kind"


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; every failure is a one-line
    CheckpointError naming the file (missing, empty, truncated, not a torch.save file,
    code-carrying pickle)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    try:
        kind = _file_kind(path)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from err
    if kind is not None:
        raise CheckpointError(f"{path} is not a checkpoint: it is {kind}, not a file written "
                              f"by torch.save; {_ACCEPTED}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickling_detail(err)
        if "GLOBAL" in detail or "global" in detail:
            raise CheckpointError(
                f"{path} holds Python objects that need code to load; refusing to unpickle "
                f"them (only tensors and plain containers are accepted): {detail}"
            ) from err
        raise CheckpointError(f"cannot read checkpoint {path}: its data is corrupt or not "
                              f"a torch.save file ({detail}); {_ACCEPTED}") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a torch.save "
                              f"file?): {_first_line(err)}") from err


def _unpickling_detail(err: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to load the file with
    ``weights_only=False`` (that would run whatever code the file carries)."""
    for line in str(err).splitlines()[1:]:
        line = line.replace("WeightsUnpickler error:", "").strip()
        if line and "weights_only" not in line and not line.startswith(("Please file", "Check the")):
            return line
    return type(err).__name__


def _first_line(err: BaseException) -> str:
    """torch.load's messages span many lines; the first one names the problem."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def project_checkpoint_kind(obj: Any) -> str | None:
    """"model file" or "training checkpoint" for a loaded hpcm-tune file, else None."""
    if not isinstance(obj, Mapping):
        return None
    if isinstance(obj.get("trainer"), Mapping) or obj.get("format") == TRAINING_FORMAT:
        return "training checkpoint"
    if obj.get("format") == MODEL_FORMAT or {"config", "state_dict"} <= set(obj):
        return "model file"
    return None


def _model_part(obj: Any) -> Any:
    """The ``{"config", "state_dict"}`` of a training checkpoint (a trial state
    ``{"trainer", "patience", "best"}`` or the trainer state itself); other objects as is."""
    if isinstance(obj, Mapping) and isinstance(obj.get("trainer"), Mapping):
        obj = obj["trainer"]
    if isinstance(obj, Mapping) and obj.get("format") == TRAINING_FORMAT:
        obj = {key: obj[key] for key in ("config", "state_dict") if key in obj}
    return obj


def _as_state_dict(obj: Any, source: str) -> Mapping[str, Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} does not contain a state_dict (got {type(obj).__name__})")
    return obj


def load_official_checkpoint(path_or_state_dict: PathOrDict, variant: str = "base") -> HPCM:
    """Builds an :class:`HPCM` from an official checkpoint (file path or state_dict).

    The state_dict may be wrapped under a ``"state_dict"`` key.  Files are read with
    ``torch.load(..., weights_only=True)``, so no pickled code ever runs.  Call
    ``model.update()`` before compress / decompress.
    """
    if variant not in OFFICIAL_VARIANTS:
        raise InputError(f"unknown official variant {variant!r}; choose one of {OFFICIAL_VARIANTS}")
    if isinstance(path_or_state_dict, Mapping):
        source, obj = "the given object", path_or_state_dict
    else:
        source, obj = str(path_or_state_dict), read_checkpoint_file(path_or_state_dict)
    kind = project_checkpoint_kind(obj)
    if kind is not None:
        raise CheckpointError(f"{source} is a hpcm-tune {kind}, not an official LIC-HPCM "
                              "state_dict: drop --official (hpcm.load_model reads it)")
    converted = convert_official_state_dict(_as_state_dict(obj, source), variant)
    model = HPCM(PRESETS[variant])
    model.load_state_dict(converted)
    return model.eval()


def write_checkpoint_file(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path``, complete or not at all (``hpcm_tune.files.atomic_write``).

    Raises:
        hpcm_tune.errors.WriteError: the file could not be written (a full disk, which
            torch reports as a RuntimeError, included); an earlier ``path`` is unchanged.
    """
    return atomic_write(path, lambda f: torch.save(obj, f), io_errors=(OSError, RuntimeError))


def save_weights(config: HPCMConfig | Mapping[str, Any], state_dict: Mapping[str, Tensor],
                 path: str | os.PathLike) -> Path:
    """Writes a model file in this project's format (``MODEL_FORMAT``: the architecture and
    its weights), atomically; :func:`load_model` and :func:`read_weights` read it."""
    if isinstance(config, HPCMConfig):
        config = dataclasses.asdict(config)
    return write_checkpoint_file({"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION,
                                  "config": dict(config), "state_dict": state_dict}, path)


def save_model(model: HPCM, path: str | os.PathLike) -> Path:
    """Saves ``model`` (config + state_dict) in this project's format, atomically."""
    return save_weights(model.config, model.state_dict(), path)


def training_state(obj: Any) -> Mapping[str, Any] | None:
    """The fine-tuner state (``TRAINING_FORMAT``: weights, optimizer, its fine-tuning config)
    of a loaded training checkpoint, a trial state holding one or the state itself; None
    for anything else (a model file, an official state_dict)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("trainer"), Mapping):
        obj = obj["trainer"]
    return obj if isinstance(obj, Mapping) and obj.get("format") == TRAINING_FORMAT else None


def read_weights(path_or_dict: PathOrDict) -> tuple[HPCMConfig, Mapping[str, Tensor]]:
    """The stored architecture and weights of a model file (:func:`save_weights`) or of a
    training checkpoint; see :func:`load_model`, which builds the model from them.

    Raises:
        CheckpointError: unreadable file, unknown format or an invalid config.
    """
    _, config, state_dict = _read_weights(path_or_dict)
    return config, state_dict


def _read_weights(path_or_dict: PathOrDict) -> tuple[str, HPCMConfig, Mapping[str, Tensor]]:
    if isinstance(path_or_dict, Mapping):
        source, obj = "the given object", path_or_dict
    else:
        source, obj = str(path_or_dict), read_checkpoint_file(path_or_dict)
    obj = _model_part(obj)
    if not isinstance(obj, Mapping) or "state_dict" not in obj or "config" not in obj:
        raise CheckpointError(
            f"{source} is not an hpcm-tune model file (needs 'config' and 'state_dict'); "
            "an official LIC-HPCM file needs --official (hpcm.load_official_checkpoint())"
        )
    if "format" in obj and (obj["format"] != MODEL_FORMAT or obj.get("version") != MODEL_FORMAT_VERSION):
        raise CheckpointError(
            f"{source} has format {obj['format']!r} version {obj.get('version')!r}; "
            f"expected {MODEL_FORMAT!r} version {MODEL_FORMAT_VERSION}"
        )
    try:
        stored = HPCMConfig.from_dict(obj["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source} has an invalid config: {err}") from err
    return source, stored, _as_state_dict(obj, source)


def load_model(path_or_dict: PathOrDict, config: HPCMConfig | str | None = None) -> HPCM:
    """Loads a model saved by :func:`save_model` or a training checkpoint: a trial state
    (``trial_state.pt``, ``finetune``'s ``best.pt``), its trainer state, or any dict with
    "config" and "state_dict".

    Args:
        path_or_dict: file path or the loaded dict.
        config: expected architecture (preset name or config); default: the stored config.

    Raises:
        CheckpointError: unreadable file, unknown format, or a state_dict that does not fit.
    """
    source, stored, state_dict = _read_weights(path_or_dict)
    if config is None:
        config = stored
    elif isinstance(config, str):
        if config not in PRESETS:
            raise InputError(f"unknown preset {config!r}; valid: {sorted(PRESETS)}")
        config = PRESETS[config]

    model = HPCM(config)
    missing, unexpected, wrong = _compare(state_dict, model.state_dict(), resizable=_RESIZABLE_BUFFERS)
    if missing or unexpected or wrong:
        hint = (
            f"The checkpoint's stored config is preset {stored.name!r}; load it with that config."
            if stored != config
            else "The file's state_dict does not match its own config; it is corrupt or was edited."
        )
        raise CheckpointError(
            _mismatch_message(f"{source} does not fit preset {config.name!r}:", missing, unexpected, wrong, hint)
        )
    model.load_state_dict(dict(state_dict))
    return model
