"""Trace-driven tests of AdaptivePatience; expected epochs are derived by hand in comments."""

from __future__ import annotations

import json
import logging
import math

import pytest

from hpcm_tune.errors import InputError

from stoppers import (
    ALL_STOPPED_KEY,
    IMPROVED,
    NO_IMPROVEMENT,
    STOPPED,
    WARMUP,
    AdaptivePatience,
    budget_settings,
    report_fields,
)

SCALES = ("s1", "s2", "s3")


def same(value: float) -> dict[str, float]:
    return {s: value for s in SCALES}


def run_until_stop(ap: AdaptivePatience, trace, first_epoch: int = 1, scale: str = "s1") -> int:
    """Step ``trace`` (epoch -> value for every scale) until ``scale`` stops; return that epoch."""
    for epoch in range(first_epoch, first_epoch + 1000):
        if ap.step(epoch, same(trace(epoch)))[scale] == STOPPED:
            return epoch
    raise AssertionError("scale never stopped")


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"patience": 5}, "min_patience <= patience"),
        ({"patience": 250}, "min_patience <= patience"),
        ({"min_patience": 0}, "min_patience"),
        ({"max_patience": 1.5}, "max_patience"),
        ({"patience": True}, "patience"),
        ({"window": 1}, "window"),
        ({"rate_window": 0}, "rate_window"),
        ({"mode": "minimum"}, "mode"),
        ({"min_delta": -1e-4}, "min_delta"),
        ({"min_delta": math.nan}, "min_delta"),
        ({"fast_rate": 0.0001}, "slow_rate"),
        ({"patience_up": -1}, "patience_up"),
        ({"patience_down": 2.0}, "patience_down"),
        ({"scales": ()}, "scales"),
        ({"scales": ("s1", "s1")}, "unique"),
        ({"scales": "s1"}, "scales"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_invalid_arguments_name_the_culprit(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AdaptivePatience(**kwargs)


def test_defaults_match_the_report():
    ap = AdaptivePatience()
    assert ap.config() == {
        "scales": ["s1", "s2", "s3"], "patience": 50, "min_patience": 10, "max_patience": 200,
        "min_delta": 1e-4, "mode": "min", "window": 10, "rate_window": 5, "fast_rate": 0.01,
        "slow_rate": 0.001, "patience_up": 10, "patience_down": 5, "warmup_epochs": 0,
        "relative": False,
    }
    assert ap.patience == same(50)


def test_warmup_epochs_are_recorded_but_not_judged():
    # A fine-tune that gets worse while its learning rates warm up, then recovers.
    trace = [1.0, 1.5, 1.2, 1.1, 1.1, 1.1]
    plain = AdaptivePatience(patience=2, min_patience=2, max_patience=2)
    assert [plain.step(e, same(v))["s1"] for e, v in enumerate(trace[:3])] == [
        IMPROVED, NO_IMPROVEMENT, STOPPED]  # ended before it recovered

    warm = AdaptivePatience(patience=2, min_patience=2, max_patience=2, warmup_epochs=2)
    decisions = [warm.step(e, same(v))["s1"] for e, v in enumerate(trace)]
    assert decisions == [WARMUP, WARMUP, IMPROVED, IMPROVED, NO_IMPROVEMENT, STOPPED]
    # 1.2 is worse than epoch 0's 1.0, yet the first judged epoch sets the best.
    assert warm.best_epoch["s1"] == 3 and warm.best["s1"] == 1.1
    assert [e for e, _ in warm.history["s1"]] == [0, 1, 2, 3, 4, 5]
    assert report_fields(AdaptivePatience(warmup_epochs=3))["patience/s1/counter"] == 0


def test_warmup_state_round_trip_and_states_saved_before_warmup_existed():
    trace = [1.0, 1.5, 1.2, 1.1, 1.1, 1.1, 1.1]
    reference = AdaptivePatience(patience=2, min_patience=2, max_patience=2, warmup_epochs=2)
    full = [reference.step(e, same(v)) for e, v in enumerate(trace)]
    first = AdaptivePatience(**reference.config())
    part = [first.step(e, same(v)) for e, v in enumerate(trace[:1])]  # cut inside the warm-up
    resumed = AdaptivePatience(**reference.config())
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    part += [resumed.step(e, same(v)) for e, v in enumerate(trace) if e >= 1]
    assert part == full and resumed.state_dict() == reference.state_dict()

    old = AdaptivePatience().state_dict()
    del old["config"]["warmup_epochs"]  # as checkpoints written before the option
    AdaptivePatience().load_state_dict(old)
    with pytest.raises(ValueError, match="config"):
        AdaptivePatience(warmup_epochs=1).load_state_dict(old)


def test_missing_scale_and_divergence_are_errors_and_leave_state_untouched():
    ap = AdaptivePatience()
    ap.step(1, same(1.0))
    before = ap.state_dict()
    with pytest.raises(ValueError, match="lack scale 's2'"):
        ap.step(2, {"s1": 0.5, "s3": 0.5})
    with pytest.raises(ValueError, match="diverged"):
        ap.step(2, {"s1": 0.5, "s2": math.nan, "s3": 0.5})
    with pytest.raises(ValueError, match="diverged"):
        ap.step(2, {"s1": 0.5, "s2": 0.5, "s3": math.inf})
    with pytest.raises(ValueError, match="not a real number"):
        ap.step(2, {"s1": "0.5", "s2": 0.5, "s3": 0.5})
    assert ap.state_dict() == before
    # Extra keys (the full metrics dict of a trainable) are fine.
    assert ap.step(2, {**same(0.5), "loss": 1.5}) == same(IMPROVED)


def test_same_or_earlier_epoch_is_refused_not_double_counted():
    ap = AdaptivePatience()
    ap.step(1, same(1.0))
    ap.step(2, same(1.0))
    before = ap.state_dict()
    for epoch in (2, 1):
        with pytest.raises(ValueError, match="not after the last stepped epoch 2"):
            ap.step(epoch, same(1.0))
    assert ap.state_dict() == before
    assert ap.counter == same(1)


# ---------------------------------------------------------------- basic traces
def test_steadily_improving_trace_never_stops():
    ap = AdaptivePatience()
    for epoch in range(1, 501):
        # Linear drop of 0.01 per epoch: every step beats best by > min_delta.
        assert ap.step(epoch, same(10.0 - 0.01 * epoch)) == same(IMPROVED)
    assert not ap.should_stop()
    assert ap.stopped == same(False)
    assert ap.best_epoch == same(500)


def test_flat_trace_stops_when_counter_meets_shrinking_patience():
    # Epoch 1 sets best; from epoch 2 on, the counter is epoch - 1. The rate of a
    # flat window is 0 < slow_rate, so after each step patience drops by 5:
    # after epoch e (e >= 2) patience = max(10, 50 - 5 * (e - 1)). The stop check
    # at epoch e compares the counter e - 1 with the patience left by epoch e - 1:
    #   e = 10: counter 9 < max(10, 50 - 40) = 10 -> continue
    #   e = 11: counter 10 >= max(10, 50 - 45) = 10 -> stop.
    ap = AdaptivePatience()
    decisions = [ap.step(e, same(0.5))["s1"] for e in range(1, 12)]
    assert decisions == [IMPROVED] + [NO_IMPROVEMENT] * 9 + [STOPPED]
    assert ap.stop_epoch == same(11)
    assert [p for _, p in ap.patience_history["s1"]] == [50, 45, 40, 35, 30, 25, 20, 15, 10, 10, 10]
    assert ap.should_stop()
    # A stopped scale takes no more values.
    assert ap.step(12, same(0.1)) == same(STOPPED)
    assert len(ap.history["s1"]) == 11
    assert ap.best == same(0.5)


def test_worsening_trend_is_not_fast_improvement():
    # Loss rises 0.05 per epoch. The report's abs() rate would be 0.05 * 9 / 10 =
    # 0.045 > fast_rate and grow patience to 200 (stop only at epoch 201). The
    # fixed rate is 0, so this behaves exactly like the flat trace: stop at 11.
    ap = AdaptivePatience()
    assert run_until_stop(ap, lambda e: 1.0 + 0.05 * e) == 11
    assert all(r == 0.0 for _, r in ap.rates["s1"])
    assert max(p for _, p in ap.patience_history["s1"]) == 50
    assert ap.best_epoch == same(1)


def test_fast_improvement_raises_patience_up_to_max():
    # Loss drops by 1 per epoch: a window of n values gains n - 1, rate (n-1)/n >= 0.5,
    # so from the 2nd value on patience grows by 10: 50 + 10 * (e - 1) until it
    # caps at 200 at e = 16.
    ap = AdaptivePatience()
    for e in range(1, 31):
        ap.step(e, same(100.0 - e))
    expected = [min(50 + 10 * (e - 1), 200) for e in range(1, 31)]
    assert [p for _, p in ap.patience_history["s2"]] == expected
    assert expected[15] == 200 and expected[14] == 190


def test_scales_are_independent_and_trial_stops_only_when_all_have():
    ap = AdaptivePatience()
    for e in range(1, 11):
        # s1 flat, s2 improving, s3 flat until 10 then improving.
        d = ap.step(e, {"s1": 1.0, "s2": 1.0 - 0.01 * e, "s3": 1.0})
        assert d["s2"] == IMPROVED
    d = ap.step(11, {"s1": 1.0, "s2": 0.89, "s3": 0.5})
    assert d == {"s1": STOPPED, "s2": IMPROVED, "s3": IMPROVED}
    assert ap.stopped == {"s1": True, "s2": False, "s3": False}
    assert not ap.should_stop()
    # s1 keeps reporting "stopped" while the others carry on.
    epoch = 12
    while not ap.should_stop():
        d = ap.step(epoch, {"s1": 0.0, "s2": 0.89, "s3": 0.5})
        assert d["s1"] == STOPPED
        epoch += 1
    # s2 and s3 were last improved at 11; s3 took a big step at 11, so its window
    # rate stays > fast_rate for a while and it outlasts s2.
    assert ap.stop_epoch["s1"] == 11
    assert ap.stop_epoch["s3"] > ap.stop_epoch["s2"] > 11
    assert ap.best["s1"] == 1.0  # the 0.0 after s1 stopped was never taken


def test_min_delta_boundary_is_exclusive():
    # Powers of two so the differences are exact in floating point.
    delta = 2.0**-10
    ap = AdaptivePatience(min_delta=delta)
    ap.step(1, same(1.0))
    assert ap.step(2, same(1.0 - delta)) == same(NO_IMPROVEMENT)
    assert ap.best == same(1.0)
    assert ap.step(3, same(1.0 - delta - 2.0**-20)) == same(IMPROVED)
    assert ap.best_epoch == same(3)
    assert ap.counter == same(0)


def test_default_min_delta_ignores_tiny_improvements():
    ap = AdaptivePatience()
    ap.step(1, same(1.0))
    assert ap.step(2, same(1.0 - 5e-5)) == same(NO_IMPROVEMENT)
    assert ap.step(3, same(1.0 - 2e-4)) == same(IMPROVED)


def test_mode_max_flips_the_signs():
    ap = AdaptivePatience(mode="max")
    # Rising metric (e.g. PSNR) improves and raises patience like a falling loss.
    for e in range(1, 31):
        assert ap.step(e, same(float(e))) == same(IMPROVED)
    assert ap.patience == same(200)
    assert ap.best == same(30.0)
    # A falling metric in max mode is a worsening trend: rate 0, same stop as
    # the flat trace in min mode (epoch 11 counting from its first value).
    ap = AdaptivePatience(mode="max")
    assert run_until_stop(ap, lambda e: 10.0 - 0.5 * e) == 11
    assert ap.best_epoch == same(1)


# ------------------------------------------------------- the report's examples
def test_report_example_linear_drop_then_plateau():
    # Values 100, 99, ..., 81 at epochs 1..20, then 81 forever; default settings.
    # Patience: +10 per epoch from epoch 2, capped at 200 at epoch 16.
    # Window at epoch k > 20 starts at k - 9: rate = (29 - k) / 10 for k <= 29, else 0.
    # Mean of the last 5 rates: k = 32 -> (0.1 + 0 * 4) / 5 = 0.02 > 0.01 (stays 200);
    # k = 33 -> 0 < 0.001, so patience after k >= 33 is 200 - 5 * (k - 32).
    # Counter at k is k - 20; stop once k - 20 >= patience after k - 1 = 360 - 5 * (k - 1)
    # -> 6k >= 385 -> k = 65 (counter 45 >= 40), while k = 64 has 44 < 45.
    ap = AdaptivePatience()
    stop = run_until_stop(ap, lambda k: 101.0 - min(k, 20))
    assert stop == 65
    trajectory = dict(ap.patience_history["s1"])
    assert [trajectory[k] for k in (1, 2, 15, 16, 32)] == [50, 60, 190, 200, 200]
    assert [trajectory[k] for k in (33, 34, 63, 64, 65)] == [195, 190, 45, 40, 40]
    assert ap.best_epoch == same(20)
    assert ap.stop_epoch == same(65)


def test_report_example_geometric_drop_then_plateau():
    # loss(e) = 0.9 ** min(e, 30), epochs from 0. Every drop until 30 is
    # >= 0.1 * 0.9**29 = 0.0047 > min_delta, so best_epoch = 30.
    # Patience +10 per epoch from e = 1 (rate (1 - 0.9) / 2 = 0.05 > 0.01); at
    # e = 15 the window rate is (0.9**6 - 0.9**15) / 10 = 0.0325, so it reaches 200.
    def loss(e: int) -> float:
        return 0.9 ** min(e, 30)

    def rate(e: int) -> float:  # closed form of the window rate once e >= 9
        return (loss(e - 9) - loss(e)) / 10

    # Plateau: the mean of the last 5 rates at e = 39 is ~0.00105 (in the band:
    # patience stays 200) and at e = 40 it is ~0.00061 < slow_rate.
    assert 0.001 < sum(rate(e) for e in range(35, 40)) / 5 < 0.01
    assert sum(rate(e) for e in range(36, 41)) / 5 < 0.001
    # So patience after e >= 40 is 200 - 5 * (e - 39); the counter at e is e - 30:
    # stop once e - 30 >= 200 - 5 * (e - 40) -> 6e >= 430 -> e = 72.
    ap = AdaptivePatience()
    assert run_until_stop(ap, loss, first_epoch=0) == 72
    trajectory = dict(ap.patience_history["s3"])
    assert [trajectory[e] for e in (0, 1, 14, 15, 39, 40, 41, 71)] == [50, 60, 190, 200, 200, 195, 190, 40]
    assert ap.best_epoch == same(30)
    assert ap.counter == same(42)


# ----------------------------------------------------------------- persistence
def mixed_trace(e: int) -> dict[str, float]:
    """Per-scale trace with different dynamics, stopping at different epochs."""
    return {
        "s1": 1.0 + 0.01 * e,                      # worsening
        "s2": 0.9 ** min(e, 25),                   # geometric drop then plateau
        "s3": 2.0 - 0.02 * min(e, 40) + 0.001 * (e % 3),  # linear drop with jitter
    }


@pytest.mark.parametrize("cut", [1, 7, 30, 60])
def test_state_dict_round_trip_replays_identically(cut):
    reference = AdaptivePatience()
    full = [reference.step(e, mixed_trace(e)) for e in range(200)]
    assert reference.should_stop()

    first = AdaptivePatience()
    part = [first.step(e, mixed_trace(e)) for e in range(cut)]
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = AdaptivePatience()
    resumed.load_state_dict(state)
    # A retried trial re-runs the epochs after its checkpoint; replaying them is allowed.
    part += [resumed.step(e, mixed_trace(e)) for e in range(cut, 200)]

    assert part == full
    assert resumed.state_dict() == reference.state_dict()
    assert resumed.history == reference.history
    assert resumed.stop_epoch == reference.stop_epoch


def test_load_state_dict_refuses_another_configuration():
    state = AdaptivePatience().state_dict()
    with pytest.raises(ValueError, match="config"):
        AdaptivePatience(patience=60).load_state_dict(state)
    with pytest.raises(ValueError, match="config"):
        AdaptivePatience(scales=("s1", "s2")).load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        AdaptivePatience().load_state_dict({**state, "version": 99})


def test_report_fields_keys_and_values():
    ap = AdaptivePatience(scales=("s1", "s2"))
    fields = report_fields(ap)
    assert fields[ALL_STOPPED_KEY] is False
    assert math.isnan(fields["patience/s1/best"])
    assert fields["patience/s1/best_epoch"] == -1 and fields["patience/s1/stop_epoch"] == -1
    for e in range(1, 12):
        ap.step(e, {"s1": 1.0, "s2": 1.0 - 0.1 * e})
    fields = report_fields(ap)
    per_scale = {"stopped", "patience", "counter", "best", "best_epoch", "stop_epoch", "rate"}
    assert set(fields) == {ALL_STOPPED_KEY, "patience/num_stopped"} | {
        f"patience/{s}/{k}" for s in ("s1", "s2") for k in per_scale
    }
    assert fields[ALL_STOPPED_KEY] is False
    assert fields["patience/num_stopped"] == 1
    assert fields["patience/s1/stopped"] is True and fields["patience/s1/stop_epoch"] == 11
    assert fields["patience/s1/best_epoch"] == 1 and fields["patience/s1/patience"] == 10
    assert fields["patience/s2/best"] == pytest.approx(-0.1) and fields["patience/s2/counter"] == 0
    # Window of n values gains 0.1 * (n - 1): rates at epochs 7..11 use n = 7, 8, 9, 10, 10.
    expected_rate = (0.6 / 7 + 0.7 / 8 + 0.8 / 9 + 0.09 + 0.09) / 5
    assert fields["patience/s2/rate"] == pytest.approx(expected_rate)
    # Plain JSON values (Tune writes them to result.json): they come back unchanged.
    assert json.loads(json.dumps(fields)) == fields


@pytest.mark.parametrize("scale", [0.01, 1.0, 300.0])
def test_relative_rule_takes_the_same_decisions_at_every_loss_scale(scale):
    # One relative setting, three loss magnitudes: the decisions depend on the shape only.
    trace = [1.0, 0.9, 0.85, 0.8497, 0.8496, 0.8495, 0.8494, 0.8493]
    ap = AdaptivePatience(**budget_settings(12))
    decisions = [ap.step(e, same(v * scale)) for e, v in enumerate(trace)]
    # Below 0.85 every gain is under the 0.1 % min_delta; the slow rate shrinks the patience
    # (grown to 4 by the fast start) back to 2.
    assert [d["s1"] for d in decisions] == [WARMUP, IMPROVED, IMPROVED, NO_IMPROVEMENT,
                                            NO_IMPROVEMENT, STOPPED, STOPPED, STOPPED]
    assert ap.best_epoch["s1"] == 2 and ap.stop_epoch["s1"] == 5


def test_absolute_rule_depends_on_the_loss_scale():
    # The report's absolute min_delta sees the same relative curve differently by scale.
    trace = [1.0, 0.9, 0.85, 0.8495, 0.849]
    settings = dict(patience=2, min_patience=2, max_patience=2, min_delta=2e-3)
    small, large = AdaptivePatience(**settings), AdaptivePatience(**settings)
    for e, v in enumerate(trace):
        small.step(e, same(v * 0.01))
        large.step(e, same(v * 300))
    assert small.best_epoch["s1"] == 0 and small.should_stop()  # 2e-3 is 20 % of 0.01
    assert large.best_epoch["s1"] == 4 and not large.should_stop()


@pytest.mark.parametrize("epochs", [3, 12, 30, 100, 300, 1000])
def test_budget_settings_scale_with_the_budget(epochs):
    settings = budget_settings(epochs)
    ap = AdaptivePatience(**settings)  # always a valid configuration
    assert ap.relative
    assert 1 <= settings["warmup_epochs"] < max(epochs, 2)
    assert settings["min_patience"] <= settings["patience"] <= settings["max_patience"]
    # A trial that never improves after its warm-up stops within the budget (or at its end).
    flat = [same(1.0) for _ in range(epochs)]
    for e, values in enumerate(flat):
        ap.step(e, values)
    assert ap.should_stop() or epochs <= settings["warmup_epochs"] + settings["patience"]
    if epochs >= 300:  # the report's 300-epoch scale: patience 50
        assert settings["patience"] == math.ceil(epochs / 6)


def test_relative_state_round_trips_and_old_states_load_as_absolute():
    ap = AdaptivePatience(**budget_settings(12))
    for e in range(4):
        ap.step(e, same(1.0 - 0.1 * e))
    again = AdaptivePatience(**budget_settings(12))
    again.load_state_dict(json.loads(json.dumps(ap.state_dict())))
    assert again.state_dict() == ap.state_dict()
    old = AdaptivePatience().state_dict()
    del old["config"]["relative"]
    AdaptivePatience().load_state_dict(old)  # saved before `relative` existed
    with pytest.raises(ValueError, match="config"):
        AdaptivePatience(**budget_settings(12)).load_state_dict(old)


def test_stopper_modes_give_the_budget_the_report_or_no_settings(caplog):
    from stoppers import stopper_settings

    assert stopper_settings("off", 12) is None
    assert stopper_settings("budget", 12) == budget_settings(12)
    assert stopper_settings("report", 12, {"patience": 30}) == {"patience": 30}
    assert stopper_settings("budget", 12, {"patience": 3})["patience"] == 3
    with pytest.raises(InputError, match="stopping is off"):
        stopper_settings("off", 12, {"patience": 3})
    with pytest.raises(InputError, match="unknown stopper mode 'fast'"):
        stopper_settings("fast", 12)
    with pytest.raises(InputError):  # AdaptivePatience refuses it
        stopper_settings("budget", 12, {"patience": 0})
    with caplog.at_level(logging.WARNING, logger="stoppers.adaptive_patience"):
        stopper_settings("budget", 4, {"warmup_epochs": 4})
    assert any("judges no epoch" in r.getMessage() for r in caplog.records)
