"""Opt-in trackers: keys only from the environment, one clear error when something is missing."""

from __future__ import annotations

import sys

import pytest

from trainables.tracking import tensorboard_available, tracking_callbacks


def test_no_flags_no_callbacks():
    assert tracking_callbacks(None, None, "exp") == []


def test_tensorboard_is_on_by_default():
    # ray[tune] depends on tensorboardX, so Tune's TBXLoggerCallback is always added.
    assert tensorboard_available()


def test_wandb_needs_the_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(ValueError, match="export WANDB_API_KEY"):
        tracking_callbacks("hpcm", None, "exp")


def test_wandb_needs_the_package(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ValueError, match="pip install wandb"):
        tracking_callbacks("hpcm", None, "exp")


def test_mlflow_refuses_credentials_in_the_uri():
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_USERNAME"):
        tracking_callbacks(None, "https://alice:secret@mlflow.example.com", "exp")


def test_mlflow_needs_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ValueError, match="pip install mlflow"):
        tracking_callbacks(None, "file:///tmp/mlruns", "exp")


def test_mlflow_callback(tmp_path):
    pytest.importorskip("mlflow")
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    (callback,) = tracking_callbacks(None, (tmp_path / "mlruns").as_uri(), "exp")
    assert isinstance(callback, MLflowLoggerCallback)
    assert callback.experiment_name == "exp" and callback.tracking_token is None
