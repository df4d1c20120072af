"""Every method on a confound benchmark's photos (tools/confounds.py), as ``bbx evaluate`` runs them,
with the levers that are not registered (``rise_greedy``, ``greedy_ranked``, ``rise_first`` and bbx.methods.levers) registered
for the run. A folder without ``boxes.json`` is evaluated without truth (photos without a confound).

``--jpeg 95`` first re-encodes each photo as a JPEG of that quality (Pillow, 4:4:4, no other
change) into ``OUT/photos``, and evaluates those: the stability check of docs/reproduce.md, read
against the run on the original photos by ``tools/confound_eval.py --jpeg``. Resumable: the same
command continues where it stopped (``bbx evaluate``'s ledger).

``--set lambda2=1`` passes an explain option to every method (the soft mask at a larger area);
``--default STEADY_TIE=0.25`` changes a constant of :mod:`bbx.defaults` for this run (a lever's knob).

    python tools/confound_run.py /tmp/confounds --out /tmp/cf_held --methods greedy,rise_greedy,occlusion
    python tools/confound_run.py /tmp/confounds --out /tmp/cf_held_q95 --jpeg 95 --methods ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bbx.defaults as d  # noqa: E402
import bbx.methods.levers  # noqa: E402,F401  registers the levers for this run
import bbx.methods.greedy_ranked  # noqa: E402,F401  and greedy_ranked
import bbx.methods.rise_first  # noqa: E402,F401  and rise_first
from bbx.config import ExplainConfig  # noqa: E402
from bbx.evaluation.runner import EvalConfig, evaluate  # noqa: E402
from bbx.evaluation.truth import load_truth  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402


def reencoded(photos: list[Path], folder: Path, quality: int) -> list[Path]:
    """Each photo as a JPEG of ``quality`` in ``folder`` (same stem), written once."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in photos:
        target = folder / (p.stem + ".jpg")
        if not target.exists():
            Image.open(p).convert("RGB").save(target, quality=quality, subsampling=0)
        out.append(target)
    return out


def options(pairs: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` pairs as explain options (numbers: whole ones as int)."""
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        out[name] = int(value) if value.lstrip("-").isdigit() else float(value)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a tools/confounds.py folder")
    ap.add_argument("--split", default="heldout", help="its photos/ sub-folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", default="greedy,rise_greedy,occlusion,rise,ftc,random")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--jpeg", type=int, default=None, help="re-encode as JPEG of this quality first")
    ap.add_argument("--limit", type=int, default=None, help="the first N photos by name")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="an explain option for every method (a number), e.g. lambda2=1")
    ap.add_argument("--default", action="append", default=[], metavar="NAME=VALUE",
                    help="a number of bbx.defaults for this run, e.g. STEADY_TIE=0.25")
    args = ap.parse_args(argv)
    for name, value in options(args.default).items():
        if not isinstance(getattr(d, name, None), (int, float)) or isinstance(getattr(d, name), bool):
            ap.error(f"--default takes NAME=NUMBER with NAME a number of bbx.defaults, not {name!r}")
        setattr(d, name, value)
    folder = args.bench / "photos" / args.split
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:args.limit]
    truth = None
    if args.jpeg is not None:
        photos = reencoded(photos, args.out / "photos", args.jpeg)
    elif (args.bench / "boxes.json").exists():
        truth = load_truth(args.bench / "boxes.json")
    try:
        explain = ExplainConfig(budget=args.budget, **options(args.set))
    except (ValueError, TypeError) as err:
        ap.error(f"--set takes NAME=NUMBER with NAME an explain option: {err}")
    config = EvalConfig(methods=tuple(args.methods.split(",")), seeds=1, explain=explain,
                        truth=truth).validate()
    model = OnnxClassifier(ROOT / "models" / "efficientnet_lite0.onnx")
    outcome = evaluate(model, photos, config, args.out)
    print(f"{len(outcome.records)} records in {args.out}")


if __name__ == "__main__":
    main()
