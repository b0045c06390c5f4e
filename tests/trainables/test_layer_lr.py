import random

import pytest

import hpcm
from trainables.layer_lr import GROUPS, LayerLRConfig, LayerLRManager, group_of


@pytest.fixture(scope="module")
def tiny():
    return hpcm.create_model("tiny")


def test_every_parameter_has_exactly_one_group(tiny):
    manager = LayerLRManager(tiny, LayerLRConfig())
    counted = sum(row["parameters"] for row in manager.table())
    assert counted == sum(p.numel() for p in tiny.parameters())
    assert all(row["parameters"] > 0 for row in manager.table())
    assert group_of("adaptive_params_list.3") == "context"
    assert group_of("attn_s2.conv_q.weight") == "context"
    assert group_of("scales_hyper") == "entropy"
    with pytest.raises(ValueError, match="no LR group"):
        group_of("unknown.weight")


def test_group_learning_rates_follow_multipliers(tiny):
    config = LayerLRConfig(base_lr=2e-4, context_lr_ratio=0.05)
    lrs = {g["name"]: g["lr"] for g in LayerLRManager(tiny, config).param_groups()}
    assert lrs["g_a"] == pytest.approx(2e-4) and lrs["g_s"] == pytest.approx(2e-4)
    assert lrs["h_a"] == pytest.approx(1e-4) and lrs["h_s"] == pytest.approx(1e-4)
    assert lrs["context"] == pytest.approx(1e-5)
    assert set(lrs) == set(GROUPS)
    # Above 1 the context model trains faster than the transforms.
    faster = LayerLRManager(tiny, LayerLRConfig(base_lr=2e-4, context_lr_ratio=2.5))
    lrs = {g["name"]: g["lr"] for g in faster.param_groups()}
    assert lrs["context"] == pytest.approx(5e-4) and lrs["g_a"] == pytest.approx(2e-4)


@pytest.mark.parametrize("strategy, frozen_at_0", [
    ("none", set()),
    ("entropy", {"entropy"}),
    ("progressive", {"entropy", "h_a", "h_s", "context"}),
])
def test_freeze_strategies(tiny, strategy, frozen_at_0):
    extra = dict(unfreeze_h_epoch=2, unfreeze_context_epoch=4) if strategy == "progressive" else {}
    manager = LayerLRManager(tiny, LayerLRConfig(freeze_strategy=strategy, **extra))
    manager.apply(0)
    frozen = {g for g in GROUPS if not any(p.requires_grad for _, p in manager.params[g])}
    assert frozen == frozen_at_0
    if strategy == "progressive":
        manager.apply(2)
        assert {g for g in GROUPS if manager.is_frozen(g, 2)} == {"entropy", "context"}
        manager.apply(4)
        assert {g for g in GROUPS if manager.is_frozen(g, 4)} == {"entropy"}


def test_schedule_warms_up_each_group_from_its_start_and_decays(tiny):
    config = LayerLRConfig(freeze_strategy="progressive", unfreeze_h_epoch=3,
                           unfreeze_context_epoch=6, warmup_epochs=1, decay_to=0.1)
    manager = LayerLRManager(tiny, config)
    schedules = dict(zip([g["name"] for g in manager.param_groups()], manager.schedules(10)))
    assert schedules["h_a"](2) == 0.0 and schedules["h_a"](3) > 0.0
    assert schedules["context"](5) == 0.0 and schedules["context"](6) > 0.0
    assert schedules["entropy"](9) == 0.0
    assert schedules["g_a"](0) == pytest.approx(0.5)  # first warm-up epoch
    assert schedules["g_a"](9) == pytest.approx(0.1)  # decayed to decay_to at the end


@pytest.mark.parametrize("kwargs, message", [
    (dict(context_lr_ratio=0.0), "context_lr_ratio"),
    (dict(context_lr_ratio=float("inf")), "context_lr_ratio"),
    (dict(context_lr_ratio=float("nan")), "context_lr_ratio"),
    (dict(h_multiplier=-0.5), "h_multiplier"),
    (dict(freeze_strategy="all"), "unknown freeze strategy"),
    (dict(freeze_strategy="progressive", unfreeze_h_epoch=5, unfreeze_context_epoch=3),
     "unfreeze_h_epoch < unfreeze_context_epoch"),
    (dict(base_lr=-1.0), "base_lr"),
])
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LayerLRConfig(**kwargs)


def test_from_flat_reads_the_layer_lr_keys_of_a_trial_config():
    config = {"context_lr_ratio": 2.0, "freeze_strategy": "none", "seed": 3, "epochs": 12}
    assert LayerLRConfig.from_flat(config) == LayerLRConfig(context_lr_ratio=2.0,
                                                            freeze_strategy="none")


def test_trains_as_fast_as_means_no_group_slower_at_any_epoch(tiny):
    """Leader-gap's short-horizon-bias guard, checked on the optimizer's real schedules."""
    rng = random.Random(0)

    def fast_as(a: dict, b: dict, epochs: int | None = None) -> bool:
        return LayerLRConfig.from_flat(a).trains_as_fast_as(LayerLRConfig.from_flat(b), epochs)

    def lr_by_epoch(config: dict, epochs: int = 8) -> dict[str, list[float]]:
        manager = LayerLRManager(tiny, LayerLRConfig.from_flat(config))
        return {group["name"]: [group["lr"] * schedule(e) for e in range(epochs)]
                for group, schedule in zip(manager.param_groups(), manager.schedules(epochs))}

    def draw() -> dict:
        h = rng.randint(1, 4)
        return {"context_lr_ratio": rng.choice((0.1, 0.5, 1.0, 2.0)),
                "base_lr": rng.choice((1e-4, 2e-4)), "h_multiplier": rng.choice((0.5, 1)),
                "freeze_strategy": rng.choice(("none", "entropy", "progressive")),
                "unfreeze_h_epoch": h, "unfreeze_context_epoch": h + rng.randint(1, 3),
                "warmup_epochs": rng.choice((0, 1)), "decay_to": rng.choice((0.1, 0.5))}

    verdicts = set()
    for _ in range(300):
        a, b, epochs = draw(), draw(), rng.choice((None, 2, 5))
        lr_a, lr_b = lr_by_epoch(a), lr_by_epoch(b)
        verdict = fast_as(a, b, epochs)
        if verdict:
            assert all(x >= y for g in GROUPS for x, y in list(zip(lr_a[g], lr_b[g]))[:epochs])
        verdicts.add((epochs, verdict))
    assert verdicts == {(e, v) for e in (None, 2, 5) for v in (True, False)}
    plain = {"context_lr_ratio": 1.0, "freeze_strategy": "none"}
    assert fast_as(plain, {"context_lr_ratio": 0.1, "freeze_strategy": "entropy"})
    assert not fast_as(plain, {**plain, "context_lr_ratio": 2.0})
    # A context model unfrozen at epoch 4 has trained slower than plain fine-tuning in its
    # first 4 epochs, whatever its ratio; not over its whole schedule.
    late_fast = {"context_lr_ratio": 3.0, "freeze_strategy": "progressive",
                 "unfreeze_h_epoch": 2, "unfreeze_context_epoch": 4}
    assert fast_as(plain, late_fast, 4)
    assert not fast_as(plain, late_fast, 5)
    assert not fast_as(plain, late_fast)
