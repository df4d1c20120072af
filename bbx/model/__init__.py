"""The model as a black box: what bbx may ask of it, and the ONNX classifier that answers.

* :mod:`~bbx.model.protocol`: :class:`BlackBox`, the protocol every method uses, and
  :class:`Classifier`, the behaviour every implementation shares;
* :mod:`~bbx.model.onnx_classifier`: :class:`OnnxClassifier`, an ONNX file run by onnxruntime;
* :mod:`~bbx.model.opening`: :func:`open_model`, a path or an address opened as a black box;
* :mod:`~bbx.model.conventions`: the input and scores output read from a model's signature;
* :mod:`~bbx.model.scores`: a batch's scores as the losses read them;
* :mod:`~bbx.model.files`: opening a file safely; :mod:`~bbx.model.providers`: where it runs;
* :mod:`~bbx.model.watchdog`: time limits and Ctrl-C during a model call.
"""

from .conventions import InputInfo, OutputInfo
from .onnx_classifier import OnnxClassifier
from .opening import open_model, register_scheme
from .protocol import BlackBox, Classifier, OnnxBackend
from .providers import cuda_status
from .scores import Scores, TargetTerms, pad_batch, softmax
from .watchdog import Limits

__all__ = ["BlackBox", "Classifier", "InputInfo", "Limits", "OnnxBackend", "OnnxClassifier", "OutputInfo", "Scores",
           "TargetTerms", "cuda_status", "open_model", "pad_batch", "register_scheme", "softmax"]
