"""The model as a black box: what bbx may ask of it, and the ONNX classifier that answers.

* :mod:`~bbx.model.protocol`: :class:`BlackBox`, the protocol every method uses, and
  :class:`Classifier`, the behaviour every implementation shares;
* :mod:`~bbx.model.onnx_classifier`: :class:`OnnxClassifier`, an ONNX file run by onnxruntime;
* :mod:`~bbx.model.conventions`: the input and scores output read from a model's signature;
* :mod:`~bbx.model.scores`: a batch's scores as the losses read them;
* :mod:`~bbx.model.files`: opening a file safely; :mod:`~bbx.model.providers`: where it runs.
"""

from .conventions import InputInfo, OutputInfo
from .onnx_classifier import OnnxClassifier
from .protocol import BlackBox, Classifier
from .providers import cuda_status
from .scores import Scores, TargetTerms, pad_batch, softmax

__all__ = ["BlackBox", "Classifier", "InputInfo", "OnnxClassifier", "OutputInfo", "Scores", "TargetTerms",
           "cuda_status", "pad_batch", "softmax"]
