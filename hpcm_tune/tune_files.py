"""Ray Tune's on-disk experiment formats: the one place that reads them and repairs them.

An experiment folder holds Tune's state (``experiment_state-*.json``, the searcher's
``search_gen_state-*.json`` / ``searcher-state-*.pkl``), the sweep options ``run`` saved
(:data:`~hpcm_tune.names.MARKER`) and one folder per trial with ``params.json`` (its config),
``result.json`` (one JSON row per report) and ``checkpoint_NNNNNN/`` folders. The analysis,
the evaluation, the scheduler's restore and ``resume`` all read them through these functions,
so a change of Tune's layout is fixed here once. Standard library only: no Ray or torch.
"""

from __future__ import annotations

import json
import logging
import pickletools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcm_tune.errors import HpcmTuneError
from hpcm_tune.files import atomic_write
from hpcm_tune.names import MARKER

log = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
EXPERIMENT_STATE = "experiment_state-*.json"
#: Tune's state files that a killed driver can leave torn (see :func:`repair_torn_state`).
STATE_FILES = (EXPERIMENT_STATE, "search_gen_state-*.json", "searcher-state-*.pkl")


class TornStateError(HpcmTuneError, RuntimeError):
    """A Tune state file is torn and no intact copy exists: resuming would restart the sweep."""


@dataclass(frozen=True)
class TrialState:
    """What Tune's experiment state records of one trial (its latest save)."""

    trial_id: str | None = None
    status: str | None = None  # PENDING, RUNNING, TERMINATED, ERROR, ...
    error_filename: str | None = None  # relative to the trial folder
    num_failures: int | None = None


# -- the experiment folder --------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sweep_options(experiment: Path) -> dict[str, Any]:
    """The sweep options ``run`` saved in the marker file ({} if there is none or it is
    unreadable): the analysis reads them as plain JSON, without ``trainables``."""
    return _read_json(experiment / MARKER) or {}


def trial_dirs(experiment: Path) -> list[Path]:
    """The trial folders (those holding ``params.json`` or ``result.json``), sorted by name."""
    return sorted(p for p in experiment.iterdir() if p.is_dir() and (
        (p / PARAMS_FILE).is_file() or (p / RESULT_FILE).is_file()))


def experiment_state_files(experiment: Path) -> list[Path]:
    """Tune's ``experiment_state-*.json`` files, oldest first (the last is the latest save).

    Ordered by name, i.e. by the start time of the driver session that wrote each, as Tune's
    restore picks its file: not by modification time, since a resumed driver's final upload
    copies every session's file anew, in no particular order."""
    return sorted(experiment.glob(EXPERIMENT_STATE))


def experiment_state(experiment: Path) -> dict[str, TrialState]:
    """Per trial folder name, what the latest experiment state records ({} without one).

    A trial folder missing here was never recorded (a killed driver's last trial)."""
    files = experiment_state_files(experiment)
    if not files:
        return {}
    data = _read_json(files[-1]) or {}
    out = {}
    for entry in data.get("trial_data", []):
        # Each entry is (static, runtime) metadata, each a JSON string of its own.
        try:
            static, runtime = (json.loads(x) if isinstance(x, str) else x for x in entry)
        except (ValueError, TypeError):
            continue
        logdir = static.get("relative_logdir")
        if not logdir:
            continue
        out[Path(logdir).name] = TrialState(
            trial_id=static.get("trial_id"), status=static.get("status"),
            error_filename=runtime.get("error_filename"),
            num_failures=runtime.get("num_failures"))
    return out


def trial_id_from_dirname(name: str) -> str:
    """The trial id in a trial folder name: ours (``trial_<id>``) or Tune's default
    (``<trainable>_<id>_<n>_<config>``); the name itself if neither."""
    match = re.match(r"trial_(\w+)$", name) or re.match(r"\w+?_([0-9a-f]{5,})_\d+", name)
    return match.group(1) if match else name


