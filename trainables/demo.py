"""The embedded demo task: derive a lower-rate model from a pre-trained one.

Released learned codecs come as one model per rate point, and the usual way to get another
rate is to fine-tune an existing model at the new lambda rather than train from scratch.
The demo does exactly that with the ``tiny`` preset: it starts from the model pre-trained
once on the bundled photos at lambda 0.0483 (``trainables.pretrain``) and fine-tunes it at
0.0003, a sixth of HPCM's lowest official lambda: a rate below the released models. The rate
falls to about a third (0.32 to 0.12 bpp on the validation photos), so the context model
(most of the parameters) has to re-learn its predictions for the new latents: how fast it
may move (the context-LR ratio) and when it is unfrozen decide the result. At 0.0009 the
report's six configs were 1.55 % apart, about one seed's noise; at 0.0003 4.6 %, five times
it (``benchmarks/sweep_efficiency.py``).

Enough data per epoch that the curve is the knobs, not over-fitting: 6 random crops of each
training photo per epoch (new crops every epoch), validated on the bundled validation photos
downsized to 256 px on the long side so that validation stays cheap on a CPU.
"""

from __future__ import annotations

from typing import Any

from trainables.spec import TrialSpec

# The settings of the demo task; every one can be overridden on the command line.
DEMO_TASK: dict[str, Any] = {
    "lmbda": 0.0003,
    "base_lr": 5e-4,
    "crops_per_image": 6,
    "max_side": 256,
}


def demo_spec(checkpoint: str, **changes: Any) -> TrialSpec:
    """A demo trial (as ``tune_main.py run`` builds it without arguments) starting from
    ``checkpoint``; ``changes`` are fields by their flat names (None: keep the demo's)."""
    spec = TrialSpec(model="tiny", checkpoint=checkpoint).replace(**DEMO_TASK)
    return spec.replace(**{k: v for k, v in changes.items() if v is not None})
