"""The cluster workflow locally: a Ray head with the dashboard on 127.0.0.1 and token auth,
the sweep submitted as a Ray Job, the job seen in a real browser, unauthenticated requests
refused. The head is a `ray start --head --block` process group this module owns and ends.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.cluster.browser import chromium_binary, dashboard_page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PYTEST_ARTIFACTS", REPO / "artifacts"))
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head")
    token = secrets.token_hex(16)  # what `ray get-auth-token --generate` makes
    token_path = tmp / "auth_token"
    token_path.write_text(token)
    token_path.chmod(0o600)
    gcs, dashboard = _free_port(), _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path),
               PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)
    log = open(tmp / "ray-start.log", "w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--ray-client-server-port={_free_port()}",
         f"--dashboard-agent-listen-port={_free_port()}", "--num-cpus=2", "--num-gpus=0",
         "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp / "ray-start.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the dashboard did not come up"
            try:
                if requests.get(f"{url}/api/version", headers=headers, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        yield {"url": url, "token": token, "headers": headers, "dashboard_port": dashboard}
    finally:
        _end_process_group(proc)
        log.close()


def _end_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the `ray start` group, then SIGKILL whatever of it (by pid) is left."""
    try:
        owned = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        owned = [proc.pid]
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    gone, alive = psutil.wait_procs([p for p in map(_proc, owned) if p], timeout=15)
    for p in alive:
        p.kill()


def _proc(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


@pytest.fixture(scope="module")
def job(head, tmp_path_factory, photo_dirs, pretrained_tiny_path):
    from ray.job_submission import JobSubmissionClient

    storage = tmp_path_factory.mktemp("jobs") / "results"
    client = JobSubmissionClient(head["url"], headers=head["headers"])
    entrypoint = (
        f"{sys.executable} tune_main.py run --epochs 3 --num-samples 2 --preset seed-freeze "
        f"--checkpoint {pretrained_tiny_path} --lmbda 0.0483 --train-dir {photo_dirs / 'train'} "
        f"--val-dir {photo_dirs / 'val'} --batch-size 4 --crops-per-image 2 "
        f"--storage-path {storage} --name jobs-sweep")
    submission_id = client.submit_job(
        entrypoint=entrypoint,
        submission_id=f"hpcm-tune-test-{secrets.token_hex(3)}",
        runtime_env={"working_dir": str(REPO),
                     "excludes": [".git", ".venv", "results", "artifacts", ".pytest_cache",
                                  "cluster-data", "*.pth", "*.pth.tar"],
                     "env_vars": {"HPCM_TUNE_CACHE": os.environ["HPCM_TUNE_CACHE"]}})
    return {"client": client, "id": submission_id, "storage": storage, "url": head["url"],
            "headers": head["headers"],
            "entrypoint": entrypoint}


def test_requests_without_the_token_are_refused(head, job):
    assert requests.get(f"{head['url']}/api/jobs/", timeout=10).status_code == 401
    bad = {"Authorization": f"Bearer {secrets.token_hex(16)}"}
    assert requests.get(f"{head['url']}/api/jobs/", headers=bad, timeout=10).status_code == 403
    ok = requests.get(f"{head['url']}/api/jobs/", headers=head["headers"], timeout=10)
    assert ok.status_code == 200 and job["id"] in ok.text
    from ray.job_submission import JobSubmissionClient

    with pytest.raises(Exception, match="(?i)auth|401"):
        JobSubmissionClient(head["url"]).list_jobs()


def test_the_dashboard_in_a_browser_shows_the_running_sweep(head, job, tmp_path):
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (.ci/install-chromium installs it with apt "
                    "where apt and network to the Debian mirror are available)")
    status = job["client"].get_job_status(job["id"])
    screenshot = ARTIFACTS / "dashboard-jobs.png"
    text = dashboard_page(head["url"], head["token"], "/jobs", job["id"], screenshot,
                          profile=tmp_path / "chromium-profile")
    print(f"dashboard screenshot ({status} at start): {screenshot}")
    (ARTIFACTS / "dashboard-jobs.txt").write_text(text)
    assert job["id"] in text, text[-2000:]
    # A real rendering of the page at the browser's window size (1400 x 1000), not a blank one.
    from PIL import Image

    with Image.open(screenshot) as img:
        assert img.format == "PNG" and img.width >= 1000 and img.height >= 600, img.size
        grey = img.convert("L")
        assert grey.getextrema()[1] - grey.getextrema()[0] > 100  # text on a background
        assert len(grey.getcolors(maxcolors=256) or ()) > 16, "a flat image"


def test_the_sweep_job_succeeds_and_writes_its_results(job):
    from ray.job_submission import JobStatus

    client, deadline = job["client"], time.monotonic() + 240
    while (status := client.get_job_status(job["id"])) not in (
            JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, client.get_job_logs(job["id"])[-3000:]
        time.sleep(1)
    logs = client.get_job_logs(job["id"])
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "sweep finished" in logs and "best config" in logs, logs[-3000:]
    experiment = job["storage"] / "jobs-sweep"
    trials = sorted(experiment.glob("trial_*/result.json"))
    assert len(trials) == 2
    assert all(t.read_text().strip() for t in trials)
    assert list(experiment.glob("trial_*/events.out.tfevents.*"))
    # The sweep ran on the job's cluster (the head it was submitted to), not on a second
    # local Ray that the entrypoint started for itself.
    nodes = requests.get(f"{job['url']}/api/v0/nodes", headers=job["headers"], timeout=10)
    node_ids = {n["node_id"] for n in nodes.json()["data"]["result"]["result"]}
    for t in trials:
        last = json.loads(t.read_text().splitlines()[-1])
        assert last["node_id"] in node_ids
