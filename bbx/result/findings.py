"""What an explanation did not find, in one line each: bbx says so rather than print a result.

Pure checks over an explanation's numbers (no query): a mask that never left 1, a target that
went down, a model whose scores do not depend on the image; and a φ whose denominator is too
small to read shown with its raw probabilities.
"""

from __future__ import annotations

import numpy as np

from ..defaults import EMPTY_MASK, PHI_MIN_RESIDUAL
from .metrics import phi


def notes(mask: np.ndarray, prob_before: float, prob_after: float, constant: bool | None) -> list[str]:
    """One line for each way the explanation found nothing (empty list: none)."""
    if constant:  # the one thing to say: whatever the mask did, it cannot mean anything
        return ["constant model: it gave the same scores to every image bbx tried (a grey one and random "
                "ones), so no pixel can change its answer and this explanation means nothing"]
    out = []
    if float(np.min(mask)) >= 1.0 - EMPTY_MASK:
        out.append("found nothing: the mask never left 1, no pixel is blurred (the heatmap is empty)")
    elif prob_after < prob_before:
        out.append(f"made the target worse: its probability went down, {prob_before:.4g} -> {prob_after:.4g}; "
                   "these pixels are not undesirable for it")
    return out


def phi_text(prob_before: float, prob_after: float) -> str:
    """φ (Eq. 8) as a person reads it: one decimal where its denominator 1 - p is not tiny, else
    the raw top-1 probabilities, which are what changed."""
    value = phi(prob_before, prob_after)
    if phi_readable(prob_before):
        return f"{value:.1f}"
    return (f"not meaningful (top-1 p {prob_before:.7g} -> {prob_after:.7g}; 1 - p was {1.0 - prob_before:.1e}, "
            f"below {PHI_MIN_RESIDUAL:g}, so φ = {value:.3g} measures noise)")


def phi_readable(prob_before: float) -> bool:
    """Whether φ's denominator 1 - p (p: the top-1 probability before) is large enough to read φ."""
    return 1.0 - prob_before >= PHI_MIN_RESIDUAL
