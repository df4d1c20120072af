"""``audit``: ``bbx evaluate`` over a folder of photos, then the report a person opens in a browser.

An audit is an evaluation (same engine, same ``results.jsonl``, resumable the same way) plus the
pictures and the page drawn from its lines: ``index.html`` beside ``img/`` and ``plots/``. A rerun
runs only the missing jobs, draws only the missing pictures and rewrites the page.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import defaults as d
from .._io import ensure_dir
from ..errors import ImageError, OptionError, OutputError
from ..evaluation.runner import EvalConfig, Outcome, Progress, evaluate
from ..maths.perturb import BlurSpec
from ..evaluation import compare, recurring
from . import compare_view, data, images, plots, recurring_view
from .card import model_card
from .page import Report, write_page


@dataclass
class Audit:
    """What one ``audit`` call wrote and found."""

    path: Path  # index.html
    outcome: Outcome
    report: Report

    def line(self) -> str:
        """The one-line summary for the terminal."""
        g = self.report.gallery
        phis = [r.phi for r in g if math.isfinite(r.phi)]
        fragile = sum(r.fragile is not None for r in g)
        med = f"median φ {np.median(phis):.1f}" if phis else "no φ"
        return (f"audit: {len(g)} photos, {len(self.report.class_counts)} classes, {med} ({g[0].method if g else '-'}), "
                f"{fragile} fragile; {self.outcome.ran} runs now ({self.outcome.done_before} before), "
                f"{self.outcome.queries} queries")


def audit(model: Any, photos: Sequence[str | Path], config: EvalConfig, out: str | Path,
          progress: Progress | None = None, command: str = "", compare_with: Any = None) -> Audit:
    """Evaluate ``config`` on ``photos`` into ``out`` (resuming), then draw the report there; with
    ``compare_with`` (a second model), evaluate it too (into ``out/compare``) and add the comparison.

    The report's own pictures (photos inside ``out``) are never audited; ``img/`` and ``plots/``
    must be folders, never links (the pictures would land where the link points). A photo that
    cannot be read is named in a warning; with none readable, nothing is drawn."""
    photos = outside_of(photos, out)
    for sub in ("img", "plots"):
        if (Path(out) / sub).is_symlink():
            raise OutputError(f"refusing {Path(out) / sub}: it is a symbolic link (bbx audit writes its pictures "
                              f"there); remove it or use another --out")
    outcome = evaluate(model, photos, config, out, progress)
    unreadable = list(dict.fromkeys(rec["error"] for rec in outcome.errors))
    if unreadable and not outcome.records:
        raise ImageError(f"none of the {len(photos)} photos could be read: {unreadable[0]}"
                         + (f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""))
    if unreadable:
        warnings.warn(f"{len(unreadable)} photo{'s' * (len(unreadable) > 1)} skipped (not in the report): "
                      + "; ".join(unreadable[:3]) + (" ..." if len(unreadable) > 3 else ""), RuntimeWarning,
                      stacklevel=2)
    report = build_report(model, outcome.records, config, ensure_dir(out), command)
    if compare_with is not None:
        report.compare = compare_section(model, compare_with, outcome.records, photos, config, Path(out))
    return Audit(path=write_page(Path(out), report), outcome=outcome, report=report)


def compare_section(model: Any, other: Any, records: Sequence[dict[str, Any]], photos: Sequence[str | Path],
                    config: EvalConfig, out: Path) -> compare_view.Section:
    """The second model's evaluation of the same photos, its recurring regions, the comparison
    (``compare.json``) and its pictures."""
    method, tested = config.methods[0], recurring_method(config.methods)
    blur = BlurSpec(config.explain.sigma, config.explain.kernel)
    other_records = evaluate(other, photos, config, out / compare_view.FOLDER).records
    mine = recurring.blur_effects(recurring.find(records, tested), records, model, blur)
    theirs = recurring.blur_effects(recurring.find(other_records, tested), other_records, other, blur)
    names = compare_view.names(model, other)
    result = compare.compare(records, other_records, method, mine, theirs, names)
    path = result.write(out)
    return compare_view.draw(result, out, other_records, other.prepare, path.name)


def outside_of(photos: Sequence[str | Path], out: str | Path) -> list[str | Path]:
    """``photos`` less those inside ``out`` (an audit's own pictures, when --out lies in the photo folder)."""
    inside = Path(out).resolve()
    kept = [p for p in photos if inside not in Path(p).resolve().parents]
    if photos and not kept:
        raise OptionError(f"every photo given lies inside --out {out}, the report's own folder")
    return kept


def build_report(model: Any, records: Sequence[dict[str, Any]], config: EvalConfig, out: Path,
                 command: str) -> Report:
    method = config.methods[0]
    gallery = data.rows(records, method, model.labels)
    for row in gallery:
        row.files = images.file_names(row.key)
    blur = BlurSpec(config.explain.sigma, config.explain.kernel)
    images.draw_rows(out, [(r.key, r.record) for r in gallery], model.prepare, blur)
    groups = data.classes(gallery)
    class_images = {}
    for g in groups:
        class_images[g.name] = images.save(out / f"img/class-{data.photo_key(g.name)}.jpg",
                                           images.class_heatmap([r.record for r in g.rows])).relative_to(out).as_posix()
    counts = Counter(r.top1_name for r in gallery)
    return Report(
        recurring=recurring_section(model, records, recurring_method(config.methods), blur, out),
        title=f"bbx audit: {Path(model.name).name}",
        summary=_summary(gallery, records, config),
        card=model_card(model, command),
        gallery=gallery,
        settings=config.settings(model) | {"methods": list(config.methods), "seeds": config.seeds},
        classes=groups,
        class_images=class_images,
        plots=draw_plots(records, gallery, config, ensure_dir(out / "plots"), out),
        class_counts=sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])),
        localisation=localisation(records),
    )


