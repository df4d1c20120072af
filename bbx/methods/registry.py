"""The method registry: every explanation method, registered once, with one call shape.

A :class:`Method` is a function ``run(context, config) -> Explanation`` (:mod:`.context` opens the
inputs, scores the image, counts queries and builds the result) and what it declares about
itself: the :class:`~bbx.config.ExplainConfig` fields it reads, whether seeds change its answer,
what it spends without a budget, a line for ``--help``. :func:`bbx.explain`, ``bbx explain
--method``, ``bbx evaluate --methods`` and the evaluation's tables all read this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..config import ExplainConfig
from ..errors import OptionError

if TYPE_CHECKING:  # types only: the registry imports no method
    from ..model import BlackBox
    from ..result.explanation import Explanation
    from .context import Context

#: fields every method reads: which method, its query cap, and the blur of Q(X; M)
COMMON = ("method", "budget", "sigma", "kernel")
#: what a model's answer reveals, most to least: every class's score, the top k classes with their
#: probabilities, the top-1 label (a local file reveals every score; an endpoint may not: bbx.remote)
REVEALS = ("scores", "topk", "label")
_REVEAL_WORDS = {"scores": "every class's score", "topk": "only the top-k classes", "label": "only the top-1 label"}


@dataclass(frozen=True)
class Method:
    name: str
    run: "Callable[[Context, ExplainConfig], Explanation]"
    #: the ExplainConfig fields it reads besides :data:`COMMON` (and ``seed`` when ``seeded``), or a
    #: function of the config for a method whose options depend on another (an estimator's)
    options: "tuple[str, ...] | Callable[[ExplainConfig], tuple[str, ...]]"
    #: whether the seed changes its answer (``bbx evaluate`` runs ``--seeds`` of it, else one), or a
    #: function of the config
    seeded: "bool | Callable[[ExplainConfig], bool]"
    #: one line for ``--help``
    summary: str
    #: what it spends when no budget is given, in words
    default_budget: str
    #: how its ``mask`` becomes the picture: "soft", Q(X; M') with M' the bilinear upsampling of the
    #: mask; "cells", the heatmap constant per grid cell of the mask, blurred hard above the threshold
    mask: str = "soft"
    #: the least a model must reveal for it to run (:data:`REVEALS`): "topk" for a method that
    #: reads only the target's probability, "scores" for one that reads every class
    needs: str = "scores"
    #: for a method whose explanations can run in lockstep (:mod:`bbx.evaluation.lockstep`): ``stepper(context,
    #: config)`` makes one in progress with ``probes()``, ``feed(scores)``, ``done`` and ``finish()``
    #: for a config where ``stepper.accepts(config)`` (:class:`~bbx.methods.soft_mask.Stepper`);
    #: None: it runs one explanation at a time
    stepper: "Any | None" = None
    #: what the value it reports with each step is (``progress(step, total, value)``), for the bar
    reports: str = "J"

    def is_seeded(self, cfg: ExplainConfig | None = None) -> bool:
        """Whether seeds change its answer under ``cfg`` (default: the defaults)."""
        return self.seeded(cfg or ExplainConfig()) if callable(self.seeded) else self.seeded

    def reads(self, cfg: ExplainConfig | None = None) -> frozenset[str]:
        """The fields it reads under ``cfg`` (default: the defaults)."""
        cfg = cfg or ExplainConfig()
        options = self.options(cfg) if callable(self.options) else self.options
        return frozenset((*COMMON, *options, *(("seed",) if self.is_seeded(cfg) else ())))

    def unused(self, given: dict[str, object], cfg: ExplainConfig | None = None) -> list[str]:
        """The given options this method would not read under ``cfg``."""
        return sorted(set(given) - self.reads(cfg))


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method``; a name is registered once."""
    if method.needs not in REVEALS:
        raise OptionError(f"method {method.name!r} needs {method.needs!r}: one of {', '.join(REVEALS)}")
    if method.name in _METHODS:
        raise OptionError(f"a method named {method.name!r} is registered already")
    if not method.name or not method.name.replace("_", "").isalnum() or method.name != method.name.lower():
        raise OptionError(f"a method name is lower-case letters, digits and _, not {method.name!r}")
    _METHODS[method.name] = method
    return method


def runs_on(model: BlackBox, names: Sequence[str]) -> list[str]:
    """Those of ``names`` whose needs ``model`` reveals (:func:`check_reveals` passes), in order."""
    return [n for n in names if REVEALS.index(model.reveals) <= REVEALS.index(get(n).needs)]


def check_reveals(model: BlackBox, name: str) -> None:
    """Refuse, in one line, method ``name`` on a model that reveals less than it needs."""
    if runs_on(model, [name]):
        return
    can = runs_on(model, names())
    runs = f"methods that run on it: {', '.join(can)}" if can else "no method of bbx runs on it (bbx predict does)"
    raise OptionError(f"{get(name).name} needs {_REVEAL_WORDS[get(name).needs]}, but the endpoint reveals "
                      f"{_REVEAL_WORDS[model.reveals]}; {runs}")


def mask_kind(name: str) -> str:
    """How a method's stored mask is drawn (``Method.mask``); "soft" for a method not registered here."""
    return _METHODS[name].mask if name in _METHODS else "soft"


def unregister(name: str) -> None:
    """Remove a method (a plug-in's, or a test's)."""
    _METHODS.pop(name, None)


def get(name: str) -> Method:
    key = str(name).strip().lower()
    if key not in _METHODS:
        raise OptionError(f"unknown method {name!r}: methods are {', '.join(_METHODS)}")
    return _METHODS[key]


def names() -> tuple[str, ...]:
    """Registered methods, in the order they were registered (the tables' order)."""
    return tuple(_METHODS)


def describe() -> str:
    """One line per method, for ``--help``."""
    return "; ".join(f"{m.name}: {m.summary}" for m in _METHODS.values())
