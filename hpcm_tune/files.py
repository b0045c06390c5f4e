"""The one way the project writes a file: complete or not at all (``atomic_write``); and
where results go: a local folder or a storage URI (``is_uri``, ``location``); where cached
data goes (``default_cache_dir``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hpcm_tune.errors import WriteError


def atomic_write(path: str | os.PathLike[str], content: bytes | Callable[[IO[bytes]], Any], *,
                 io_errors: tuple[type[BaseException], ...] = (OSError,)) -> Path:
    """Write ``path`` from ``content``: bytes, or a function that writes to a binary file.

    The data goes to a temporary file in the same folder (created if missing), is flushed
    to the disk (fsync) and renamed over ``path`` (``os.replace``, atomic on one file
    system): a reader, or a crash at any moment, sees the earlier file or the complete new
    one, never a torn one, and parallel writers of the same file never mix their data.

    On any failure the temporary file is removed and an earlier ``path`` is left as it was.
    An exception of ``io_errors`` (``OSError``; add ``RuntimeError`` for ``torch.save``,
    which reports a full disk as one) becomes a :class:`WriteError` naming the file, the
    reason and the free space there; any other exception (a bug in ``content``) propagates
    unchanged.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except io_errors as exc:
        raise WriteError(f"cannot write {path} ({_reason(exc)}{_free_space(path.parent)}): "
                         f"is the disk full or the folder not writable? Any earlier "
                         f"{path.name} is unchanged") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()  # torch's messages span lines; the first says it
    return lines[0] if lines else type(exc).__name__


def _free_space(folder: Path) -> str:
    """``"; N MiB free there"`` for the nearest existing folder, or nothing if unknown."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"; {shutil.disk_usage(folder).free / 2**20:.0f} MiB free there"
    except OSError:
        return ""


def is_uri(path: str) -> bool:
    """A storage URI (``s3://``, ``gs://``, ``file://``...) rather than a local path."""
    return "://" in path


def location(path: str) -> str:
    """A storage URI as given; a local path made absolute (Ray workers run elsewhere)."""
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def default_cache_dir() -> Path:
    """Cache folder for materialised data: ``$HPCM_TUNE_CACHE`` or ``~/.cache/hpcm-tune``."""
    env = os.environ.get("HPCM_TUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hpcm-tune"