def recurring_method(methods: Sequence[str]) -> str:
    """The method whose heatmaps the recurring-regions test reads: :data:`bbx.defaults.RECURRING_METHOD`
    where the audit ran it, else the gallery's (the first)."""
    return d.RECURRING_METHOD if d.RECURRING_METHOD in methods else methods[0]


def recurring_section(model: Any, records: Sequence[dict[str, Any]], method: str, blur: BlurSpec,
                      out: Path) -> recurring_view.Section:
    """Recurring regions of ``method``'s heatmaps: tested, blurred (counted queries), written to
    ``recurring.json`` and drawn."""
    found = recurring.blur_effects(recurring.find(records, method), records, model, blur)
    path = recurring.write([found], out)
    return recurring_view.draw(found, out, {r["image"]: r for r in recurring.primary(records, method)},
                               model.prepare, path.name)


def localisation(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]], str] | None:
    """The localisation table of the page (the summary's), None when no record has a truth."""
    from ..evaluation import truth_table
    from ..evaluation.summary import summarise

    if not any("truth" in r for r in records):
        return None
    s = summarise(records)
    head, body = truth_table.cells(s.overall)
    return head, body, truth_table.legend(s.tolerance)


def draw_plots(records: Sequence[dict[str, Any]], gallery: Sequence[data.Row], config: EvalConfig, folder: Path,
               out: Path) -> dict[str, str]:
    """caption -> plot file (relative to ``out``)."""
    by_method: dict[str, list[dict[str, Any]]] = {m: [] for m in config.methods}
    for rec in records:
        by_method.setdefault(rec["method"], []).append(rec)
    by_method = {m: recs for m, recs in by_method.items() if recs}
    curves = {m: (list(config.areas), np.array([r["phi_at_area"] for r in recs], dtype=np.float64))
              for m, recs in by_method.items()}
    drawn = {
        "confidence histogram": plots.confidence_histogram([r.prob_before for r in gallery], folder / "confidence.svg"),
        "φ per method (every explanation)": plots.phi_by_method(
            {m: [r["phi"] for r in recs] for m, recs in by_method.items()}, folder / "phi.svg"),
        "blur-insertion curve: mean φ after blurring the top a% of each heatmap": plots.insertion_curves(
            curves, folder / "insertion.svg"),
        "φ against the top-1 probability": plots.confidence_vs_phi(
            {m: ([r["top1_prob_before"] for r in recs], [r["phi"] for r in recs]) for m, recs in by_method.items()},
            folder / "confidence_phi.svg"),
    }
    return {caption: path.relative_to(out).as_posix() for caption, path in drawn.items()}


def _summary(gallery: Sequence[data.Row], records: Sequence[dict[str, Any]], config: EvalConfig) -> str:
    queries = sum(int(r["queries"]) + int(r.get("insertion_queries", 0)) + int(r.get("truth", {}).get("queries", 0))
                  for r in records)
    fragile = sum(r.fragile is not None for r in gallery)
    return (f"{len(gallery)} photos × {', '.join(config.methods)} ({config.seeds} seed{'s' * (config.seeds > 1)} "
            f"where seeded); {len(records)} explanations, {queries:,} model queries; {fragile} fragile decisions.")
