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
