import pickle

import optuna
import pytest

from search_spaces import FineTuneSpace, preset_points


def _sample(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        space(trial)
        study.tell(trial, 0.0)
    return [t.params for t in study.trials]


def test_unfreeze_epochs_only_for_progressive_and_ordered():
    samples = _sample(FineTuneSpace(max_epochs=20), 200)
    strategies = {p["freeze_strategy"] for p in samples}
    assert strategies == {"none", "entropy", "progressive"}
    for p in samples:
        assert 0.01 <= p["context_lr_ratio"] <= 1.0
        if p["freeze_strategy"] == "progressive":
            assert 1 <= p["unfreeze_h_epoch"] < p["unfreeze_context_epoch"] < 20
        else:
            assert "unfreeze_h_epoch" not in p and "unfreeze_context_epoch" not in p
            assert "base_lr" not in p


def test_context_ratio_is_log_uniform():
    ratios = [p["context_lr_ratio"] for p in _sample(FineTuneSpace(max_epochs=10), 400)]
    below_0_1 = sum(r < 0.1 for r in ratios) / len(ratios)
    assert below_0_1 == pytest.approx(0.5, abs=0.08)  # log-uniform: half of [0.01, 1] is < 0.1


def test_wide_space_adds_base_lr_and_h_multiplier():
    space = FineTuneSpace(max_epochs=10, wide=True, base_lr=5e-4)
    lrs = []
    for p in _sample(space, 200):
        assert 5e-4 / 4 <= p["base_lr"] <= 5e-4 * 4 and 0.1 <= p["h_multiplier"] <= 1.0
        assert 0.01 <= p["context_lr_ratio"] <= 1.0
        lrs.append(p["base_lr"])
    # Log-uniform around the task's base LR: as many draws below it as above.
    assert sum(lr < 5e-4 for lr in lrs) / len(lrs) == pytest.approx(0.5, abs=0.1)


def test_ratios_above_1_only_when_asked_for():
    samples = _sample(FineTuneSpace(max_epochs=10, max_context_lr_ratio=4.0), 60)
    assert all(0.01 <= p["context_lr_ratio"] <= 4.0 for p in samples)
    # log-uniform over [0.01, 4]: 23 % of the draws lie above 1 (60 draws, all below: 1.5e-7)
    assert any(p["context_lr_ratio"] > 1 for p in samples)
    for bad in (0.5, float("inf"), float("nan")):  # below 1 would drop preset points
        with pytest.raises(ValueError, match="largest context-LR ratio searched must be a "
                                             "number >= 1"):
            FineTuneSpace(max_epochs=10, max_context_lr_ratio=bad)


def test_a_wide_space_completes_a_preset_point_with_the_tasks_base_lr():
    task = {"base_lr": 5e-4, "h_multiplier": 0.5, "lmbda": 0.0003}
    point = {"context_lr_ratio": 1.0, "freeze_strategy": "none"}
    wide = FineTuneSpace(max_epochs=12, wide=True, base_lr=task["base_lr"])
    assert wide.complete(point, task) == {**point, "base_lr": 5e-4, "h_multiplier": 0.5}
    own = {**point, "base_lr": 2e-4}  # a point that names its own LR (a warm start's) keeps it
    assert wide.complete(own, task) == {**own, "h_multiplier": 0.5}
    assert FineTuneSpace(max_epochs=12).complete(point, task) == point


def test_a_value_in_the_outer_tenth_of_its_range_lies_at_that_end():
    space = FineTuneSpace(max_epochs=12, wide=True, base_lr=5e-4)
    ends = space.ends_reached({"context_lr_ratio": 1.0, "freeze_strategy": "none",
                               "base_lr": 5e-4 / 3.9, "h_multiplier": 0.5})
    assert [(e.knob, e.top) for e in ends] == [("context_lr_ratio", True), ("base_lr", False)]
    # [0.01, 1] spans two decades (log-uniform): its top tenth begins at 10**-0.2 = 0.631.
    assert [e.knob for e in space.ends_reached({"context_lr_ratio": 0.64})] == ["context_lr_ratio"]
    assert space.ends_reached({"context_lr_ratio": 0.62}) == []
    assert space.ends_reached({"context_lr_ratio": 0.1, "base_lr": 5e-4, "h_multiplier": 0.3}) == []
    # Only what the space searches: the base LR is the task's in the report's space, and
    # ratio 1 is the middle of a range widened to 4 (not its end).
    assert FineTuneSpace(max_epochs=12).ends_reached({"context_lr_ratio": 0.1, "base_lr": 1e-9}) == []
    assert FineTuneSpace(max_epochs=12, max_context_lr_ratio=4).ends_reached(
        {"context_lr_ratio": 1.0}) == []


def test_space_pickles_by_reference_to_an_importable_module():
    space = FineTuneSpace(max_epochs=30, wide=True)
    assert pickle.loads(pickle.dumps(space)) == space
    assert type(space).__module__ == "search_spaces.spaces"


def test_too_small_budget_is_refused():
    with pytest.raises(ValueError, match="at least 3 epochs"):
        FineTuneSpace(max_epochs=2)


def test_presets():
    # The default runs the baselines first: the report's recommendation, plain fine-tuning.
    assert preset_points("optuna", 50) == [{"context_lr_ratio": 0.1, "freeze_strategy": "entropy"},
                                           {"context_lr_ratio": 1.0, "freeze_strategy": "none"}]
    assert [p["context_lr_ratio"] for p in preset_points("seed-context-lr", 50)] == [
        1.0, 0.5, 0.1, 0.01]
    freeze = preset_points("seed-freeze", 500)  # the report's progressive run
    assert [p["freeze_strategy"] for p in freeze] == ["none", "entropy", "progressive"]
    assert (freeze[2]["unfreeze_h_epoch"], freeze[2]["unfreeze_context_epoch"]) == (100, 200)
    scaled = preset_points("seed-freeze", 12)[2]  # 1/5 and 2/5 of the budget
    assert (scaled["unfreeze_h_epoch"], scaled["unfreeze_context_epoch"]) == (2, 5)
    ablation = preset_points("seed-ablation", 12)
    assert len(ablation) == 6 and len({tuple(sorted(p.items())) for p in ablation}) == 6
    with pytest.raises(ValueError, match="unknown search preset"):
        preset_points("grid", 10)


def test_preset_points_are_valid_points_of_the_space():
    space = FineTuneSpace(max_epochs=12)
    study = optuna.create_study()
    for point in preset_points("seed-ablation", 12):
        study.enqueue_trial(point)
        trial = study.ask()
        space(trial)
        assert trial.params == point
        study.tell(trial, 1.0)
