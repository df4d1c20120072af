"""The JSON line of an explanation, written and read in one place.

``bbx evaluate`` appends one line per (photo, method, seed) to ``results.jsonl``; the tables, the
audit page and Ray's driver read them back. :func:`record` writes a line from an
:class:`~bbx.result.explanation.Explanation`, :func:`parse_record` reads and validates one, and
:func:`explanation_fields` are the keys an explanation's JSON report (``report.json``) shares with
it, so both say the same thing the same way (the mask rounded to :data:`MASK_DIGITS` once, here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .._io import load_json
from .metrics import phi

if TYPE_CHECKING:
    from .explanation import Explanation

#: 2: records keyed by the photo's sha256, external data pinned, errors recorded
RECORD_FORMAT = 2
#: decimals a mask keeps in a record and a report (mask.npy keeps every bit)
MASK_DIGITS = 4

LOSS_POINTS = 21  # the loss history a record keeps, evenly thinned: enough to see its trend
#: what every result record holds (the tables read these); an error record holds ERROR_FIELDS
RESULT_FIELDS = {"image": str, "image_sha256": str, "method": str, "seed": int, "phi": float,
                 "undesirable_ratio": float, "queries": int, "seconds": float, "top1_prob_before": float,
                 "areas": list, "phi_at_area": list, "input_size": list, "mask": list}
ERROR_FIELDS = {"image": str, "image_sha256": str, "method": str, "seed": int, "error": str}


def mask_list(mask: np.ndarray) -> list:
    """The mask as JSON holds it: nested lists rounded to :data:`MASK_DIGITS`."""
    return np.round(np.asarray(mask, dtype=np.float64), MASK_DIGITS).tolist()


def explanation_fields(e: Explanation) -> dict[str, Any]:
    """What an explanation's record and its report share: the target and top-1 class with their
    probabilities before and after, φ, the undesirable ratio, the cost, the device, the mask and the
    method's config (its settings and levers, what its search did: a table can read them per line)."""
    return {
        "target": e.target, "target_name": e.target_name, "top1": e.top1, "top1_name": e.top1_name,
        "prob_before": e.prob_before, "prob_after": e.prob_after,
        "top1_prob_before": e.top1_prob_before, "top1_prob_after": e.top1_prob_after,
        "phi": e.phi, "undesirable_ratio": e.undesirable_ratio, "queries": e.queries,
        "seconds": round(e.seconds, 4),
        "device": e.device,  # a resumed evaluation may have run elsewhere: seconds compare only on one device
        "input_size": list(np.shape(e.heatmap)[:2]), "mask": mask_list(e.mask), "config": dict(e.config),
    }


def record(job: dict[str, Any], e: Explanation, probs_at_area: dict[float, float],
           top1_at_area: Sequence[int] | None = None) -> dict[str, Any]:
    """The JSON line of ``e`` for ``job`` (image, image_sha256, method, seed) with its
    blur-insertion curve: enough to recompute every table."""
    shared = explanation_fields(e)
    ordered = ("target", "target_name", "top1", "top1_name", "prob_before", "prob_after", "top1_prob_before",
               "top1_prob_after", "phi", "undesirable_ratio")
    return {
        **{k: job[k] for k in ("image", "image_sha256", "method", "seed")},
        **{k: shared[k] for k in ordered},
        "marked_ratio": float((np.asarray(e.heatmap) > 0).mean()),
        "queries": shared["queries"], "seconds": shared["seconds"], "device": shared["device"],
        "areas": list(probs_at_area),
        "prob_at_area": list(probs_at_area.values()),
        "phi_at_area": [phi(e.top1_prob_before, p) for p in probs_at_area.values()],
        "insertion_queries": len(probs_at_area),
        **({} if top1_at_area is None else {"top1_at_area": list(top1_at_area)}),  # which class wins after the blur
        "loss_trend": thin(e.loss_history, LOSS_POINTS),
        "input_size": shared["input_size"],
        "mask": shared["mask"],
        "config": shared["config"],
        **convergence_fields(e.convergence),
    }


def convergence_fields(c: dict[str, Any]) -> dict[str, Any]:
    """The record's convergence columns (None for methods that optimise no objective)."""
    keys = ("objective_at_ones", "objective_final", "converged", "noise")
    return {k: c.get(k) for k in keys}


def thin(values: Sequence[float], points: int) -> list[float]:
    """At most ``points`` evenly spaced values, the first and the last included (rounded to 6 digits)."""
    if len(values) <= points:
        picked = list(values)
    else:
        picked = [values[i] for i in np.linspace(0, len(values) - 1, points).round().astype(int)]
    return [round(float(v), 6) for v in picked]


def parse_record(line: bytes | str) -> dict[str, Any]:
    """One JSON line as a record, or ValueError saying what is wrong with it."""
    try:
        rec = load_json(line)  # bounded: depth, number length
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    fields_ = ERROR_FIELDS if "error" in rec else RESULT_FIELDS
    for name, kind in fields_.items():
        if name not in rec:
            raise ValueError(f"no field {name!r}")
        value = rec[name]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
              else isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, kind))
        if not ok:
            raise ValueError(f"field {name!r} is not {kind.__name__}")
    if "error" not in rec:
        _check_lists(rec)
    return rec


def _check_lists(rec: dict[str, Any]) -> None:
    """The list fields the tables turn into arrays: numbers, of matching lengths (a damaged line
    would otherwise stop every summary with NumPy's error, naming no line)."""
    def numbers(values: Any) -> bool:
        return isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in values)

    for name in ("areas", "phi_at_area"):
        if not numbers(rec[name]):
            raise ValueError(f"field {name!r} is not a list of numbers")
    if len(rec["phi_at_area"]) != len(rec["areas"]):
        raise ValueError(f"field 'phi_at_area' has {len(rec['phi_at_area'])} values for {len(rec['areas'])} areas")
    size = rec["input_size"]
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError("field 'input_size' is not two positive integers")
    mask = rec["mask"]
    if not mask or not mask[0] or not all(numbers(row) and len(row) == len(mask[0]) for row in mask):
        raise ValueError("field 'mask' is not a rectangle of numbers")


def record_key(rec: dict[str, Any]) -> tuple[str, str, int]:
    """What a record answers: (the photo's content, the method, the seed)."""
    return rec.get("image_sha256") or rec["image"], rec["method"], int(rec["seed"])
