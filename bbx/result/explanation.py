"""The result of one explanation: what was found, what it did to the model, what it cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Explanation:
    """Undesirable pixels of one image for one target class.

    ``heatmap`` is 1 - M' at the model's input size: high where blurring raises the target.
    ``phi`` is this image's term of the paper's Eq. 8 (top-1 class of the original image).
    ``queries`` counts every image the model scored for this explanation.
    """

    mask: np.ndarray  # (h, w) in [0, 1]; 1 = keep, 0 = blur
    heatmap: np.ndarray  # (H, W) = 1 - M'
    image: np.ndarray  # (H, W, 3) the model's view of the photo, 0-1 RGB
    perturbed: np.ndarray  # (H, W, 3) Q(X; M)
    target: int
    target_name: str
    prob_before: float
    prob_after: float
    top1: int
    top1_name: str
    top1_prob_before: float
    top1_prob_after: float
    phi: float
    undesirable_ratio: float
    queries: int
    seconds: float
    loss_history: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    source: str = ""
    #: whether an optimised mask converged (bbx.maths.convergence.Convergence.summary()); empty for searches
    convergence: dict[str, Any] = field(default_factory=dict)
    traffic: dict[str, int] | None = None  # an endpoint's: images answered, requests, retries ... (bbx.remote)
    device: str = ""  # where the model ran ("cpu" or "cuda"): ``seconds`` means little without it
    #: one line for each way it found nothing (:mod:`bbx.result.findings`): empty mask, worse target, constant model
    notes: list[str] = field(default_factory=list)
    #: the photo as loaded (h, w, 3) uint8, None when the image came at the model's size
    photo: np.ndarray | None = None
    #: what reproduces it: preprocessing with sources, model hash, versions, time (:mod:`bbx.result.provenance`)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: where the model's input sits on the photo (:func:`bbx.preprocess.geometry`), None without a photo
    geometry: Any = None

    @property
    def phi_text(self) -> str:
        """φ as a person reads it (:func:`bbx.result.findings.phi_text`)."""
        from .findings import phi_text

        return phi_text(self.top1_prob_before, self.top1_prob_after)

    @classmethod
    def build(cls, model: Any, *, image: np.ndarray, source: str, mask: np.ndarray, heatmap: np.ndarray,
              perturbed: np.ndarray, target: int, probs_before: np.ndarray, probs_after: np.ndarray,
              queries: int, seconds: float, config: dict[str, Any],
              loss_history: list[float] | None = None, photo: np.ndarray | None = None,
              provenance: dict[str, Any] | None = None, geometry: Any = None,
              convergence: dict[str, Any] | None = None) -> "Explanation":
        """Fill every derived field (names, top-1, φ, undesirable ratio) the same way for every method."""
        from .findings import notes
        from .metrics import phi, undesirable_ratio

        p0, p1, k = probs_before, probs_after, target
        top1 = int(np.argmax(p0))
        return cls(
            mask=np.asarray(mask, dtype=np.float64), heatmap=heatmap, image=image, perturbed=perturbed,
            target=k, target_name=model.labels[k], prob_before=float(p0[k]), prob_after=float(p1[k]),
            top1=top1, top1_name=model.labels[top1],
            top1_prob_before=float(p0[top1]), top1_prob_after=float(p1[top1]),
            phi=phi(float(p0[top1]), float(p1[top1])), undesirable_ratio=undesirable_ratio(heatmap),
            queries=queries, seconds=seconds, loss_history=list(loss_history or []), config=config,
            model=model.name, source=source, device=model.device,
            notes=notes(mask, float(p0[k]), float(p1[k]), model.output.constant),
            photo=photo, provenance=dict(provenance or {}), geometry=geometry,
            convergence=dict(convergence or {}),
        )

    def on_photo(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The heatmap 1 - M' and the mask M' brought back onto the photo at its own size (h, w); the
        photo's pixels that the model never saw (cropped away) have heatmap 0 and mask 1. None when
        the image came at the model's size and there is no photo."""
        heat = self.heat_on_photo()
        if heat is None:
            return None
        return heat, 1.0 - heat

    def heat_on_photo(self) -> np.ndarray | None:
        """The heatmap 1 - M' alone on the photo (h, w) float32, 0 where the model saw nothing; None
        without a photo. One photo-size array: :func:`bbx.result.render.save_explanation` turns it
        into the mask in place."""
        if self.photo is None or self.geometry is None:
            return None
        from ..preprocess import to_photo

        return to_photo(np.asarray(self.heatmap, dtype=np.float32), self.geometry, fill=0.0)

    def summary(self) -> dict[str, Any]:
        """Everything but the arrays: the JSON report (its shared fields as a record writes them)."""
        from .record import explanation_fields

        return {
            **self.provenance,
            "model": self.model,
            "image": self.source,
            **explanation_fields(self),
            "phi_text": self.phi_text,
            "notes": list(self.notes),
            "photo_size": None if self.photo is None else list(self.photo.shape[:2]),
            "convergence": self.convergence,
            "loss_history": self.loss_history,
            **({"traffic": self.traffic} if self.traffic is not None else {}),
        }

    def _repr_png_(self) -> bytes:
        """The side-by-side figure (photo, heatmap overlay, perturbed photo): what a notebook shows."""
        from .render import figure_png

        return figure_png(self)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write heatmap, overlay, perturbed image, side-by-side figure, mask and JSON report."""
        from .render import save_explanation

        return save_explanation(self, Path(out_dir))
