"""hpcm_tune.files: atomic_write (the new file whole, or the earlier one untouched) and the
cache folder."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcm_tune.errors import HpcmTuneError, WriteError
from hpcm_tune.files import atomic_write, default_cache_dir

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_writes_bytes_or_through_a_function_and_creates_the_folder(tmp_path):
    target = tmp_path / "a" / "b" / "data.bin"
    assert atomic_write(target, b"first") == target
    assert target.read_bytes() == b"first"
    atomic_write(target, lambda f: (f.write(b"sec"), f.write(b"ond")))
    assert _files(target.parent) == {"data.bin": b"second"}  # replaced, no temporary left


def test_a_failed_write_leaves_the_earlier_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.pt"
    target.write_bytes(b"earlier")

    def disk_full(f):
        f.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as err:
        atomic_write(target, disk_full)
    assert _files(tmp_path) == {"state.pt": b"earlier"}
    message = str(err.value)
    assert message.startswith(f"cannot write {target} (No space left on device; ")
    assert "MiB free there" in message and "earlier state.pt is unchanged" in message
    # The CLI prints it as one line; callers that catch OSError still do.
    assert isinstance(err.value, HpcmTuneError) and isinstance(err.value, OSError)
    assert "\n" not in message


def test_a_real_size_limit_is_a_write_error(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG), as a full disk would."""
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "from hpcm_tune.files import atomic_write\n"
            "from hpcm_tune.errors import WriteError\n"
            "try:\n    atomic_write(sys.argv[1], bytes(100_000))\n"
            "except WriteError as exc:\n    print(exc)\n")
    target = tmp_path / "big.bin"
    target.write_bytes(b"earlier")
    out = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    assert out.startswith(f"cannot write {target} (File too large")
    assert _files(tmp_path) == {"big.bin": b"earlier"}


def test_other_exceptions_propagate_unchanged_and_clean_up(tmp_path):
    target = tmp_path / "out.json"
    target.write_bytes(b"{}")

    def bug(f):
        f.write(b"{")
        raise TypeError("Object of type set is not JSON serializable")

    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_write(target, bug)
    assert _files(tmp_path) == {"out.json": b"{}"}


def test_io_errors_widen_what_counts_as_a_failed_write(tmp_path):
    """torch.save reports a full disk as a RuntimeError."""
    def torch_like(f):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed\n"
                           "more detail")

    with pytest.raises(WriteError, match=r"\(PytorchStreamWriter failed writing file data/0: "
                                         r"file write failed; \d+ MiB free there\)"):
        atomic_write(tmp_path / "x.pt", torch_like, io_errors=(OSError, RuntimeError))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_created_is_a_write_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(WriteError, match=f"cannot write {blocker / 'sub' / 'x.bin'} "):
        atomic_write(blocker / "sub" / "x.bin", b"data")


def test_location_keeps_uris_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    from hpcm_tune.files import is_uri, location

    monkeypatch.chdir(tmp_path)
    assert location("s3://bucket/results") == "s3://bucket/results"
    assert location("results") == str(tmp_path / "results")
    assert is_uri("gs://b/x") and not is_uri("results/x") and not is_uri("/abs/x")


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCM_TUNE_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.delenv("HPCM_TUNE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "hpcm-tune"
