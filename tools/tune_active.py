"""Tuning loop for ``bbx.maths.active``: the optimiser with given :class:`~bbx.maths.active.ActiveSet` settings on
photos with a cached exact-gradient reference, scored as ``tools/bench_queries.py`` scores them.

The optimiser is called directly (not through ``bbx.explain``) so that settings can be varied
without changing bbx's defaults; its budget is the one ``bbx.explain`` would hand it (the budget
less the image, M = 1 and the final image). The model is deterministic, so each photo's queries
are memoised across the settings compared in one run (the first screen is common to all): the
query counts reported are the optimiser's own, not the memo's.

    python tools/tune_active.py models/samples/chelsea.png --budget 3202 --set max_active=96 --set recheck=4
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_queries import ROOT, ExactObjective, references  # noqa: E402

import bbx  # noqa: E402
from bbx.maths.active import ActiveSet, optimise  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.result.metrics import mask_correlation, top_iou  # noqa: E402

RESERVED = 3  # the queries bbx.explain spends outside the optimiser: the image, M = 1, the final image


class Memo:
    """The model part of J for a batch of masks, each distinct mask queried once."""

    def __init__(self, exact: ExactObjective):
        self.exact, self.seen = exact, {}

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=np.float64)
        keys = [m.tobytes() for m in masks]
        todo = [i for i, k in enumerate(keys) if k not in self.seen]
        if todo:
            e = self.exact
            values = e.obj.model_loss(e.query(masks[todo].astype(np.float32)), e.k, e.z0)
            for i, v in zip(todo, values):
                self.seen[keys[i]] = float(v)
        return np.array([self.seen[k] for k in keys])


def parse(assignments: list[str]) -> ActiveSet:
    types = {f.name: f.type for f in fields(ActiveSet)}
    out = {}
    for a in assignments:
        name, _, value = a.partition("=")
        if name not in types:
            raise SystemExit(f"tune_active.py: no ActiveSet field {name!r}")
        kind = {"float": float, "int": int, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(str(types[name]), str)
        out[name] = kind(value)
    return replace(ActiveSet(), **out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--budget", type=int, nargs="+", default=[3202])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="an ActiveSet field")
    ap.add_argument("--variant", action="append", default=[], metavar="F=V,F=V",
                    help="another settings variant to compare (comma-separated fields); the --set one runs first")
    ap.add_argument("--cache", type=Path, default=ROOT / "tools" / "results" / "query_efficiency_reference.jsonl")
    args = ap.parse_args()
    variants = [parse(args.set)] + [parse(args.set + v.split(",")) for v in args.variant]
    config = ExplainConfig(method="ftc").validate()
    model = bbx.OnnxClassifier(ROOT / "models" / "efficientnet_lite0.onnx")
    refs = references([p.resolve() for p in args.images], config, model, args.cache, "lite0")
    table: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    for img in args.images:
        exact = ExactObjective(model, img.resolve(), config)
        ref_mask = np.asarray(refs[img.resolve()]["mask"])
        j_ref = exact(ref_mask)
        memo = Memo(exact)
        at_ones = exact.at_ones - exact.obj.regularizer(np.ones_like(ref_mask, dtype=np.float64))[0]
        for v, settings in enumerate(variants):
            for budget in args.budget:
                started = time.perf_counter()
                res = optimise(memo, exact.obj.regularizer, ref_mask.shape, budget - RESERVED, at_ones,
                               config.lambda2, settings)
                j = exact(res.mask)
                gain = (exact.at_ones - j) / (exact.at_ones - j_ref) if exact.at_ones > j_ref else float("nan")
                r = mask_correlation([res.mask, ref_mask])
                iou = top_iou([exact.heatmap(res.mask), exact.heatmap(ref_mask)], 0.05)
                moved = int((res.mask < 0.99).sum())
                table.setdefault((v, budget), []).append((exact.at_ones - j, exact.at_ones - j_ref, r))
                print(f"{img.name:<20} v{v} {budget:>6} q {res.queries:>6} used  gain {gain:5.2f}  r {r:5.2f}  "
                      f"IoU {iou:.2f}  moved {moved:>3} (ref {int((ref_mask < 0.99).sum())})  steps "
                      f"{len(res.history) - 1:>3}  screens {res.screens}  active {len(res.active)}  "
                      f"converged {res.converged}  {time.perf_counter() - started:.0f} s", flush=True)
    print()
    for v, settings in enumerate(variants):
        changed = {f.name: getattr(settings, f.name) for f in fields(ActiveSet)
                   if getattr(settings, f.name) != getattr(ActiveSet(), f.name)}
        for budget in args.budget:
            rows = table[(v, budget)]
            gain = sum(g for g, _, _ in rows) / sum(g for _, g, _ in rows)
            print(f"v{v} {budget:>6}: gain ratio of means {gain:.3f}, mean r {np.mean([r for *_, r in rows]):.3f}  "
                  f"{changed or 'defaults'}")


if __name__ == "__main__":
    main()
