"""Tune ``rise_first``'s gate on a confound benchmark: run it always started and never started, then
read every gate between from the two runs.

``run`` evaluates ``rise_first`` on a benchmark's photos (tools/confound_run.py) with its share and
gate set for this run only, and appends each photo's gate figures (the blur gain of RISE's worst
window, occlusion's best cell gain) to ``--gates``: the evaluation's records do not keep an
explanation's settings, so this tool wraps the method's search to log them. ``table`` then reads,
for each gate c, the always-started record of a photo whose window gains at least c times the best
cell (and more than 0), the never-started one otherwise, and prints the localisation and φ columns
(tools/confound_eval.py). The two runs share everything before the gate (same RISE masks, same
occlusion), so this is what a run at gate c gives.

    python tools/rise_first_gate.py run --gate 0 --gates /tmp/gates.jsonl /tmp/cf2 --split tuning --out /tmp/always
    python tools/rise_first_gate.py run --gate 1e9 --gates /tmp/gates.jsonl /tmp/cf2 --split tuning --out /tmp/never
    python tools/rise_first_gate.py table --gates /tmp/gates.jsonl --pair /tmp/always,/tmp/never,/tmp/cf2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import confound_eval as ce  # noqa: E402
import confound_run  # noqa: E402
import bbx.defaults as d  # noqa: E402
import bbx.methods.rise_first as rise_first  # noqa: E402
from bbx.evaluation.truth import load_truth  # noqa: E402

GATES = (0.0, 0.25, 0.5, 0.75, 1.0, 1e9)


def run(share: float, gate: float, gates: Path, rest: list[str]) -> None:
    """tools/confound_run.py with ``rise_first`` at ``share`` and ``gate``, logging each photo's gate figures."""
    d.RISE_FIRST_SHARE, d.RISE_FIRST_GATE = share, gate
    search = rise_first.search

    def logged(ctx, cfg, pert, prior, budget, settings, **levers):
        with gates.open("a") as fh:
            fh.write(json.dumps({"image": ctx.source, "gain": settings["first_gain"],
                                 "best": settings["best_cell_gain"]}) + "\n")
        return search(ctx, cfg, pert, prior, budget, settings, **levers)

    rise_first.search = logged
    confound_run.main([*rest, "--methods", "rise_first"])


def records(folder: Path) -> dict[str, dict]:
    lines = (folder / "results.jsonl").read_text().splitlines()
    return {r["image"]: r for r in map(json.loads, filter(str.strip, lines)) if "mask" in r}


def table(gates: Path, pairs: list[str]) -> None:
    """Per gate: the records a run at that gate would have written, scored as tools/confound_eval.py does."""
    figures = {g["image"]: g for g in map(json.loads, gates.read_text().splitlines())}
    for c in GATES:
        rows = []
        for i, pair in enumerate(pairs):
            always, never, *bench = pair.split(",")
            truth = load_truth(Path(bench[0]) / "boxes.json") if bench else None
            started, plain = records(Path(always)), records(Path(never))
            chosen = [started[img] if 0 < figures[img]["gain"] >= c * figures[img]["best"] else plain[img]
                      for img in started]
            rows += [{**r, "photo": f"{i}-{r['photo']}"} for r in ce.score_records(chosen, truth)]
        columns = [k for k in ce.COLUMNS if k in rows[0] and k not in ("queries", "seconds")]
        print(ce.markdown(ce.table([{**r, "method": f"gate {c:g}"} for r in rows], columns), columns))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="rise_first at one gate; the rest goes to tools/confound_run.py")
    r.add_argument("--share", type=float, default=d.RISE_FIRST_SHARE)
    r.add_argument("--gate", type=float, required=True)
    r.add_argument("--gates", type=Path, required=True, help="JSON lines of each photo's gate figures (appended)")
    t = sub.add_parser("table", help="every gate from an always-started and a never-started run")
    t.add_argument("--gates", type=Path, required=True)
    t.add_argument("--pair", action="append", required=True, metavar="ALWAYS,NEVER[,BENCH]",
                   help="the two runs' folders, and the benchmark whose boxes.json scores them (none: φ only)")
    args, rest = ap.parse_known_args(argv)
    if args.command == "run":
        run(args.share, args.gate, args.gates, rest)
    else:
        table(args.gates, args.pair)


if __name__ == "__main__":
    main()
