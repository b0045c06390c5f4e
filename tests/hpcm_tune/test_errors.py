"""Every error a user can cause is an HpcmTuneError (the CLI prints it as one line) and
keeps the built-in base its callers caught before."""

from __future__ import annotations

import pytest

from hpcm import CheckpointError
from hpcm_tune.errors import HpcmTuneError, InputError, UsageError, WriteError
from hpcm_tune.tune_files import TornStateError
from trainables.data import DataError
from trainables.finetune import NonFiniteLossError
from trainables.sweep import SweepError
from trainables.trial import ResumeMismatchError


@pytest.mark.parametrize("error, builtin", [
    (UsageError, Exception), (InputError, ValueError), (WriteError, OSError),
    (CheckpointError, ValueError), (DataError, ValueError), (ResumeMismatchError, ValueError),
    (SweepError, RuntimeError), (NonFiniteLossError, RuntimeError),
    (TornStateError, RuntimeError),
])
def test_user_errors_are_project_errors_with_their_builtin_base(error, builtin):
    assert issubclass(error, HpcmTuneError) and issubclass(error, builtin)


def test_library_checks_of_user_settings_raise_input_errors():
    from search_spaces import FineTuneSpace, make_sampler, preset_points
    from stoppers import AdaptivePatience
    from trainables.spec import FineTuneConfig
    from trainables.layer_lr import LayerLRConfig

    for make in (lambda: LayerLRConfig(context_lr_ratio=0.0),
                 lambda: FineTuneConfig(lmbda=0.0),
                 lambda: FineTuneSpace(max_epochs=2),
                 lambda: FineTuneSpace(max_epochs=12, max_context_lr_ratio=0.5),
                 lambda: preset_points("grid", 12),
                 lambda: make_sampler("cmaes", 8, 0),
                 lambda: AdaptivePatience(patience=0)):
        with pytest.raises(InputError):
            make()


def test_a_plain_value_error_is_no_project_error():
    """A bug's ValueError must keep its traceback in the CLI: it is not caught as input."""
    from stoppers import AdaptivePatience

    with pytest.raises(ValueError) as err:
        AdaptivePatience().step(0, {"s1": 1.0})  # a caller's bug: scales missing
    assert not isinstance(err.value, HpcmTuneError)
