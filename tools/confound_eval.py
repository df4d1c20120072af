"""Localisation and φ of every method on a confound benchmark (tools/confounds.py), from the JSON lines.

Reads ``bbx evaluate``'s ``results.jsonl``; a record with a ``truth`` entry (``--truth``) is read as
it is, one without is scored here the same way: the heatmap redrawn from its stored mask
(:func:`bbx.evaluation.recurring.heatmap`), brought onto the photo (:func:`bbx.preprocess.to_photo`, fill 0)
and scored by :mod:`bbx.result.localisation` against the overlay's boxes (``boxes.json``, as
``--truth`` reads them): pointing game within 15 px, share of the top 5% pixels in a box
(``top5_share``), relevance mass over the boxes' area share (``relevance_mass_lift``);
definitions in docs/localisation.md. The φ@a% columns are bbx evaluate's own (``phi_at_area``).
Records scored with ``--truth`` also give ``truth_phi`` (φ of blurring the overlay's boxes alone) and
``phi@truth_area``: the method's own φ at the area the boxes cover in the model's view (linear between
the measured areas): when it beats ``truth_phi``, the method's top pixels raise the class more than the
overlay does, so a heatmap that put the overlay first would score lower φ at that area.
``--jpeg FOLDER`` (an evaluation of the same photos re-encoded, tools/confound_run.py ``--jpeg``)
adds ``jpeg_r``: Pearson's r between a method's masks on the photo and on its re-encoding.

    python tools/confound_eval.py /tmp/ev_held --bench /tmp/confounds --csv tools/results/x.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bbx.evaluation.recurring import heatmap as record_heatmap  # noqa: E402
from bbx.evaluation.truth import load_truth  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402
from bbx.preprocess import geometry, to_photo  # noqa: E402
from bbx.result.localisation import localisation  # noqa: E402
from bbx.result.metrics import mean_ci  # noqa: E402

AREAS = (0.5, 1.0, 2.0, 5.0, 10.0)
PHOTO = (256, 256)  # the benchmark's photos
LOCAL = ["pointing_game", "top5_share", "relevance_mass_lift"]
COLUMNS = [*LOCAL, "phi@0.5", "phi@1", "phi@2", "phi@5", "phi@10", "queries", "seconds"]
TRUTH_PHI = ["truth_area", "truth_phi", "phi@truth_area"]  # only where the records were scored with --truth
_MODEL = None


def _model() -> OnnxClassifier:
    global _MODEL
    if _MODEL is None:
        _MODEL = OnnxClassifier(ROOT / "models" / "efficientnet_lite0.onnx")
    return _MODEL


def on_photo(heat: np.ndarray) -> np.ndarray:
    """A model-view heatmap on the benchmark's 256 px photo, as Explanation.on_photo brings it."""
    return to_photo(heat, geometry(PHOTO, _model().spec), fill=0.0)


def view_share(region: np.ndarray) -> float:
    """The share of the model's view (in %) a photo-size region covers, through the model's preparation."""
    image = np.repeat(np.asarray(region, dtype=np.uint8)[..., None] * 255, 3, axis=2)
    return 100.0 * float((_model().prepare(image)[..., 0] > 0.5).mean())


def against_truth(rec: dict, region: np.ndarray) -> dict[str, float]:
    """``truth_phi`` and the method's φ at the truth's area in the view (``phi@truth_area``)."""
    area = view_share(region)
    return {"truth_area": area, "truth_phi": rec["truth"]["phi"],
            "phi@truth_area": float(np.interp(area, rec["areas"], rec["phi_at_area"]))}


