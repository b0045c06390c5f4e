"""A real multi-node Ray cluster on this machine: a head without CPUs or GPUs and two worker
nodes declaring one fake GPU each. Two sweeps (one GPU per trial, half a GPU per trial) must
run on the workers, share a GPU when asked, land in the shared storage path, log each
trainable's CPU fallback, write TensorBoard curves, feed Optuna's storage and MLflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import ray
from ray.cluster_utils import Cluster

from tests.cluster.events import read_scalars
from tests.trainables.test_sweep import _options
from trainables.sweep import MARKER, SweepError, run_sweep
from trainables.tracking import tracking_callbacks

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
FALLBACK = "were assigned but torch sees no CUDA device: falling back to CPU"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0})
    workers = [c.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address)
    c.worker_node_ids = {w.node_id for w in workers}
    c.head_node_id = c.head_node.node_id
    yield c
    ray.shutdown()
    c.shutdown()


def _trial_nodes(results) -> dict[str, str]:
    """trial_id -> the node the trial ran on, as the trainable reported it."""
    return {r.metrics["trial_id"]: r.metrics["node_id"] for r in results}


def _worker_log(pid: int) -> str:
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    return "".join(p.read_text(errors="replace")
                   for p in session.glob(f"logs/**/worker-*-{pid}.err"))


@pytest.fixture(scope="module")
def whole_gpu(cluster, tmp_path_factory, photo_dirs, pretrained_tiny_path):
    tmp = tmp_path_factory.mktemp("whole")
    options = _options(tmp, photo_dirs, pretrained_tiny_path, "whole-gpu", epochs=EPOCHS,
                       num_samples=2, gpus_per_trial=1, cpus_per_trial=1)
    return options, run_sweep(options)


@pytest.fixture(scope="module")
def half_gpu(cluster, tmp_path_factory, photo_dirs, pretrained_tiny_path):
    tmp = tmp_path_factory.mktemp("half")
    options = _options(tmp, photo_dirs, pretrained_tiny_path, "half-gpu", epochs=EPOCHS,
                       num_samples=4, gpus_per_trial=0.5, cpus_per_trial=1,
                       optuna_storage=f"sqlite:///{tmp / 'study.db'}")
    mlruns = tmp / "mlruns"
    # MLflow 3 wants a database server in production; a folder is enough for this check.
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    callbacks = tracking_callbacks(None, mlruns.as_uri(), options.name) if _has("mlflow") else []
    return options, run_sweep(options, callbacks=callbacks), mlruns


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_one_gpu_per_trial_runs_one_trial_on_each_worker_node(cluster, whole_gpu):
    _, results = whole_gpu
    assert len(results) == 2 and not results.errors
    nodes = _trial_nodes(results)
    assert set(nodes.values()) == cluster.worker_node_ids  # both workers, never the head
    for r in results:
        assert r.metrics["device"] == "cpu" and r.metrics["gpu_ids"] == "0"


def test_half_a_gpu_per_trial_puts_two_trials_on_one_fake_gpu(cluster, half_gpu):
    _, results, _ = half_gpu
    assert len(results) == 4 and not results.errors
    nodes = _trial_nodes(results)
    assert set(nodes.values()) <= cluster.worker_node_ids
    gpus: dict[tuple[str, str], list] = {}
    for r in results:
        gpus.setdefault((nodes[r.metrics["trial_id"]], r.metrics["gpu_ids"]), []).append(r)
    shared = [rs for rs in gpus.values() if len(rs) >= 2]
    assert shared, gpus.keys()

    # ... at the same time: some two trials on one GPU have overlapping training windows.
    def window(result):
        df = result.metrics_dataframe
        return df["timestamp"].iloc[0] - df["time_this_iter_s"].iloc[0], df["timestamp"].iloc[-1]

    overlapping = [
        (a, b) for rs in shared for i, a in enumerate(rs) for b in rs[i + 1:]
        if window(a)[0] < window(b)[1] and window(b)[0] < window(a)[1]]
    assert overlapping, {k: [window(r) for r in rs] for k, rs in gpus.items()}


@pytest.mark.parametrize("sweep", ["whole_gpu", "half_gpu"])
def test_results_land_in_the_shared_storage_path(sweep, request):
    options, results = request.getfixturevalue(sweep)[:2]
    experiment = Path(options.path)
    assert (experiment / MARKER).is_file()
    for r in results:
        trial_dir = Path(r.path)
        assert trial_dir.parent == experiment
        assert (trial_dir / "result.json").is_file() and (trial_dir / "progress.csv").is_file()
        assert list(trial_dir.glob("checkpoint_*/trial_state.pt"))


@pytest.mark.parametrize("sweep", ["whole_gpu", "half_gpu"])
def test_every_trainable_logged_its_cpu_fallback(sweep, request):
    results = request.getfixturevalue(sweep)[1]
    for r in results:
        log = _worker_log(r.metrics["pid"])
        assert "WARNING trainables.finetune" in log and FALLBACK in log, r.metrics["pid"]


@pytest.mark.parametrize("sweep", ["whole_gpu", "half_gpu"])
def test_every_trial_writes_tensorboard_per_scale_curves(sweep, request):
    results = request.getfixturevalue(sweep)[1]
    for r in results:
        (events,) = Path(r.path).glob("events.out.tfevents.*")
        scalars = read_scalars(events)
        history = r.metrics_dataframe
        for scale in ("s1", "s2", "s3", "loss", "best_loss"):
            curve = scalars[f"ray/tune/{scale}"]
            assert [v for _, v in curve] == pytest.approx(history[scale].tolist(), rel=1e-5)
            assert [s for s, _ in curve] == history["training_iteration"].tolist()


def test_optuna_storage_holds_every_trial_with_params_value_and_curve(half_gpu):
    options, results, _ = half_gpu
    study = optuna.load_study(study_name=options.name, storage=options.optuna_storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == len(results) == 4
    by_strategy_and_ratio = {
        (r.config["freeze_strategy"], round(r.config["context_lr_ratio"], 12)): r
        for r in results}
    for t in trials:
        r = by_strategy_and_ratio[(t.params["freeze_strategy"],
                                   round(t.params["context_lr_ratio"], 12))]
        history = r.metrics_dataframe
        assert t.value == pytest.approx(history["best_loss"].min())
        # Optuna keys the per-epoch curve by Tune's training_iteration (OptunaSearch sends
        # every result but the one that completes the trial, which goes to tell()).
        curve = dict(zip(history["training_iteration"].astype(int), history["best_loss"]))
        assert t.intermediate_values
        for step, value in t.intermediate_values.items():
            assert value == pytest.approx(curve[step])


def test_mlflow_gets_one_run_per_trial_with_the_per_scale_metrics(half_gpu):
    options, results, mlruns = half_gpu
    mlflow = pytest.importorskip("mlflow")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = mlflow.tracking.MlflowClient(tracking_uri=mlruns.as_uri())
    experiment = client.get_experiment_by_name(options.name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(results)
    for run in runs:
        assert {"s1", "s2", "s3", "best_loss"} <= set(run.data.metrics)
        assert "freeze_strategy" in run.data.params
        assert len(client.get_metric_history(run.info.run_id, "s1")) == EPOCHS or \
            run.data.metrics.get("patience/all_stopped") == 1


def test_a_trial_larger_than_any_node_is_refused_at_launch(cluster, tmp_path, photo_dirs,
                                                            pretrained_tiny_path):
    options = _options(tmp_path, photo_dirs, pretrained_tiny_path, "too-big", gpus_per_trial=2)
    with pytest.raises(SweepError, match="largest node has 2 CPUs and 1 GPUs"):
        run_sweep(options)
    # ... and through the CLI: exit status 2 and one line, long before any trial is PENDING.
    proc = subprocess.run(
        [sys.executable, str(REPO / "tune_main.py"), "run", "--address", cluster.address,
         "--checkpoint", str(pretrained_tiny_path), "--lmbda", "0.0483",
         "--train-dir", str(photo_dirs / "train"),
         "--val-dir", str(photo_dirs / "val"), "--epochs", "3", "--num-samples", "1",
         "--gpus-per-trial", "2", "--storage-path", str(tmp_path / "cli"), "--name", "too-big"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 GPUs" in errors[0] and "1 GPUs" in errors[0], proc.stderr[-2000:]
    assert not (tmp_path / "cli" / "too-big").exists()
