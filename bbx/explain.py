"""``explain``: one call from a model and a photo to an :class:`Explanation`, for every method.

The method comes from the registry (:mod:`bbx.methods`); its options are checked against what it
declares it reads, so an option it would not use is refused instead of silently dropped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import defaults, methods
from .config import ESTIMATORS, FIELDS, ExplainConfig
from .errors import OptionError
from .result.explanation import Explanation
from .methods import Context, Progress
from .model import BlackBox, open_model


def explain(
    model: BlackBox | str | Path,
    image: str | Path | np.ndarray,
    target: int | str | None = None,
    method: str | None = None,
    *,
    config: ExplainConfig | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> Explanation:
    """Find the undesirable pixels of ``image`` for ``target`` (default: the top-1 class).

    ``model``: a black box, an ``.onnx`` path or an endpoint's address (:func:`bbx.model.open_model`).
    ``image``: a path, an ``(h, w, 3)`` uint8 photo (resized and cropped per the model's spec) or
    an ``(H, W, 3)`` float image in 0-1 already at the model's input size. ``method``: a registered
    name (``bbx.methods.names()``); default ``config.method``, else :data:`bbx.defaults.METHOD`. Any
    field of :class:`ExplainConfig` can be given in ``config`` or as a keyword (``budget=2000, area=0.05``);
    one the method does not read is refused, in a line that names the methods that read it.
    ``progress(step, total, value)`` is called as it goes (the value: the method's ``reports``).
    """
    cfg = resolve(method, config, overrides)
    spec = methods.get(cfg.method)
    box = open_model(model)
    methods.check_reveals(box, spec.name)  # an endpoint may reveal too little for it (bbx.remote)
    ctx = Context(box, image, target, spec.name, cfg.budget, progress)
    return spec.run(ctx, cfg)


def resolve(method: str | None, config: ExplainConfig | None, overrides: dict[str, Any]) -> ExplainConfig:
    """The one configuration that runs: ``config`` with ``overrides`` and the method settled,
    validated, and checked against what the method reads."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)}; options are the fields of ExplainConfig")
    cfg = config or ExplainConfig()
    if method is not None and cfg.method is not None and methods.get(method).name != methods.get(cfg.method).name:
        raise OptionError(f"method {method!r} contradicts the config's method {cfg.method!r}: give one")
    named = method or overrides.get("method") or cfg.method
    name = methods.get(named or defaults.METHOD).name
    cfg = replace(cfg, **{**overrides, "method": name}).validate()
    # a keyword counts as given even at its default: seed=0 to ftc with the active estimator is
    # refused as on the command line
    given = {**cfg.given(), **{k: v for k, v in overrides.items() if k != "method"}}
    unused = methods.get(name).unused(given, cfg)
    if unused:
        reads = ", ".join(sorted(methods.get(name).reads(cfg) - {"method"}))
        # where a refused option belongs: this method under another estimator (ftc takes a seed
        # with nes or spsa, not with active), else the methods that read it
        estimators = [e for e in ESTIMATORS if e != cfg.estimator
                      and set(unused) <= methods.get(name).reads(replace(cfg, estimator=e))]
        others = [m for m in methods.names()
                  if m != name and set(unused) <= methods.get(m).reads(replace(cfg, method=m))]
        if not others:
            others = [m for m in methods.names() if m != name and any(
                set(unused) <= methods.get(m).reads(replace(cfg, method=m, estimator=e)) for e in ESTIMATORS)]
        hint = (f"; with --estimator {' or '.join(estimators)} it does" if estimators else
                f"; {others[0]} does: name it as the method" if len(others) == 1 else
                f"; {', '.join(others)} do: name one as the method" if others else "")
        raise OptionError(f"method {name}{'' if named else ' (the default)'} does not use {', '.join(unused)} "
                          f"(it reads {reads}){hint}")
    return cfg
