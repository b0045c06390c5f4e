"""``run --overwrite``: the old experiment folder goes only once the new sweep has started.

The old folder is first renamed to a hidden name in the same parent (a rename: instant, and
nothing is copied or lost). A Tune callback deletes it when the new sweep's Tuner starts; if
the start fails (a check that runs once Ray is up, an interrupted start), the old folder is
put back where it was. A driver killed in between leaves it under its hidden name, intact.

Import this module only after ``trainables.cluster.prepare``: it imports Ray.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from ray.tune import Callback

from hpcm_tune.tune_files import experiment_state_files

log = logging.getLogger(__name__)


class DiscardWhenStarted(Callback):
    """Deletes the moved-aside old experiment when the new sweep starts (``setup``).

    Tune pickles its callbacks with the Tuner, so this one holds only a path and lives in an
    importable module; on a later ``resume`` its folder is long gone and it does nothing.
    """

    def __init__(self, aside: str) -> None:
        self.aside = aside
        self.started = False

    def setup(self, **info) -> None:
        self.started = True
        if os.path.isdir(self.aside):
            shutil.rmtree(self.aside)
            log.info("the new sweep has started: removed the previous experiment (%s)",
                     self.aside)


class PreviousExperiment:
    """The experiment folder ``target`` that a new sweep of the same name replaces."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        self.holder: Path | None = None  # hidden folder that holds the old experiment
        self.callback: DiscardWhenStarted | None = None

    @property
    def aside(self) -> Path:
        assert self.holder is not None
        return self.holder / self.target.name

    def move_aside(self) -> DiscardWhenStarted:
        """Rename the old folder out of the way; returns the Tune callback that deletes it."""
        self.holder = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.replaced-",
                                            dir=self.target.parent))
        os.replace(self.target, self.aside)
        log.warning("--overwrite: moved %s aside to %s; it is deleted once the new sweep "
                    "has started, and put back if it does not start", self.target, self.aside)
        self.callback = DiscardWhenStarted(str(self.holder))
        return self.callback

    def settle(self) -> None:
        """After ``Tuner.fit`` returned or raised: delete the old experiment if the new sweep
        started, else put it back (removing what the failed start wrote)."""
        if self.holder is None or not self.holder.exists():
            return
        started = (self.callback is not None and self.callback.started) or bool(
            experiment_state_files(self.target))
        if started:
            shutil.rmtree(self.holder)
            log.info("removed the previous experiment (%s)", self.aside)
            return
        if self.target.exists():  # only what the failed start wrote: the old one is aside
            shutil.rmtree(self.target)
        os.replace(self.aside, self.target)
        self.holder.rmdir()
        log.warning("the new sweep did not start: %s is back as it was", self.target)
