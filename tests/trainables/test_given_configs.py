"""The searcher of a confirmation (and of tests that need known trials): the given configs,
in order, once each, also across a driver restart."""

from __future__ import annotations

from ray.tune.search import Searcher

from trainables.given_configs import GivenConfigs


def test_each_config_is_suggested_once_in_order_and_a_restored_searcher_goes_on(tmp_path):
    configs = [{"context_lr_ratio": 0.9, "seed": 1}, {"context_lr_ratio": 0.9, "seed": 2},
               {"context_lr_ratio": 0.5, "freeze_strategy": "progressive", "seed": 1}]
    searcher = GivenConfigs(configs)
    assert searcher.suggest("t1") == configs[0]
    searcher.save(str(tmp_path / "state.json"))
    restored = GivenConfigs([])
    restored.restore(str(tmp_path / "state.json"))
    assert [restored.suggest(t) for t in ("t2", "t3")] == configs[1:]
    assert restored.suggest("t4") == Searcher.FINISHED
    assert configs[0] == {"context_lr_ratio": 0.9, "seed": 1}  # the caller's list is untouched
