"""``bbx explain --html``: the one-photo version of the audit page, beside ``bbx explain``'s files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..result.explanation import Explanation
from ..result.record import record
from ..result.render import to_uint8
from . import data, images
from .card import model_card
from .page import Report, write_page


def explanation_page(e: Explanation, model: Any, out: str | Path, command: str = "",
                     files: dict[str, str] | None = None) -> Path:
    """Write ``out/index.html`` for ``e``; ``files``: picture kind -> file in ``out`` that
    :meth:`Explanation.save` wrote (the photo itself is written here)."""
    out = Path(out)
    files = dict(files or {"overlay": "overlay.png", "perturbed": "perturbed.png"})
    files.setdefault("photo", images.save(out / "photo.png", to_uint8(e.image)).name)
    method = str(e.config.get("method", "?"))
    rec = record({"image": e.source, "image_sha256": "", "method": method, "seed": int(e.config.get("seed", 0))}, e, {})
    row = data.rows([rec], method, model.labels)[0]
    row.files = files
    report = Report(
        title=f"bbx explain: {row.name}",
        summary=(f"{method} for {e.target_name!r} (class {e.target}): {e.prob_before:.4f} → {e.prob_after:.4f}; "
                 f"φ {e.phi:.1f}; undesirable pixels {100 * e.undesirable_ratio:.2f}%; {e.queries} queries in "
                 f"{e.seconds:.1f} s on {e.device or '?'}"),
        card=model_card(model, command),
        gallery=[row],
        settings=dict(e.config),
    )
    return write_page(out, report)
