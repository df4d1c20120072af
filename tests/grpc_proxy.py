"""A loopback gRPC proxy in front of MLServer's gRPC port that injects faults, as
:class:`remote_support.FaultProxy` does for HTTP.

It forwards every call as bytes (no stubs) and, per ModelInfer call, applies the next fault of a
script: ``unavailable`` (the server refuses before the model runs), ``drop_after`` (the model ran,
the answer is lost: UNAVAILABLE), ``exhausted:SECONDS`` (RESOURCE_EXHAUSTED with a
google.rpc.RetryInfo of that delay), ``delay:SECONDS`` (the answer comes after the client's
deadline), ``status:CODE`` (any status), ``malformed`` (bytes that are no message), ``wrong_shape``
(one class fewer than declared); ``max_images`` refuses a larger request as gRPC refuses a message
above its limit. It records what it saw and delivered (:class:`remote_support.Seen`). ``token``:
calls without ``authorization: Bearer TOKEN`` get UNAUTHENTICATED, whose message echoes what they
sent (as careless servers do). ``tls``: (certificate, key), the proxy speaks grpcs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.rpc import error_details_pb2, status_pb2
from mlserver.grpc import dataplane_pb2 as pb

from remote_support import Seen

_DTYPES = {"FP32": "<f4", "FP16": "<f2", "UINT8": "u1"}


class GrpcFaultProxy:
    def __init__(self, upstream_port: int, faults: list[str] | None = None, token: str | None = None,
                 max_images: int | None = None, tls: tuple[Path, Path] | None = None, delay: float = 0.0):
        self.faults = list(faults or [])
        self.token = token
        self.max_images = max_images
        self.delay = delay  # added to every ModelInfer call (to see concurrency)
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._upstream = grpc.insecure_channel(f"127.0.0.1:{upstream_port}",
                                               [("grpc.max_receive_message_length", -1),
                                                ("grpc.max_send_message_length", -1)])
        self.server = grpc.server(ThreadPoolExecutor(8), options=[("grpc.max_receive_message_length", -1)])
        self.server.add_generic_rpc_handlers([_Handler(self)])
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            scheme = "grpc"
        else:
            cert, key = (Path(p).read_bytes() for p in tls)
            self.port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
            scheme = "grpcs"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> "GrpcFaultProxy":
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None).wait(10)
        self._upstream.close()

    @property
    def delivered(self) -> list[Seen]:
        return [s for s in self.seen if s.delivered]

    def handle(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        said = dict(context.invocation_metadata()).get("authorization", "")
        if self.token is not None and said != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"bad credentials: {said}")
        if not method.endswith("/ModelInfer"):
            return self._forward(method, request, context)
        images, hashes = _images(request)
        if self.max_images is not None and images > self.max_images:
            self.seen.append(Seen("too_large", images, hashes, False, time.monotonic(), time.monotonic()))
            limit = -(-len(request) * self.max_images // images)  # in bytes, as gRPC states it: 3 images pass
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max ({len(request)} vs. {limit})")
        with self._lock:
            fault = self.faults.pop(0) if self.faults else "ok"
            seen = Seen(fault, images, hashes, delivered=False, started=time.monotonic())
            self.seen.append(seen)  # before the answer goes out: the client may read `seen` once it has it
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return self._inject(method, request, context, fault, seen)
        finally:
            seen.ended = seen.ended or time.monotonic()
            with self._lock:
                self.in_flight -= 1

    def _forward(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return self._upstream.unary_unary(method)(request, timeout=60)
        except grpc.RpcError as err:
            context.abort(err.code(), err.details() or "")

    def _inject(self, method: str, request: bytes, context: grpc.ServicerContext, fault: str, seen: Seen) -> bytes:
        kind, _, arg = fault.partition(":")
        if kind == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: not now")
        if kind == "status":
            context.abort(getattr(grpc.StatusCode, arg), "injected")
        if kind == "exhausted":
            info = error_details_pb2.RetryInfo()
            info.retry_delay.FromNanoseconds(int(float(arg) * 1e9))
            status = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="slow down")
            status.details.add().Pack(info)
            context.set_trailing_metadata([("grpc-status-details-bin", status.SerializeToString())])
            seen.ended = time.monotonic()  # the wait asked for starts once the answer is out
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        if kind == "delay":  # longer than the client waits: the answer goes nowhere
            time.sleep(float(arg))
        data = self._forward(method, request, context)
        if kind == "drop_after":  # the model answered; the client never hears it
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: connection reset")
        if kind == "malformed":
            return b"\x0a\xff\xff\xff\xff\x0f"  # a length that runs past the end: no message
        if kind == "wrong_shape":
            answer = pb.ModelInferResponse.FromString(data)
            for out, raw in zip(answer.outputs, answer.raw_output_contents):
                n, c = out.shape
                out.shape[:] = [n, c - 1]
            answer.raw_output_contents[:] = [np.frombuffer(r, "<f4").reshape(n, c)[:, :-1].tobytes()
                                             for r in answer.raw_output_contents]
            data = answer.SerializeToString()
        seen.delivered = kind == "ok" or kind == "delay" and context.is_active()
        return data


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: GrpcFaultProxy):
        self.proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self.proxy.handle(method, request, context))


def _images(request: bytes) -> tuple[int, list[str]]:
    """How many images a ModelInfer request holds and a hash of each (the same hash as the HTTP proxy's)."""
    message = pb.ModelInferRequest.FromString(request)
    tensor = message.inputs[0]
    data = np.frombuffer(message.raw_input_contents[0], _DTYPES[tensor.datatype]).astype(np.float64)
    data = data.reshape(tensor.shape[0], -1)
    return len(data), [hashlib.sha1(row.tobytes()).hexdigest() for row in data]
