"""``explain``: one call from a model and a photo to an :class:`Explanation`.

image -> preprocess -> perturb -> query the model -> objective -> gradient estimate -> Adam.
``method="greedy"`` (not in the paper) runs :func:`bbx.greedy.greedy` instead, with the budget.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import OptionError
from .estimate import ESTIMATORS, Estimator, background
from .explanation import Explanation
from .image import load_rgb
from .model import OnnxClassifier
from .objective import METHODS as OBJECTIVES
from .objective import Objective
from .optimize import Adam
from .perturb import BlurSpec, Perturber
from .query import PATHS, MaskQuery
from .remote.reveal import check_method


@dataclass(frozen=True)
class ExplainConfig:
    """All settings of one explanation; defaults follow the paper (Sect. 4.1)."""

    method: str = "ftc"
    iterations: int = 200
    pairs: int | None = None  # antithetic pairs per step; default 8, or what the budget allows
    budget: int | None = None  # total queries, including the two for X and the final Q
    estimator: str = "nes"
    step: float = 0.1
    resolution: int | None = None  # direction grid; None = full mask resolution (measured best)
    lr: float = 0.1
    beta1: float = 0.99  # Adam's momentum as a time prior over noisy estimates (measured: beats 0.9)
    lambda1: float = 1.7
    lambda2: float = 3.0
    beta: float = 2.0
    gamma: float = 0.3
    mask_size: int = 28
    sigma: float = 5.0
    kernel: int = 11
    seed: int = 0
    query_path: str = "auto"  # "fused" on CUDA, "numpy" on CPU; "onnx", "device", "reference" (bbx.query)

    def plan(self) -> tuple[int, int]:
        """(iterations, pairs) so that 2 + 2*pairs*iterations never exceeds the budget.

        With a budget and no ``pairs``, the budget is spent: pairs per step follow from the
        iterations, then the iterations from what is left. With both given, it is only a cap.
        """
        iterations, pairs = self.iterations, self.pairs
        if self.budget is None:
            return iterations, pairs or DEFAULT_PAIRS
        room = self.budget - 2
        if pairs is None:
            pairs = max(1, room // (2 * iterations))
            iterations = room // (2 * pairs)
        else:
            iterations = min(iterations, room // (2 * pairs))
        if iterations < 1:
            raise OptionError(f"budget {self.budget} is too small: one step needs {2 + 2 * (pairs or 1)} queries")
        return iterations, pairs

    def validate(self) -> "ExplainConfig":
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, not {self.method!r}"),
            (self.estimator in ESTIMATORS, f"estimator must be one of {', '.join(ESTIMATORS)}, not {self.estimator!r}"),
            (1 <= self.iterations <= 1_000_000, f"iterations must be in 1..1,000,000, not {self.iterations}"),
            (self.pairs is None or 1 <= self.pairs <= 100_000, f"pairs must be in 1..100,000, not {self.pairs}"),
            (self.budget is None or 4 <= self.budget <= 10**9, f"budget must be in 4..10^9 queries, not {self.budget}"),
            (0 < self.step <= 1, f"step must be in (0, 1], not {self.step}"),
            (2 <= self.mask_size <= 512, f"mask size must be in 2..512, not {self.mask_size}"),
            (self.resolution is None or 1 <= self.resolution <= self.mask_size,
             f"resolution must be in 1..mask size ({self.mask_size}), not {self.resolution}"),
            (0 < self.lr <= 10, f"lr must be in (0, 10], not {self.lr}"),
            (0 <= self.beta1 < 1, f"beta1 must be in [0, 1), not {self.beta1}"),
            (min(self.lambda1, self.lambda2, self.gamma) >= 0, "lambda1, lambda2 and gamma must be non-negative"),
            (self.beta >= 1, f"beta must be at least 1, not {self.beta}"),
            (self.sigma >= 0 and self.kernel >= 1 and self.kernel % 2 == 1, "blur needs sigma >= 0 and an odd kernel size"),
            (0 <= self.seed < 2**63, f"seed must be a non-negative integer, not {self.seed}"),
            (self.query_path in PATHS, f"query path must be one of {', '.join(PATHS)}, not {self.query_path!r}"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise OptionError("; ".join(bad))
        self.plan()
        return self


DEFAULT_PAIRS = 8
#: ftc, fntc and plain optimise the paper's losses; greedy searches hard-blurred windows (bbx.greedy)
METHODS = (*OBJECTIVES, "greedy")

Progress = Callable[[int, int, float], None]  # (step, total steps, loss)


def explain(
    model: OnnxClassifier | str | Path,
    image: str | Path | np.ndarray,
    target: int | str | None = None,
    method: str = "ftc",
    *,
    config: ExplainConfig | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> Explanation:
    """Find the undesirable pixels of ``image`` for ``target`` (default: the top-1 class).

    ``image`` is a path, an ``(h, w, 3)`` uint8 photo (resized and cropped per the model's spec)
    or an ``(H, W, 3)`` float image in 0-1 already at the model's input size. Any field of
    :class:`ExplainConfig` can be given as a keyword (``iterations=50, budget=2000, seed=1``).
    """
    cfg = replace(config or ExplainConfig(), method=method, **settings).validate()
    if not isinstance(model, (str, Path)):
        check_method(model, cfg.method)  # an endpoint may reveal too little for it (bbx.remote.reveal)
    if cfg.method == "greedy":
        from .greedy import greedy  # bbx.greedy builds on bbx.baselines, which imports this module

        return greedy(model, image, target, budget=cfg.budget, sigma=cfg.sigma, kernel=cfg.kernel, progress=progress)
    model, x, source = open_inputs(model, image)
    started, queries_before = time.perf_counter(), model.queries

    iterations, pairs = cfg.plan()
    estimator = Estimator(cfg.estimator, pairs, cfg.step, cfg.resolution, dtype="float32")  # what MaskQuery reads
    shape = (cfg.mask_size, cfg.mask_size)
    directions = estimator.stream(np.random.default_rng(cfg.seed), shape, iterations)  # drawn during the set-up

    pert = Perturber(x, shape, BlurSpec(cfg.sigma, cfg.kernel))
    p0, z0, k = score_image(model, x, target)
    objective = Objective(cfg.method, cfg.lambda1, cfg.lambda2, cfg.beta, cfg.gamma)
    query = MaskQuery(model, pert, cfg.query_path, target=k)

    def model_loss(masks: np.ndarray) -> np.ndarray:
        return objective.model_loss(query(masks), k, z0)

    def pairs_loss(centre: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # probes formed on the device
        return objective.model_loss(query.antithetic(centre, offsets), k, z0)

    mask = np.ones(shape, dtype=np.float64)
    adam = Adam(lr=cfg.lr, beta1=cfg.beta1)
    history: list[float] = []
    on_device = pairs_loss if query.pairs_on_device(pairs) else None
    # R_M is exact and needs M alone: each step's is computed on the worker while the model runs,
    # queued behind no draw but the one that step waits for anyway
    regulariser = background(objective.regularizer, mask)
    for step, drawn in enumerate(directions):
        g_model, loss = estimator.estimate(model_loss, mask, u=drawn, pairs_loss=on_device)
        reg, g_reg = regulariser.result()
        mask = adam.step(mask, g_model + g_reg)
        if step + 1 < iterations:
            regulariser = background(objective.regularizer, mask)
        history.append(loss + reg)
        if progress is not None:
            progress(step + 1, iterations, history[-1])

    perturbed = pert(mask.astype(np.float32))
    p1 = model.scores(perturbed[None]).probs[0]
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    return Explanation.build(
        model, image=x, source=source, mask=mask, heatmap=heatmap, perturbed=perturbed, target=k,
        probs_before=p0, probs_after=p1, queries=model.queries - queries_before,
        seconds=time.perf_counter() - started, loss_history=history,
        config={**asdict(cfg), "iterations": iterations, "pairs": pairs, "query_path": query.path,
                "probes": "host" if on_device is None else "graph"},  # who formed the antithetic probes
    )


def open_inputs(model: OnnxClassifier | str | Path,
                image: str | Path | np.ndarray) -> tuple[OnnxClassifier, np.ndarray, str]:
    """What every method starts from: the model (opened from a path if need be), the image as the
    model sees it (:func:`model_view`) and the image's name for the report."""
    model = OnnxClassifier(model) if isinstance(model, (str, Path)) else model  # or any other black box
    source = str(image) if isinstance(image, (str, Path)) else "<array>"
    return model, model_view(model, image), source


def score_image(model: OnnxClassifier, x: np.ndarray, target: int | str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """The image's own probabilities and logits (one counted query) and the class every method
    explains: ``target`` (an index or a name), else the image's top-1."""
    s0 = model.scores(x[None])
    p0 = s0.probs[0]
    return p0, s0.logits[0], int(np.argmax(p0)) if target is None else model.class_index(target)


def model_view(model: OnnxClassifier, image: str | Path | np.ndarray) -> np.ndarray:
    """The image as the model sees it: (H, W, 3) float32 in 0-1 at the model's input size."""
    if isinstance(image, (str, Path)):
        return model.prepare(load_rgb(image))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise OptionError(f"an image array must be (H, W, 3), not {arr.shape}")
    if arr.dtype == np.uint8:
        return model.prepare(arr)
    if arr.shape[:2] != model.input_size:
        raise OptionError(f"a float image must already be at the model's input size {model.input_size}")
    return np.clip(arr.astype(np.float32), 0.0, 1.0)
