"""TrialSpec: one typed trial record, its flat form in Tune and in the marker."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from hpcm_tune.errors import InputError
from hpcm_tune.names import MARKER, searched_knobs
from search_spaces import FineTuneSpace
from trainables.spec import TrialSpec
from trainables.sweep import SweepOptions


def test_every_knob_the_search_space_suggests_is_a_trial_setting():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggested: set[str] = set()
    for _ in range(60):
        trial = study.ask()
        FineTuneSpace(max_epochs=12, wide=True)(trial)
        suggested |= set(trial.params)
        study.tell(trial, 0.0)
        spec = TrialSpec.from_config({**trial.params, "epochs": 12})
        for name, value in trial.params.items():  # each one reaches the fine-tune's config
            assert getattr(spec.finetune.layer_lr, name) == value
    assert {"unfreeze_h_epoch", "base_lr", "h_multiplier"} <= suggested
    assert suggested == set(searched_knobs(wide=True))


def test_a_misspelt_setting_is_refused_by_name():
    with pytest.raises(InputError, match="unknown trial settings: context_lr_raito;"):
        TrialSpec.from_config({"context_lr_raito": 0.5, "epochs": 12})


def test_the_flat_form_reads_back_to_the_same_record():
    spec = TrialSpec(model="tiny", checkpoint="/x/model.pt", max_side=256,
                     stopper={"patience": 3}).replace(
        lmbda=0.0009, epochs=7, freeze_strategy="progressive", unfreeze_h_epoch=2,
        unfreeze_context_epoch=4, context_lr_ratio=0.3)
    config = spec.to_config()
    assert set(config) == set(TrialSpec.names())
    assert config["context_lr_ratio"] == 0.3 and config["lmbda"] == 0.0009
    assert TrialSpec.from_config(config) == spec


def test_bad_values_are_refused_when_the_record_is_built():
    with pytest.raises(InputError, match="unfreeze_context_epoch .5. must be below the epoch"):
        TrialSpec().replace(epochs=5, freeze_strategy="progressive", unfreeze_h_epoch=1,
                            unfreeze_context_epoch=5)
    with pytest.raises(InputError, match="checkpoint_every must be > 0"):
        TrialSpec(checkpoint_every=0)
    with pytest.raises(InputError, match="needs its checkpoint file"):
        TrialSpec(checkpoint_kind="official")


@pytest.mark.parametrize("wide", [False, True])
def test_the_param_space_leaves_the_searched_knobs_to_the_searcher(tmp_path, wide):
    from trainables.sweep import param_space

    options = SweepOptions(name="s", storage_path=str(tmp_path), trial=TrialSpec().replace(
        base_lr=5e-4), epochs=6, seed=3, wide_space=wide)
    space = param_space(options)
    assert not set(space) & set(searched_knobs(wide))
    assert space["epochs"] == 6 and space["seed"] == 3  # the sweep's, not the record's
    assert ("base_lr" in space) is not wide  # a constant unless it is searched


def test_a_fixed_config_sweep_sets_its_knobs_in_the_param_space(tmp_path):
    from trainables.sweep import param_space

    options = SweepOptions(name="s", storage_path=str(tmp_path), epochs=6,
                           fixed_config={"context_lr_ratio": 0.25, "freeze_strategy": "none"},
                           lambdas=[0.001, 0.002])
    assert options.searched == ("context_lr_ratio", "freeze_strategy")
    space = param_space(options)
    assert space["context_lr_ratio"] == 0.25 and space["freeze_strategy"] == "none"
    assert space["lmbda"] == {"grid_search": [0.001, 0.002]}


def test_the_marker_keeps_the_trial_record(tmp_path):
    from trainables.sweep import read_marker, write_marker

    trial = TrialSpec(checkpoint=str(tmp_path / "m.pt"), stopper=None).replace(
        lmbda=0.0009, crops_per_image=6)
    options = SweepOptions(name="s", storage_path=str(tmp_path), trial=trial,
                           max_context_lr_ratio=3.0)
    write_marker(options)
    assert read_marker(options.path) == options
    # A marker written before the ratio's range was an option: the report's range.
    marker = Path(options.path) / MARKER
    data = json.loads(marker.read_text())
    del data["max_context_lr_ratio"]
    marker.write_text(json.dumps(data))
    assert read_marker(options.path).max_context_lr_ratio == 1.0
