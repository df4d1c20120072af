"""F-TC (paper Eq. 5): raise the target, keep the other classes' logits where they were.

Loss of the model's part: -f_k(Q) + gamma * |mean_{i != k}(z_i(Q) - z_i(X))|, plus R_M;
optimised by :mod:`.soft_mask`; the paper's method (bbx's default is in :mod:`bbx.defaults`).
"""

from __future__ import annotations

from functools import partial

from . import soft_mask
from .registry import Method, register

register(Method(
    name="ftc", run=partial(soft_mask.optimise, loss="ftc"),
    options=partial(soft_mask.options, loss="ftc"), seeded=soft_mask.seeded,
    summary="the paper's F-TC soft mask (Eq. 5)", default_budget=soft_mask.DEFAULT_BUDGET,
    stepper=soft_mask.Stepper("ftc"),
))
