"""A small MLServer runtime that serves an ONNX classifier with onnxruntime (for bbx's remote tests).

The model's ``parameters.uri`` is the ``.onnx`` file; ``parameters.extra`` may hold
``{"reveal": "full" | "topk" | "label", "k": 5, "threads": 0}``: ``full`` returns the model's scores as they are,
``topk`` two outputs (the k highest probabilities and their class indices), ``label`` only the top-1
index; ``"parameters": {...}`` goes into the model's metadata (``bbx.preprocess``, ``bbx.labels``).
What the endpoint reveals is the server's choice; bbx must find it out.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse, Parameters


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(extra.get("threads", 0))  # 0: onnxruntime's default, as bbx's own
        self.session = ort.InferenceSession(self.settings.parameters.uri, sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.reveal = extra.get("reveal", "full")
        self.k = int(extra.get("k", 5))
        self.parameters = extra.get("parameters") or {}
        return True

    async def metadata(self) -> MetadataModelResponse:
        meta = await super().metadata()
        if self.parameters:
            meta.parameters = Parameters(**self.parameters)
        return meta

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request = payload.inputs[0]
        x = NumpyCodec.decode_input(request)
        expected = self.session.get_inputs()[0]
        dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(float16)": np.float16}[expected.type]
        scores = self.session.run(None, {expected.name: x.astype(dtype, copy=False)})[0]
        if self.reveal == "full":
            outputs = [NumpyCodec.encode_output(self.session.get_outputs()[0].name, scores)]
        else:
            z = scores.astype(np.float64)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            order = np.argsort(-p, axis=1, kind="stable")[:, : self.k]
            if self.reveal == "topk":
                outputs = [NumpyCodec.encode_output("probabilities", np.take_along_axis(p, order, 1).astype(np.float32)),
                           NumpyCodec.encode_output("classes", order.astype(np.int64))]
            else:
                outputs = [NumpyCodec.encode_output("label", order[:, :1].astype(np.int64))]
        return InferenceResponse(model_name=self.name, outputs=outputs)
