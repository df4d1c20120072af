"""What each method needs to read of a model's answer, and the one-line refusal when it gets less.

A local ONNX model reveals every class's score; an endpoint may reveal only the top-k classes with
their probabilities, or only the top-1 label (:mod:`bbx.remote.endpoint`).
"""

from __future__ import annotations

from typing import Any

from ..errors import OptionError

REVEALS = ("scores", "topk", "label")  # most to least
#: F-TC, F-NTC and plain read every class (the F-TC/F-NTC terms sum over the others); greedy,
#: occlusion and random read the target's probability only
METHOD_NEEDS = {"ftc": "scores", "fntc": "scores", "plain": "scores",
                "greedy": "topk", "occlusion": "topk", "random": "topk"}
WORDS = {"scores": "every class's score", "topk": "only the top-k classes", "label": "only the top-1 label"}


def check_method(model: Any, method: str) -> None:
    """Refuse, in one line, a method that needs more than ``model`` reveals."""
    reveals = getattr(model, "reveals", "scores")
    needs = METHOD_NEEDS.get(method, "scores")
    if REVEALS.index(reveals) <= REVEALS.index(needs):
        return
    can = [m for m, n in METHOD_NEEDS.items() if REVEALS.index(reveals) <= REVEALS.index(n)]
    runs = f"methods that run on it: {', '.join(can)}" if can else "no method of bbx runs on it (bbx predict does)"
    raise OptionError(f"{method} needs {WORDS[needs]}, but the endpoint reveals {WORDS[reveals]}; {runs}")
