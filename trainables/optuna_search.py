"""Ray Tune's OptunaSearch, made safe to resume after the driver was killed.

OptunaSearch writes each ``ask`` to the Optuna storage at once, but Tune records the trial
(and the searcher's trial map) only at its next experiment checkpoint. A driver killed
in between leaves that Optuna trial RUNNING for ever: no Tune trial will ever report to
it, and tools that read the study (optuna-dashboard, importance) count it as live.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose restore closes the trials the killed driver asked for but lost,
    and which can be told earlier results with a define-by-run space.

    The study belongs to one sweep (it is named after it), so a RUNNING Optuna trial that
    the restored searcher does not map to a Tune trial can only be such an orphan. It is
    told FAIL and its parameters are enqueued again, so the configuration the driver chose
    (a warm-start point, say) is still evaluated, by the next Tune trial.
    """

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        tracked = {trial.number for trial in self._ot_trials.values()}
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in tracked:
                continue
            self._ot_study.tell(trial.number, state=TrialState.FAIL)
            if trial.params:
                self._ot_study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            log.warning("Optuna trial %d was asked for by the interrupted driver but never "
                        "recorded by Tune: marked FAIL, its parameters queued again",
                        trial.number)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # A trial restored from its checkpoint reports the epochs after it once more. Optuna
        # keeps a step's first value, as it should, and warns about the repeat: expected here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning,
                                    message="The reported value is ignored because this `step=")
            super().on_trial_result(trial_id, result)

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list[float] | None = None,
                            user_attrs: dict[str, Any] | None = None) -> None:
        """Tell the study a finished trial it did not ask for (OptunaSearch's, which also
        takes a define-by-run space: the space runs on ``parameters`` to give Optuna their
        distributions). ``user_attrs`` are stored with the trial.

        Raises:
            ValueError: ``parameters`` lack a knob the space asks for, or hold a value
                outside its range.
        """
        if not callable(self._space):
            super().add_evaluated_point(parameters, value, error, pruned, intermediate_values)
            return
        fixed = optuna.trial.FixedTrial(parameters)
        self._space(fixed)
        state = TrialState.FAIL if error else TrialState.PRUNED if pruned else TrialState.COMPLETE
        self._ot_study.add_trial(optuna.trial.create_trial(
            state=state, value=None if error else value, params=fixed.params,
            distributions=fixed.distributions, user_attrs=user_attrs,
            intermediate_values=dict(enumerate(intermediate_values or []))))