def figures(heat_view: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """The localisation columns of one model-view heatmap against a photo-size region."""
    scores = localisation(on_photo(heat_view), region)
    return {k: scores[k] for k in LOCAL}


def score_records(lines: list[dict], truth) -> list[dict]:
    rows = []
    for rec in lines:
        if "error" in rec or "mask" not in rec:
            continue
        name = Path(rec["image"]).name
        row = {"photo": name, "method": rec["method"], "seed": rec.get("seed", 0)}
        if truth is not None:  # without a bench (photos without a confound): φ only
            local = rec.get("truth") or figures(record_heatmap(rec), truth.region(name, PHOTO))
            row.update({k: local[k] for k in LOCAL})
        for a, v in zip(rec["areas"], rec["phi_at_area"]):
            row[f"phi@{a:g}"] = v
        row["queries"], row["seconds"] = rec["queries"], rec["seconds"]
        if "truth" in rec:
            row.update(against_truth(rec, truth.region(name, PHOTO)))
        rows.append(row)
    return rows


def mask_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two masks; two equal masks give 1 even when flat (a mask that marks nothing on
    both photos is stable), a flat one against one that is not gives 0."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if np.array_equal(a, b):
        return 1.0
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def add_jpeg_r(rows: list[dict], lines: list[dict], again: list[dict]) -> list[dict]:
    """``rows`` (one per record of ``lines``, in order) with ``jpeg_r`` against ``again``'s record of the same
    photo stem and method; rows without one are left out."""
    masks = {(Path(r["image"]).stem, r["method"]): r["mask"] for r in again if "mask" in r}
    kept = []
    recs = [r for r in lines if "error" not in r and "mask" in r]
    for row, rec in zip(rows, recs):
        other = masks.get((Path(rec["image"]).stem, rec["method"]))
        if other is not None:
            kept.append({**row, "jpeg_r": mask_r(rec["mask"], other)})
    return kept


def table(rows: list[dict], columns: list[str] = COLUMNS) -> list[dict]:
    """Per method: the mean ± 95% interval of each column over photos (seeds averaged first)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        photos = sorted({r["photo"] for r in mine})
        line = {"method": method, "photos": len(photos)}
        for c in columns:
            per_photo = [np.mean([r[c] for r in mine if r["photo"] == p]) for p in photos]
            m, h = mean_ci(per_photo)
            line[c], line[c + "_ci"] = m, h
        out.append(line)
    return out


def markdown(summary: list[dict], columns: list[str] = COLUMNS) -> str:
    head = "| method | photos | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for s in summary:
        cells = []
        for c in columns:
            digits = 0 if c == "queries" else 1 if c.startswith(("phi", "seconds", "truth")) else 2
            ci = "" if c in ("queries", "seconds") else f" ± {s[c + '_ci']:.{digits}f}"
            cells.append(f"{s[c]:.{digits}f}{ci}")
        lines.append(f"| {s['method']} | {s['photos']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})


def read_rows(path: Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, numbers as floats."""
    def value(v: str):
        try:
            return float(v)
        except ValueError:
            return v
    with path.open() as fh:
        return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evaluation", type=Path, help="a bbx evaluate --out folder, or a rows CSV this tool or "
                    "tools/rise_levers.py wrote (then only its table is printed)")
    ap.add_argument("--bench", type=Path, help="the tools/confounds.py folder (boxes.json); without it, φ only")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="also the rows of this CSV (tools/rise_levers.py's), methods named as there")
    ap.add_argument("--rename", action="append", default=[], help="OLD=NEW: a method's name in the table")
    ap.add_argument("--common", action="store_true", help="only the photos every method has")
    ap.add_argument("--csv", type=Path, help="per-photo rows here; the table beside it (_summary.csv)")
    ap.add_argument("--jpeg", type=Path, help="an evaluation of the same photos re-encoded: adds jpeg_r")
    args = ap.parse_args(argv)
    if args.evaluation.suffix == ".csv":
        rows = read_rows(args.evaluation)
        present = [c for c in COLUMNS if c in rows[0]]
        print(markdown(table(rows, present), present))
        return
    truth = load_truth(args.bench / "boxes.json") if args.bench else None
    lines = [json.loads(s) for s in (args.evaluation / "results.jsonl").read_text().splitlines() if s.strip()]
    rows = score_records(lines, truth)
    columns = [c for c in COLUMNS if truth is not None or c not in LOCAL]
    columns += [c for c in TRUTH_PHI if all(c in r for r in rows)]
    if args.jpeg:
        again = [json.loads(s) for s in (args.jpeg / "results.jsonl").read_text().splitlines() if s.strip()]
        rows, columns = add_jpeg_r(rows, lines, again), columns + ["jpeg_r"]
    rows += [r for path in args.merge for r in read_rows(path)]
    names = dict(pair.split("=", 1) for pair in args.rename)
    rows = [{**r, "method": names.get(r["method"], r["method"])} for r in rows]
    if args.common:
        methods = {r["method"] for r in rows}
        have = [p for p in dict.fromkeys(r["photo"] for r in rows)
                if methods <= {r["method"] for r in rows if r["photo"] == p}]
        rows = [r for r in rows if r["photo"] in have]
    summary = table(rows, columns)
    print(markdown(summary, columns))
    if args.csv:
        write_csv(args.csv, rows)
        write_csv(args.csv.with_name(args.csv.stem + "_summary.csv"), summary)


if __name__ == "__main__":
    main()
