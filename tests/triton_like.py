"""A small loopback server of the Open Inference Protocol's REST form that implements Triton's binary
tensor data extension from its specification (no Triton binary can be installed here), for bbx's tests.

https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md:
``GET /v2`` lists ``binary_tensor_data`` among the server's ``extensions`` (when ``binary``); a
request with ``Inference-Header-Content-Length: N`` is a JSON header of N bytes followed by the
inputs whose ``parameters.binary_data_size`` says how many bytes each takes, in the header's order;
an output requested with ``parameters.binary_data: true`` is answered the same way (its bytes after
the answer's JSON header, whose length the answer's ``Inference-Header-Content-Length`` gives).
Requests without the header are plain JSON. The model is an ONNX file run with onnxruntime.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

_DTYPES = {"FP32": "<f4", "FP16": "<f2", "UINT8": "u1", "INT64": "<i8"}
_OIP = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8", "tensor(float16)": "FP16"}


class TritonLike:
    """``http://127.0.0.1:PORT/v2/models/NAME`` serving ``onnx``; ``seen`` holds, per inference
    request, ("binary" or "json", the body's bytes, images)."""

    def __init__(self, onnx: Path, name: str = "tiny", binary: bool = True):
        self.session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        self.name, self.binary = name, binary
        self.seen: list[tuple[str, int, int]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._get(self)

            def do_POST(self) -> None:
                server._post(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v2/models/{name}"
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> "TritonLike":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.shutdown()
        self.http.server_close()

    def _get(self, h: Any) -> None:
        (i,), outs = self.session.get_inputs(), self.session.get_outputs()
        if h.path == "/v2":
            extensions = ["classification", "sequence", "model_repository"] + (["binary_tensor_data"] if self.binary else [])
            return _reply(h, 200, {"name": "triton-like", "version": "2.0", "extensions": extensions})
        if h.path == f"/v2/models/{self.name}":
            return _reply(h, 200, {"name": self.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                                   "inputs": [{"name": i.name, "datatype": _OIP[i.type], "shape": [-1, *i.shape[1:]]}],
                                   "outputs": [{"name": o.name, "datatype": "FP32", "shape": [-1, o.shape[-1]]}
                                               for o in outs]})
        _reply(h, 404, {"error": f"no route {h.path}"})

    def _post(self, h: Any, body: bytes) -> None:
        length = h.headers.get("Inference-Header-Content-Length")
        header = json.loads(body[:int(length)] if length is not None else body)
        binary, at = body[int(length):] if length is not None else b"", 0
        feeds = {}
        for t in header["inputs"]:
            size = (t.get("parameters") or {}).get("binary_data_size")
            if size is None:
                values = np.asarray(t["data"], dtype=_DTYPES[t["datatype"]])
            else:
                values, at = np.frombuffer(binary[at:at + size], dtype=_DTYPES[t["datatype"]]), at + size
            feeds[t["name"]] = values.reshape(t["shape"])
        if at != len(binary):
            return _reply(h, 400, {"error": f"{len(binary) - at} bytes after the inputs"})
        self.seen.append(("binary" if length is not None else "json", len(body), len(next(iter(feeds.values())))))
        names = [o["name"] for o in header.get("outputs") or []] or [o.name for o in self.session.get_outputs()]
        results = dict(zip([o.name for o in self.session.get_outputs()], self.session.run(None, feeds)))
        wanted = {o["name"]: bool((o.get("parameters") or {}).get("binary_data")) for o in header.get("outputs") or []}
        outputs, tail = [], b""
        for name in names:
            a = results[name].astype(np.float32)
            out = {"name": name, "datatype": "FP32", "shape": list(a.shape)}
            if wanted.get(name):
                raw = a.astype("<f4").tobytes()
                out["parameters"], tail = {"binary_data_size": len(raw)}, tail + raw
            else:
                out["data"] = a.ravel().tolist()
            outputs.append(out)
        text = json.dumps({"model_name": self.name, "outputs": outputs}).encode()
        _reply(h, 200, text + tail, {"Inference-Header-Content-Length": str(len(text))} if tail else None)


def _reply(h: Any, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json" if extra is None else "application/octet-stream")
    h.send_header("Content-Length", str(len(body)))
    for k, v in (extra or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)
