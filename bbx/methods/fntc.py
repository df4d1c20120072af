"""F-NTC (paper Eq. 7): lower every other class, keep the target's logit where it was.

Loss of the model's part: sum_{i != k} f_i(Q) + gamma * |z_k(Q) - z_k(X)|, plus R_M; optimised
by :mod:`.soft_mask`.
"""

from __future__ import annotations

from functools import partial

from . import soft_mask
from .registry import Method, register

register(Method(
    name="fntc", run=partial(soft_mask.optimise, loss="fntc"),
    options=partial(soft_mask.options, loss="fntc"), seeded=soft_mask.seeded,
    summary="the paper's F-NTC soft mask (Eq. 7)", default_budget=soft_mask.DEFAULT_BUDGET,
    stepper=soft_mask.Stepper("fntc"),
))
