"""Faults seen from a separate process: a full disk while a checkpoint is written, and an
unreachable Ray cluster or one that is no Ray head. All run the real CLI in a subprocess.

A full disk is simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG; SIGXFSZ
is ignored so the process gets the error instead of being killed), which needs no root and
no special file system.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import tune_main
from tests.reliability.helpers import REPO, tree

FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
import tune_main
sys.exit(tune_main.main(sys.argv[2:]))
"""


def _finetune(out: Path, photo_dirs: Path, checkpoint: Path, epochs: int) -> list[str]:
    return ["finetune", "--checkpoint", str(checkpoint), "--lmbda", "0.0483",
            "--train-dir", str(photo_dirs / "train"),
            "--val-dir", str(photo_dirs / "val"), "--epochs", str(epochs), "--batch-size", "4",
            "--crops-per-image", "1", "--out", str(out)]


@pytest.fixture(scope="module")
def disk_full(photo_dirs, tmp_path_factory, pretrained_tiny_path):
    """One good epoch, then a resumed epoch whose checkpoint cannot be written (1 MB limit;
    a trial state of the tiny model with Adam is ~30 MB)."""
    out = tmp_path_factory.mktemp("disk-full") / "ft"
    assert tune_main.main(_finetune(out, photo_dirs, pretrained_tiny_path, 1)) == 0
    before = tree(out)
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(1 << 20),
         *_finetune(out, photo_dirs, pretrained_tiny_path, 2), "--resume"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=300)
    return out, before, proc


def test_full_disk_leaves_the_previous_checkpoint_whole_and_no_temporary_file(disk_full):
    out, before, proc = disk_full
    assert proc.returncode != 0, proc.stdout[-2000:]
    after = tree(out)
    # Nothing changed: no temporary or torn file, and the epoch whose checkpoint failed is not
    # logged either (a resume runs it again; it must not appear twice in metrics.jsonl).
    assert after == before, "a file was left, changed or torn"
    assert after["latest/trial_state.pt"] == before["latest/trial_state.pt"]
    assert after["best.pt"] == before["best.pt"]
    state = torch.load(out / "latest" / "trial_state.pt", weights_only=True)
    assert state["trainer"]["epoch"] == 1


def test_full_disk_is_one_clear_line(disk_full):
    out, _, proc = disk_full
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "trial_state.pt" in last
    assert "full" in last or "space" in last


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_at(address: str, photo_dirs: Path, tmp_path: Path,
            checkpoint: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, str(REPO / "tune_main.py"), "run", "--address", address,
             "--checkpoint", str(checkpoint), "--lmbda", "0.0483",
             "--train-dir", str(photo_dirs / "train"), "--storage-path", str(tmp_path / "results")],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
            text=True, timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`run --address {address}` still waiting after 45 s")


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.stderr.strip().splitlines()[-1]


def test_unreachable_address_fails_fast_with_one_line(photo_dirs, tmp_path, pretrained_tiny_path):
    address = f"127.0.0.1:{_closed_port()}"
    last = _one_error_line(_run_at(address, photo_dirs, tmp_path, pretrained_tiny_path))
    assert last.startswith("error: cannot reach the Ray cluster") and address in last
    assert not (tmp_path / "results").exists()


def test_an_address_that_is_not_ray_fails_fast_with_one_line(photo_dirs, tmp_path,
                                                             pretrained_tiny_path):
    """A web server accepts the TCP connection; ray.init alone would wait for minutes."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        last = _one_error_line(_run_at(address, photo_dirs, tmp_path, pretrained_tiny_path))
    finally:
        server.shutdown()
        server.server_close()
    assert last.startswith(f"error: --address {address} accepts connections but does not "
                           "answer as a Ray cluster")
    assert not (tmp_path / "results").exists()