# -- a trial folder ---------------------------------------------------------------------
def read_params(trial_dir: Path) -> dict[str, Any]:
    """The trial's config (``params.json``); {} if it is missing or unreadable."""
    return _read_json(trial_dir / PARAMS_FILE) or {}


def parse_results(text: str, source: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``result.json`` text in report order, without Tune's copy of the config.

    A torn line (a driver killed mid-write, or the line a running trial is writing) is
    skipped with a warning naming ``source``: it was never acted on. Tune writes NaN and
    Infinity, which ``json`` reads."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            log.warning("skipped a torn line of %s", source)
            continue
        row.pop("config", None)
        rows.append(row)
    return rows


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """Every row the trial reported (:func:`parse_results`); [] without a ``result.json``."""
    path = trial_dir / RESULT_FILE
    try:
        text = path.read_text()
    except OSError:
        return []
    return parse_results(text, path)


def per_epoch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch, in epoch order: an epoch reported again after a restore keeps its
    last report. Rows without ``epoch`` count from ``training_iteration``."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        epoch = row.get("epoch")
        if epoch is None:
            epoch = int(row.get("training_iteration", len(by_epoch) + 1)) - 1
        by_epoch[int(epoch)] = dict(row, epoch=int(epoch))
    return [by_epoch[e] for e in sorted(by_epoch)]


def checkpoint_dirs(trial_dir: Path) -> list[Path]:
    """The trial's ``checkpoint_NNNNNN`` folders still on disk, oldest first."""
    return sorted((p for p in trial_dir.glob("checkpoint_*") if p.is_dir()), key=lambda p: p.name)


def latest_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's newest checkpoint folder, if any is left."""
    found = checkpoint_dirs(trial_dir)
    return found[-1] if found else None


def checkpoint_at(trial_dir: Path, history: list[dict[str, Any]], epoch: Any) -> Path | None:
    """The checkpoint folder saved at ``epoch`` (``history`` from :func:`per_epoch`), if Tune
    kept it (it keeps the best and the latest)."""
    for row in history:
        if row["epoch"] == epoch and row.get("checkpoint_dir_name"):
            path = trial_dir / row["checkpoint_dir_name"]
            if path.is_dir():
                return path
    return None


# -- repairing Tune's state after a killed driver ---------------------------------------
def state_file_intact(data: bytes) -> bool:
    """Whether a Tune state file (JSON, or a pickle even when named .json) is complete;
    pickles are parsed, never loaded."""
    try:
        if data[:1] != b"\x80":  # not a pickle (protocol 2+ starts with PROTO)
            json.loads(data)
            return True
        ops = list(pickletools.genops(data))
        return bool(ops) and ops[-1][0].name == "STOP"
    except (ValueError, UnicodeDecodeError):
        return False


def repair_torn_state(experiment: Path, name: str) -> None:
    """Replace Tune state files torn by a killed driver with the driver's staging copies.

    Tune writes its state into a staging folder under Ray's temp dir and then copies it into
    the experiment; a driver killed during that copy leaves a truncated file, and Tune's
    restore then *silently restarts* the whole sweep. The staging copy is complete (it was
    written first), so it is used instead.

    Raises:
        TornStateError: a torn file without an intact staging copy (``name`` is the
            experiment's name, which the staging folders carry).
    """
    staging_root = Path(tempfile.gettempdir()) / "ray"
    for pattern in STATE_FILES:
        files = sorted(experiment.glob(pattern))
        if not files or state_file_intact(files[-1].read_bytes()):
            continue
        torn = files[-1]
        copies = sorted(staging_root.glob(f"session_*/artifacts/*/{name}/driver_artifacts/"
                                          f"{torn.name}"), key=lambda p: p.stat().st_mtime)
        intact = [c for c in copies if state_file_intact(c.read_bytes())]
        if not intact:
            raise TornStateError(f"{torn} is damaged (the driver was killed while writing it) "
                                 "and no intact copy was found; resuming would restart the sweep")
        atomic_write(torn, intact[-1].read_bytes())
        log.warning("%s was torn by the killed driver; restored it from %s", torn, intact[-1])
