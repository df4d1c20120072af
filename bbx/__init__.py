"""bbx: black-box explanations of ONNX image classifiers.

Finds the *undesirable pixels* of a photo: the regions whose blurring would raise the model's
confidence in a target class, by querying the model only (no gradients, no framework).

    >>> import bbx
    >>> model = bbx.OnnxClassifier("models/efficientnet_lite0.onnx")
    >>> e = bbx.explain(model, "models/samples/chelsea.png", method="ftc")
    >>> e.prob_before, e.prob_after, e.queries

Every method (``bbx.methods.names()``) has this one call shape; ``bbx.methods.register`` adds one.
Progress: ``explain(..., progress=callback)`` calls ``callback(step, total, loss)`` after each step;
the ``bbx`` logger says one line per explanation (INFO), its notes (WARNING: found nothing, made the
target worse, constant model) and each step (DEBUG). It prints nothing until logging is configured.
"""

import logging

from . import methods, remote  # remote: http(s) addresses open as endpoints (bbx.model.open_model)
from .config import ExplainConfig
from .errors import BbxError, ImageError, ModelError, OptionError, OutputError
from .explain import explain
from .result.explanation import Explanation
from .preprocess.image import load_rgb
from .result.metrics import MASK_CORRELATION, PHI, TOP_IOU, UNDESIRABLE_RATIO, Metric
from .model import BlackBox, OnnxClassifier
from .preprocess import PreprocessSpec

__version__ = "0.1.0"

logging.getLogger("bbx").addHandler(logging.NullHandler())  # a library's logger: silent unless configured

__all__ = [
    "BbxError",
    "BlackBox",
    "ExplainConfig",
    "Explanation",
    "ImageError",
    "MASK_CORRELATION",
    "Metric",
    "ModelError",
    "OnnxClassifier",
    "OptionError",
    "OutputError",
    "PHI",
    "PreprocessSpec",
    "TOP_IOU",
    "UNDESIRABLE_RATIO",
    "explain",
    "load_rgb",
    "methods",
    "__version__",
]
