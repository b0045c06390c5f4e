"""The Ray cluster a sweep runs on: join one (``--address``, or a Ray Job's) or start a local
one on the loopback address.

``prepare`` runs before Ray is imported (a local cluster's bind address is read at import)
and refuses, within seconds, an address where no Ray head answers: ``ray.init`` would
otherwise retry for minutes.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
from pathlib import Path

from hpcm_tune.errors import UsageError


def cluster_address(given: str | None) -> str | None:
    """``--address``, or inside a Ray Job the job's cluster (RAY_ADDRESS): never start another."""
    return given or os.environ.get("RAY_ADDRESS") or None


def prepare(address: str | None) -> None:
    """Before Ray is imported: a local cluster listens on 127.0.0.1 only; a remote address
    must answer within seconds.

    Raises:
        UsageError: nothing listens at ``address``, or something that is no Ray head.
    """
    if address is None:
        # On Linux Ray binds the node's public IP unless it believes it runs on a laptop OS;
        # this switch (read at import) makes it use the loopback address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        return
    if address == "auto":
        return
    host, _, port = address.split("://")[-1].rstrip("/").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot reach the Ray cluster at --address {address} ({exc}); "
                         "check the head's address and port, or omit --address to run "
                         "locally") from exc
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):
        _check_speaks_grpc(address, f"{host}:{port}")


def _check_speaks_grpc(address: str, target: str) -> None:
    """A port that accepts TCP but is no Ray head (a web server, say) would make ray.init
    retry for minutes: the head's GCS (or Ray Client server) must answer a gRPC handshake."""
    import grpc

    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
    except grpc.FutureTimeoutError as exc:
        raise UsageError(f"--address {address} accepts connections but does not answer as a "
                         "Ray cluster; give the head's GCS port (6379 by default) or its Ray "
                         "Client port (ray://...:10001)") from exc
    finally:
        channel.close()


#: What ``Tuner.fit`` imports before its first trial starts, slowly: Tune's TensorBoard
#: logger imports tensorboardX and with it torch (the driver needs neither otherwise), and
#: Tune imports Ray's tracker integrations to count the callbacks it was given.
TUNE_START_IMPORTS = ("ray.tune", "tensorboardX", "ray.air.integrations.comet",
                      "ray.air.integrations.mlflow", "ray.air.integrations.wandb",
                      "ray.tune.logger.aim")


def _import_tune_start() -> None:
    for name in TUNE_START_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # Tune imports it again where it needs it and says what is missing
            pass


def connect(address: str | None, dashboard: bool, verbose: bool = True) -> None:
    """``ray.init``: join ``address``, or start a local cluster (its dashboard, if asked for,
    on 127.0.0.1 only). ``verbose=False``: the workers' output is not streamed to this
    console (it stays in the session's logs, :func:`worker_log_dir`).

    While Ray starts (seconds spent mostly waiting for its processes), a thread imports what
    Tune will import before the first trial (:data:`TUNE_START_IMPORTS`): every sweep's
    first trial starts ~2.5 s sooner on 2 cores. The thread is joined before this returns,
    so no import runs alongside the caller's.
    """
    import ray

    imports = threading.Thread(target=_import_tune_start, name="import-tune", daemon=True)
    imports.start()
    try:
        _init(ray, address, dashboard, verbose)
    finally:
        imports.join()


def _init(ray, address: str | None, dashboard: bool, verbose: bool) -> None:
    if address:
        try:
            ray.init(address=address, log_to_driver=verbose)
        except ConnectionError as exc:
            raise UsageError(f"cannot reach the Ray cluster at --address {address} "
                             f"({exc}); is a Ray head listening there?") from exc
        return
    # "local": never attach to another cluster on this machine
    ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1",
             log_to_driver=verbose)


def worker_log_dir() -> str | None:
    """The Ray session's log folder on this node, if the driver runs on one (not via Ray
    Client): each trial's worker output is worker-*-<pid>.err there, pid in its results."""
    try:
        from ray._private import worker

        return str(Path(worker._global_node.get_session_dir_path()) / "logs")
    except (AttributeError, ImportError):
        return None
