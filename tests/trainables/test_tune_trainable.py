"""The Tune trainable (trainables.tune_trainable) in a real Tune run on a local Ray.

A trial's restore from its checkpoint after its worker is killed is tested within a sweep
(tests/trainables/test_sweep.py, the killed-trial test).
"""

from __future__ import annotations

import pytest
import ray
from ray import tune

from trainables.spec import TrialSpec
from trainables.trial import load_state
from trainables.tune_trainable import hpcm_trainable

EPOCHS = 2


@pytest.fixture(scope="module")
def result(tmp_path_factory, photo_dirs, pretrained_tiny_path):
    ray.init(address="local", num_cpus=1, include_dashboard=False)  # never another one
    try:
        node_id = ray.get_runtime_context().get_node_id()
        tuner = tune.Tuner(
            tune.with_resources(hpcm_trainable, {"cpu": 1}),
            param_space=TrialSpec(
                model="tiny", checkpoint=str(pretrained_tiny_path),
                train_dir=str(photo_dirs / "train"), val_dir=str(photo_dirs / "val"),
                max_side=192, keep_scale_best=True).replace(
                lmbda=0.0483, batch_size=4, crops_per_image=1, epochs=EPOCHS).to_config(),
            run_config=tune.RunConfig(storage_path=str(tmp_path_factory.mktemp("tune")),
                                      name="trainable", verbose=0))
        (trial,) = tuner.fit()
    finally:
        ray.shutdown()
    return trial, node_id


def test_every_epoch_is_reported_with_the_resources_ray_assigned(result):
    trial, node_id = result
    assert trial.error is None
    history = trial.metrics_dataframe
    assert history["epoch"].tolist() == list(range(EPOCHS))
    assert history["training_iteration"].tolist() == list(range(1, EPOCHS + 1))
    # No GPU assigned: one CPU device, no GPU ids; the node is the one Ray ran it on.
    assert set(history["node_id"]) == {node_id}
    assert set(history["devices"]) == {1} and set(history["gpu_ids"].fillna("")) == {""}
    assert set(history["device"]) == {"cpu"}


def test_the_checkpoint_holds_the_trial_state_and_each_scales_best_weights(result):
    trial, _ = result
    with trial.checkpoint.as_directory() as directory:
        state = load_state(directory)
    assert state["trainer"]["epoch"] == EPOCHS
    assert state["best"]["epoch"] == trial.metrics["best_epoch"]
    assert state["best"]["loss"] == trial.metrics["best_loss"]
    assert set(state["scale_best_weights"]) == {"s1", "s2", "s3"}
    for weights in state["scale_best_weights"].values():
        assert weights.keys() == state["trainer"]["state_dict"].keys()


def test_a_staged_checkpoint_is_removed_once_its_owner_died_and_not_before(tmp_path):
    """A worker killed while its checkpoint waits in ``tune.report`` (its driver died) leaves
    the staged folder behind; the next trial on the node removes it, never a live one."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from trainables.tune_trainable import remove_orphaned_staging

    owner = subprocess.Popen(
        [sys.executable, "-c", "import time; from trainables.tune_trainable import "
         "stage_checkpoint_folder; folder, lock = stage_checkpoint_folder('hpcm-ckpt-t1-'); "
         "print(folder.name, flush=True); time.sleep(120)"],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE, text=True)
    try:
        staged = Path(owner.stdout.readline().strip())
        assert staged.parent == tmp_path and staged.is_dir()
        # Staged before the owner lock existed: removed by its own trial's next attempt only.
        unlocked = {t: tmp_path / f"hpcm-ckpt-{t}-old" for t in ("t2", "t3")}
        for folder in unlocked.values():
            folder.mkdir()
        assert remove_orphaned_staging(tmp_path, "hpcm-ckpt-t2-") == [unlocked["t2"]]
        assert staged.is_dir() and unlocked["t3"].is_dir()  # the owner lives
    finally:
        owner.kill()  # as a driver's death takes its workers: no clean-up runs
        owner.wait()
    assert staged.is_dir()
    assert remove_orphaned_staging(tmp_path, "hpcm-ckpt-t4-") == [staged]
    assert not staged.exists() and unlocked["t3"].is_dir()
