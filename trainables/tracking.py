"""Experiment trackers for a sweep: TensorBoard (always), W&B and MLflow (opt-in).

TensorBoard: Ray Tune adds its ``TBXLoggerCallback`` to every ``Tuner.fit()`` by itself
when ``tensorboardX`` is importable (``ray[tune]`` depends on it), so every trial folder
gets ``events.out.tfevents.*`` files with each reported scalar (``s1``, ``s2``, ``s3``,
``loss``, ``best_loss``, ``bpp_*``, ``lr/*``, ``patience/*``) per training iteration:

    tensorboard --logdir results/<experiment>

:func:`tensorboard_available` says whether that holds; :func:`tracking_callbacks` returns
the opt-in trackers. API keys and passwords are read from the environment only (by the
tracker's own client): never pass them on the command line, where ``ps`` and shell history
would show them, nor inside a tracking URI.
"""

from __future__ import annotations

import importlib
import os
from urllib.parse import urlsplit

from hpcm_tune.errors import InputError

WANDB_KEY_ENV = "WANDB_API_KEY"
# MLflow's own client reads these for a remote tracking server.
MLFLOW_CREDENTIAL_ENVS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                          "MLFLOW_TRACKING_PASSWORD")


def tensorboard_available() -> bool:
    """True when Ray Tune will write TensorBoard event files (tensorboardX importable)."""
    try:
        importlib.import_module("tensorboardX")
    except ImportError:
        return False
    return True


def _require(module: str, flag: str, pip_name: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"{flag} needs the {pip_name!r} package: pip install {pip_name}") from exc


def wandb_callback(project: str, experiment_name: str):
    """Ray Tune's ``WandbLoggerCallback``: one W&B run per trial, grouped by experiment."""
    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled")
    if not offline and not os.environ.get(WANDB_KEY_ENV):
        raise InputError(f"--wandb-project needs a W&B API key in the environment: export "
                         f"{WANDB_KEY_ENV}=... (or WANDB_MODE=offline); it is never read "
                         "from a flag or a file of this project")
    _require("wandb", "--wandb-project", "wandb")
    from ray.air.integrations.wandb import WandbLoggerCallback

    # The callback reads WANDB_API_KEY itself (and ships it to its logging actor); no key
    # is passed here so none ends up in the experiment state Tune pickles to storage.
    return WandbLoggerCallback(project=project, group=experiment_name, log_config=True,
                               upload_checkpoints=False)


def mlflow_callback(tracking_uri: str, experiment_name: str):
    """Ray Tune's ``MLflowLoggerCallback``: one MLflow run per trial in ``experiment_name``."""
    parts = urlsplit(tracking_uri)
    if parts.username or parts.password:
        raise InputError("--mlflow-uri must not contain credentials: export "
                         "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or "
                         "MLFLOW_TRACKING_TOKEN instead")
    if parts.scheme not in ("", "file", "http", "https", "databricks", "sqlite", "postgresql",
                            "mysql", "mssql"):
        raise InputError(f"--mlflow-uri {tracking_uri!r}: not an MLflow tracking URI "
                         "(e.g. http://127.0.0.1:5000 or file:///path/mlruns)")
    _require("mlflow", "--mlflow-uri", "mlflow")
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    # tracking_token stays None: MLflow's client reads MLFLOW_TRACKING_TOKEN itself.
    return MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=experiment_name,
                                tags={"project": "hpcm-tune"}, save_artifact=False)


def tracking_callbacks(wandb_project: str | None, mlflow_tracking_uri: str | None,
                       experiment_name: str) -> list:
    """Tune callbacks for the trackers switched on by ``--wandb-project`` / ``--mlflow-uri``.

    Raises ValueError (one line, what to do) when a tracker is asked for but its package or
    its API key is missing. TensorBoard needs no callback here: Tune adds it by default.
    """
    callbacks = []
    if wandb_project:
        callbacks.append(wandb_callback(wandb_project, experiment_name))
    if mlflow_tracking_uri:
        callbacks.append(mlflow_callback(mlflow_tracking_uri, experiment_name))
    return callbacks
