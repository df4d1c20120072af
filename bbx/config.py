"""``ExplainConfig``: every option of every method, with its default (from :mod:`bbx.defaults`).

One object for all methods (the call shape is one): each method declares in the registry
(:mod:`bbx.methods.registry`) which fields it reads, and :func:`bbx.explain` refuses a field set
away from its default for a method that would not read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import defaults as d
from .errors import OptionError
from .maths.estimate import ESTIMATORS as RANDOM_ESTIMATORS

#: nes and spsa estimate the gradient everywhere (bbx.maths.estimate); active screens, then descends on
#: the few elements that can move, checking every step (bbx.maths.active)
ESTIMATORS = ("active", *RANDOM_ESTIMATORS)

#: upper bounds of the loss weights, the TV exponent and the blur: far above any useful value, low
#: enough that no term overflows float64 (a weight of 1e308 or beta 1e3 would make the loss inf)
MAX_WEIGHT = 1e6
MAX_PAIRS = 100_000  # antithetic pairs per step, given or derived from a budget
MAX_STEP_BYTES = 64 * 2**20  # one step's directions (pairs x mask, float32); a step holds a few such arrays
MAX_BETA = 10.0
MAX_SIGMA = 1000.0
MAX_KERNEL = 1001

QUERY_PATHS = ("auto", "onnx", "device", "fused", "numpy", "reference")


def _opt(default: Any, help: str) -> Any:
    """A field that is also a command-line option of every command that explains (``help``: its
    text there; :func:`bbx.cli.options.method_options` makes the options from these)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ExplainConfig:
    """All settings of one explanation. ``method=None``: the one :func:`bbx.explain` is given, else
    :data:`bbx.defaults.METHOD`."""

    method: str | None = None
    budget: int | None = _opt(None, "at most this many queries: the image, every probe, the final perturbed image "
                              "(default: the method's own; ftc, fntc, plain spend it: pairs per step follow)")
    seed: int = _opt(d.SEED, f"random seed of seeded methods (default {d.SEED}); the same seed gives the same mask")
    sigma: float = _opt(d.SIGMA, f"the blur h's Gaussian sigma, px (paper: {d.SIGMA:g})")
    kernel: int = _opt(d.KERNEL, f"the blur h's kernel side, px (paper: {d.KERNEL})")
    mask_size: int = _opt(d.MASK_SIZE, f"the soft mask M's side (paper: {d.MASK_SIZE})")
    # the paper's optimisation (ftc, fntc, plain)
    iterations: int = _opt(d.ITERATIONS, f"optimizer steps (paper: {d.ITERATIONS})")
    pairs: int | None = _opt(None, f"antithetic pairs per step (default {d.PAIRS}, or what the budget allows)")
    estimator: str = _opt(d.ESTIMATOR, "how ftc, fntc, plain minimise: active (screen, then checked steps on the "
                          "elements that move), nes (Gaussian) or spsa (+-1) directions "
                          f"(default {d.ESTIMATOR})")
    step: float = _opt(d.PROBE_STEP, f"nes/spsa finite-difference step, in mask units (default {d.PROBE_STEP:g})")
    resolution: int | None = _opt(None, "nes/spsa direction grid side (default: the mask's, measured best)")
    lr: float = _opt(d.LR, f"Adam step size (paper: {d.LR})")
    beta1: float = _opt(d.BETA1, f"Adam's momentum (default {d.BETA1})")
    lambda1: float = _opt(d.LAMBDA1, f"weight of the mask's total variation (paper: {d.LAMBDA1})")
    lambda2: float = _opt(d.LAMBDA2, f"weight of the blurred area, ||1-M||_1 averaged (paper: {d.LAMBDA2:g})")
    beta: float = _opt(d.BETA, f"TV exponent (paper: {d.BETA:g})")
    gamma: float = _opt(d.GAMMA, f"weight of the F-TC / F-NTC logit term (paper: {d.GAMMA})")
    query_path: str = _opt(d.QUERY_PATH, "where each batch of perturbed images is built: auto (numpy on cpu, fused on "
                           "cuda), numpy, onnx, device, fused or reference (the same numbers; docs/gpu.md)")
    # window methods (occlusion, greedy)
    patch: int = _opt(d.PATCH, f"occlusion's and greedy's cell, px (default {d.PATCH})")
    area: float = _opt(d.GREEDY_AREA, f"share of the image greedy blurs before it stops (default {d.GREEDY_AREA:g})")
    stride: int = _opt(d.GREEDY_STRIDE, f"greedy's search grid, px (default {d.GREEDY_STRIDE})")
    window: int = _opt(d.GREEDY_WINDOW, f"greedy's window side, px (default {d.GREEDY_WINDOW})")

    def plan(self) -> tuple[int, int]:
        """(iterations, pairs) of the paper's optimisation, so that 2 + 2*pairs*iterations never
        exceeds the budget.

        With a budget and no ``pairs``, the budget is spent: pairs per step follow from the
        iterations, then the iterations from what is left. With both given, it is only a cap.
        """
        iterations, pairs = self.iterations, self.pairs
        if self.budget is None:
            return iterations, pairs or d.PAIRS
        room = self.budget - 2
        if pairs is None:  # never more than pairs' own caps, however large the budget
            pairs = min(self.max_pairs(), max(1, room // (2 * iterations)))
            iterations = room // (2 * pairs)
        else:
            iterations = min(iterations, room // (2 * pairs))
        if iterations < 1:
            raise OptionError(f"budget {self.budget} is too small: one step needs {2 + 2 * (pairs or 1)} queries")
        return iterations, pairs

    def max_pairs(self) -> int:
        """The most pairs one step may draw: :data:`MAX_PAIRS`, and a step's directions within
        :data:`MAX_STEP_BYTES` (float32 masks)."""
        return min(MAX_PAIRS, MAX_STEP_BYTES // (4 * self.mask_size ** 2))

    def given(self) -> dict[str, Any]:
        """The fields set away from their defaults (``method`` aside): what the user asked for."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "method" and getattr(self, f.name) != f.default}

    def validate(self) -> "ExplainConfig":
        """Every field in range, or one :class:`OptionError` naming all that are not."""
        floats = {n: getattr(self, n) for n in ("step", "lr", "beta1", "lambda1", "lambda2", "beta", "gamma",
                                               "sigma", "area")}
        nonfinite = [f"{n} {v}" for n, v in floats.items() if not np.isfinite(v)]  # the ones given, by name
        checks = [
            (not nonfinite, f"{', '.join(nonfinite)}: each option must be a finite number"),
            (self.estimator in ESTIMATORS, f"estimator must be one of {', '.join(ESTIMATORS)}, not {self.estimator!r}"),
            (1 <= self.iterations <= 1_000_000, f"iterations must be in 1..1,000,000, not {self.iterations}"),
            (self.pairs is None or 1 <= self.pairs <= MAX_PAIRS, f"pairs must be in 1..{MAX_PAIRS:,}, not {self.pairs}"),
            (self.pairs is None or not 1 <= self.mask_size <= 512 or self.pairs <= self.max_pairs(),
             f"pairs {self.pairs} of {self.mask_size}x{self.mask_size} directions are "
             f"{(self.pairs or 0) * 4 * self.mask_size ** 2 / 2**20:,.0f} MiB per step, above bbx's limit of "
             f"{MAX_STEP_BYTES / 2**20:g} MiB"),
            (self.budget is None or 4 <= self.budget <= 10**9, f"budget must be in 4..10^9 queries, not {self.budget}"),
            (0 < self.step <= 1, f"step must be in (0, 1], not {self.step}"),
            (2 <= self.mask_size <= 512, f"mask size must be in 2..512, not {self.mask_size}"),
            (self.resolution is None or 1 <= self.resolution <= self.mask_size,
             f"resolution must be in 1..mask size ({self.mask_size}), not {self.resolution}"),
            (0 < self.lr <= 10, f"lr must be in (0, 10], not {self.lr}"),
            (0 <= self.beta1 < 1, f"beta1 must be in [0, 1), not {self.beta1}"),
            (0 <= min(self.lambda1, self.lambda2, self.gamma) and max(self.lambda1, self.lambda2, self.gamma) <= MAX_WEIGHT,
             f"lambda1, lambda2 and gamma must be in [0, {MAX_WEIGHT:g}], not {self.lambda1}, {self.lambda2}, {self.gamma}"),
            (1 <= self.beta <= MAX_BETA, f"beta must be in [1, {MAX_BETA:g}], not {self.beta}"),
            (0 <= self.sigma <= MAX_SIGMA and 1 <= self.kernel <= MAX_KERNEL and self.kernel % 2 == 1,
             f"blur needs sigma in [0, {MAX_SIGMA:g}] and an odd kernel size up to {MAX_KERNEL}"),
            (0 <= self.seed < 2**63, f"seed must be a non-negative integer, not {self.seed}"),
            (self.query_path in QUERY_PATHS, f"query path must be one of {', '.join(QUERY_PATHS)}, not {self.query_path!r}"),
            (min(self.patch, self.stride, self.window) >= 1,
             f"patch, stride and window must be at least 1 pixel, not {self.patch}, {self.stride}, {self.window}"),
            (0 < self.area <= 1, f"area must be a fraction in (0, 1], not {self.area}"),
        ]
        # pairs and resolution with the active estimator are refused where the method is known
        # (bbx.explain.resolve, EvalConfig.validate), naming the method and the estimators that read them
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise OptionError("; ".join(bad))
        return self


FIELDS = tuple(f.name for f in fields(ExplainConfig))
