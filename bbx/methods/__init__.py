"""Explanation methods, one module each, registered once (:mod:`.registry`).

Importing this package registers the built-in methods, in the order the evaluation's tables show
them: the paper's three soft masks, then bbx's window search, RISE, the window search led by RISE
(the default) and the two baselines. A method of
your own is one module that calls :func:`register` (see docs/architecture.md).
"""

from . import ftc, fntc, plain  # noqa: F401  the paper's methods
from . import greedy, rise, rise_lead, occlusion, random_mask  # noqa: F401  window searches, RISE and baselines
from .context import Context, Progress
from .registry import (COMMON, REVEALS, Method, check_reveals, describe, get, mask_kind, names, register, runs_on,
                       unregister)

__all__ = ["COMMON", "REVEALS", "Context", "Method", "Progress", "check_reveals", "describe", "get", "mask_kind", "runs_on",
           "names", "register", "unregister"]
