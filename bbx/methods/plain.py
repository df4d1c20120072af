"""The paper's plain loss (Eq. 3): raise the target's probability, -f_k(Q) + R_M.

Optimised by :mod:`.soft_mask`; ``gamma`` has no term here, so it is not among its options.
"""

from __future__ import annotations

from functools import partial

from . import soft_mask
from .registry import Method, register

register(Method(
    name="plain", run=partial(soft_mask.optimise, loss="plain"),
    options=partial(soft_mask.options, loss="plain"), seeded=soft_mask.seeded,
    summary="the paper's plain soft mask (Eq. 3)", default_budget=soft_mask.DEFAULT_BUDGET,
    stepper=soft_mask.Stepper("plain"),
))
