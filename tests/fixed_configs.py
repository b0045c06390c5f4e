"""A Tune searcher that suggests given trial configs in order, for sweeps whose trials a
test must know in advance (``trainables.sweep.run_sweep(..., searcher=...)``)."""

from __future__ import annotations

import json
from pathlib import Path


class FixedConfigs:
    """Built lazily (``create``) so that importing this module does not import Ray."""

    @staticmethod
    def create(configs: list[dict]):
        from ray.tune.search import Searcher

        from trainables.sweep import METRIC, MODE

        class _Fixed(Searcher):
            def __init__(self):
                super().__init__(metric=METRIC, mode=MODE)
                self.configs = [dict(c) for c in configs]

            def suggest(self, trial_id):
                return self.configs.pop(0) if self.configs else Searcher.FINISHED

            def on_trial_complete(self, trial_id, result=None, error=False):
                pass

            # Tune restores a sweep only with its searcher's state (else it restarts it).
            def save(self, checkpoint_path):
                Path(checkpoint_path).write_text(json.dumps(self.configs))

            def restore(self, checkpoint_path):
                self.configs = json.loads(Path(checkpoint_path).read_text())

        return _Fixed()
