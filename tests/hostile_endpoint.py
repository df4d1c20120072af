"""A hostile Open Inference Protocol endpoint on 127.0.0.1, for the hardening corpus (issue 34).

It serves one model, ``m``: an NCHW 16x16 FP32 image input, and either every class's
probabilities (``probs``, a softmax of fixed weights over the channel means: a real, known
answer) or the top 3 (``values`` beside ``classes``). One ``behaviour`` decides what it does
wrong; the first inference request (bbx's detection probe) is always answered well unless the
behaviour is about that request itself. Requests are bounded: the server stops with its context.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import numpy as np

CLASSES, SIZE, TOPK = 10, 16, 3
SPEC = {"size": [SIZE, SIZE], "resize_mode": "stretch", "scale": 1.0, "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0], "channel_order": "RGB"}
WEIGHTS = np.random.default_rng(7).normal(0, 4, (3, CLASSES))
#: what a hostile server echoes: bbx must never print, log or write it
TOKEN = "s3cr3t-TOKEN-4242"


def probabilities(batch: np.ndarray) -> np.ndarray:
    """(N, C) softmax of the channel means: what an honest server answers for an NCHW batch."""
    z = batch.reshape(len(batch), 3, -1).mean(axis=2) @ WEIGHTS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class HostileEndpoint:
    """``with HostileEndpoint("drip") as url: ...``: ``url`` is the model's endpoint URL."""

    BEHAVIOURS = ("honest", "honest-topk", "error-echoes-token", "text-echoes-token", "drip", "huge-answer",
                  "topk-negative-later", "topk-nan-later", "deep-answer", "long-number-answer", "deep-metadata")

    def __init__(self, behaviour: str):
        assert behaviour in self.BEHAVIOURS, behaviour
        self.behaviour = behaviour
        self.posts = 0
        self._stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer.get(self)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.post(self, body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/models/m"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    # -- answers -------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        topk = "topk" in self.behaviour
        outputs = ([{"name": "values", "datatype": "FP32", "shape": [-1, TOPK]},
                    {"name": "classes", "datatype": "INT64", "shape": [-1, TOPK]}] if topk else
                   [{"name": "probs", "datatype": "FP32", "shape": [-1, CLASSES]}])
        params: dict[str, Any] = {"bbx.preprocess": json.dumps(SPEC)}
        if topk:
            params["bbx.labels"] = json.dumps([f"c{i}" for i in range(CLASSES)])
        return {"name": "m", "platform": "hostile", "parameters": params,
                "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 3, SIZE, SIZE]}], "outputs": outputs}

    def get(self, h: http.server.BaseHTTPRequestHandler) -> None:
        if self.behaviour == "deep-metadata":
            return self.send(h, 200, b"[" * 100_000 + b"]" * 100_000)
        self.send(h, 200, json.dumps(self.metadata()).encode())

    def post(self, h: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        self.posts += 1
        later = self.posts > 1
        request = json.loads(body)["inputs"][0]
        batch = np.asarray(request["data"], np.float64).reshape(request["shape"])
        p = probabilities(batch)
        b = self.behaviour
        if b == "error-echoes-token":
            return self.send(h, 200, json.dumps({"error": f"credential rejected: {h.headers['Authorization']}"}).encode())
        if b == "text-echoes-token":
            return self.send(h, 200, f"<html>credential rejected: {h.headers['Authorization']}</html>".encode(),
                             "text/html")
        if b == "drip":
            return self.drip(h, self.answer(p))
        if b == "huge-answer":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(10**9))
            h.end_headers()
            h.wfile.write(b'{"outputs": [')
            return
        if b == "deep-answer" and later:
            return self.send(h, 200, b'{"outputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        if b == "long-number-answer" and later:
            text = self.answer(p).decode().replace('"data": [', '"data": [' + "9" * 401 + ", ", 1)
            return self.send(h, 200, text.encode())
        if "topk" in b:
            order = np.argsort(-p, axis=1)[:, :TOPK]
            values = np.take_along_axis(p, order, axis=1)
            if later and b == "topk-negative-later":
                values[:, 0] -= 0.5  # 0.4383 would read as 0.9383 once the mass left is spread
            if later and b == "topk-nan-later":
                values[:, 1] = np.nan
            outs = [{"name": "values", "datatype": "FP32", "shape": list(values.shape), "data": values.ravel().tolist()},
                    {"name": "classes", "datatype": "INT64", "shape": list(order.shape), "data": order.ravel().tolist()}]
            return self.send(h, 200, json.dumps({"outputs": outs}).encode())  # NaN written as the NaN token
        self.send(h, 200, self.answer(p))

    @staticmethod
    def answer(p: np.ndarray) -> bytes:
        return json.dumps({"outputs": [{"name": "probs", "datatype": "FP32", "shape": list(p.shape),
                                        "data": p.ravel().tolist()}]}).encode()

    def drip(self, h: http.server.BaseHTTPRequestHandler, data: bytes) -> None:
        """A whole, correct answer, one byte every 0.5 s (at most 60 s, then the rest at once)."""
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        end = time.monotonic() + 60
        try:
            for i in range(len(data)):
                if self._stop.is_set() or time.monotonic() > end:
                    h.wfile.write(data[i:])
                    break
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
                time.sleep(0.5)
        except OSError:  # bbx gave up and closed the connection: what it should do
            pass

    @staticmethod
    def send(h: http.server.BaseHTTPRequestHandler, status: int, data: bytes,
             kind: str = "application/json") -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", kind)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass
