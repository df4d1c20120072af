"""How an endpoint's requests travel: JSON over HTTP, or raw tensors over gRPC; chosen by the URL's
scheme. :class:`~bbx.remote.endpoint.EndpointClassifier` asks a wire for the model's metadata and
for answers to batches, and never sees which one it holds: conventions, the probe cache, the
413/too-large halving and the checks of each answer are the same for both.

A wire has ``url`` (``model``, ``shown``), ``client`` (the budget, the pool and the ``traffic``
counters of :class:`~bbx.remote.client.Client`), ``form`` (how the images travel: ``json``,
``json+binary``, ``grpc``), :meth:`metadata` and :meth:`infer`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import EndpointError, OptionError
from . import oip, oip_binary
from .client import Client, ClientConfig
from .credentials import Credentials


class JsonWire:
    """The Open Inference Protocol's REST form: ``http(s)://HOST:PORT/v2/models/NAME``, JSON bodies,
    or the images in binary after a JSON header where the server says it speaks Triton's binary
    tensor data extension (:mod:`.oip_binary`)."""

    def __init__(self, url: str, config: ClientConfig | None, credentials: Credentials | None):
        self.url = oip.parse_url(url)
        self.client = Client(self.url.scheme, self.url.host, self.url.port, config, credentials)
        self.form = "json"

    def metadata(self) -> oip.ModelMeta:
        meta = oip.parse_metadata(self.client.get(self.url.path), self.url.shown, self.client.scrub)
        self.form = "json+binary" if self._speaks_binary() else "json"
        return meta

    def infer(self, tensor: oip.TensorMeta, x: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """The named outputs for the batch ``x``, which counts ``len(x)`` answered images."""
        path = self.url.path + "/infer"
        if self.form == "json+binary":
            body, headers = oip_binary.encode_request(tensor.name, tensor.datatype, x, outputs)
            answer = self.client.post(path, body, len(x), headers)
        else:
            answer = self.client.post(path, oip.encode_request(tensor.name, tensor.datatype, x, outputs), len(x))
        return oip.decode_response(answer, self.url.shown, self.client.scrub)

    def _speaks_binary(self) -> bool:
        """The server's metadata (``GET /v2``) lists the extension; a server without that route or
        with an answer bbx cannot read gets JSON, as before."""
        try:
            return oip_binary.speaks_binary(self.client.get(self.url.prefix + "/v2"), self.url.shown)
        except EndpointError:
            return False


class GrpcWire:
    """The Open Inference Protocol's gRPC form: ``grpc(s)://HOST:PORT/NAME``, raw binary tensors."""

    def __init__(self, url: str, config: ClientConfig | None, credentials: Credentials | None):
        try:
            from . import oip_grpc
            from .grpc_client import GrpcClient
        except ImportError:
            raise OptionError("a grpc:// endpoint needs grpcio and protobuf: pip install 'bbx[remote]'") from None

        self._oip = oip_grpc
        self.url = oip_grpc.parse_grpc_url(url)
        self.client = GrpcClient(self.url, config, credentials)
        self.form = "grpc"

    def metadata(self) -> oip.ModelMeta:
        """The model's metadata, once it says it is ready (a loading model answers metadata but not requests)."""
        where, o = self.url.shown, self._oip
        if not o.parse_ready(self.client.call(o.SERVICE + "ModelReady", o.model_request(self.url, "Ready")), where):
            raise EndpointError(f"{where} is not ready (ModelReady answered false): is the model still loading?")
        return o.parse_metadata(self.client.call(o.SERVICE + "ModelMetadata", o.model_request(self.url, "Metadata")),
                                where)

    def infer(self, tensor: oip.TensorMeta, x: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """The named outputs for the batch ``x``, which counts ``len(x)`` answered images."""
        body = self._oip.encode_request(self.url, tensor.name, tensor.datatype, x, outputs)
        return self._oip.decode_response(self.client.post(self._oip.SERVICE + "ModelInfer", body, len(x)),
                                         self.url.shown)


def open_wire(url: str, config: ClientConfig | None = None,
              credentials: Credentials | None = None) -> JsonWire | GrpcWire:
    """The wire a model URL names; gRPC's packages are imported only for a grpc(s):// URL (the `remote` extra)."""
    if url.strip().lower().startswith(("grpc://", "grpcs://")):
        return GrpcWire(url, config, credentials)
    return JsonWire(url, config, credentials)
