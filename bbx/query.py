"""Querying the model with perturbed images, one batch of masks at a time.

The reference path builds each Q(X; M) in 0-1 RGB and hands it to the model's preprocessing.
Because the normalisation is affine per channel, the fused path instead precomputes
``norm(h(X))`` and ``gain * (X - h(X))`` once, in the model's own layout and channel order, and
per step only upsamples the masks and does one multiply-add: the same numbers with less host
work. Models with integer inputs keep the reference path (their rounding is not affine).
"""

from __future__ import annotations

import numpy as np

from .model import OnnxClassifier, Scores
from .perturb import Perturber
from .preprocess import affine


class MaskQuery:
    """``query(masks) -> Scores`` for ``(B, h, w)`` masks; every mask costs one counted query."""

    def __init__(self, model: OnnxClassifier, perturber: Perturber, fused: bool | None = None):
        self.model = model
        self.perturber = perturber
        dtype = np.dtype(model.input.dtype)
        self.fused = dtype.kind == "f" if fused is None else fused and dtype.kind == "f"
        if self.fused:
            spec = model.spec
            gain, offset = affine(spec)
            base, delta = perturber.blurred, perturber.delta
            if spec.channel_order == "BGR":
                base, delta = base[..., ::-1], delta[..., ::-1]
            base = base * gain + offset
            delta = delta * gain
            if spec.layout == "NCHW":
                base, delta = base.transpose(2, 0, 1), delta.transpose(2, 0, 1)
            self._base = np.ascontiguousarray(base, dtype=np.float32)
            self._delta = np.ascontiguousarray(delta, dtype=np.float32)
            self._channel_axis = 1 if spec.layout == "NCHW" else 3
            self._dtype = dtype

    def __call__(self, masks: np.ndarray) -> Scores:
        masks = np.asarray(masks, dtype=np.float32)
        if not self.fused:
            return self.model.scores(self.perturber(masks))
        up = np.expand_dims(self.perturber.upsample(masks), self._channel_axis)
        x = self._base + self._delta * up
        return self.model.score_tensor(x if self._dtype == np.float32 else x.astype(self._dtype))
