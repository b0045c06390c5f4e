"""A Tune searcher that suggests given trial configs, in order, and nothing else.

Tune's ``BasicVariantGenerator(points_to_evaluate=...)`` accepts only keys that
``param_space`` already has, but the searched knobs are not in it (a knob a config leaves
out, such as the unfreeze epochs of a non-progressive trial, must stay out of the trial);
a searcher's suggestion is merged into ``param_space`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher


class GivenConfigs(Searcher):
    """Suggests each of ``configs`` once, then reports the search finished. Its state (the
    configs not yet suggested) is saved with the experiment, so ``resume`` goes on with
    the rest."""

    def __init__(self, configs: list[dict[str, Any]], metric: str | None = None,
                 mode: str | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configs = [dict(c) for c in configs]

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        return self.configs.pop(0) if self.configs else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass  # nothing to learn: the configs are given

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.configs))

    def restore(self, checkpoint_path: str) -> None:
        self.configs = json.loads(Path(checkpoint_path).read_text())
