"""gRPC to an inference endpoint, under the same rules as :class:`~bbx.remote.client.Client`.

:class:`GrpcClient` is the HTTP client with the wire swapped: the hard cap on answered images, the
pacing under ``max_rps``, the thread pool of ``concurrency`` and the traffic counters are the HTTP
client's own; only one request's tries differ. Messages travel as the bytes
:mod:`.oip_grpc` writes (grpcio's generic calls, no generated stubs). A status is treated as its
HTTP counterpart: UNAVAILABLE as 503 (or a dropped connection), RESOURCE_EXHAUSTED as 429 (its
RetryInfo or ``retry-after`` trailer as Retry-After), DEADLINE_EXCEEDED as a timeout, and
RESOURCE_EXHAUSTED for a message above the server's size limit as 413, so that the request is halved.

The credential goes in the call's metadata (gRPC's headers, lower-case name) and nowhere else;
what a server says back is scrubbed of it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# grpcio's C core logs connection failures to stderr itself; bbx says each in one line of its own
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
import grpc  # noqa: E402

from ..errors import EndpointError, OptionError, TooLargeError
from .client import Client, ClientConfig
from .credentials import Credentials
from .oip_grpc import GrpcUrl, retry_delay

_C = grpc.StatusCode
#: worth another try, as HTTP's 408/429/5xx: busy, rate-limited, slow, or broken for a moment. Not
#: UNKNOWN: a servicer's uncaught exception, which MLServer gives for a model it does not have
RETRY_CODES = frozenset({_C.UNAVAILABLE, _C.RESOURCE_EXHAUSTED, _C.DEADLINE_EXCEEDED, _C.INTERNAL, _C.ABORTED,
                         _C.CANCELLED})
#: grpcio's own limit on one message is 4 MB, smaller than one request of 32 images of 224x224:
#: the server's limit is the one that counts (a request above it is halved), bbx sets none
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1),
                    ("grpc.enable_retries", 0),  # bbx retries and counts every try itself
                    ("grpc.primary_user_agent", "bbx")]


class GrpcClient(Client):
    """Calls to one gRPC server, counted in :attr:`traffic` like HTTP requests."""

    def __init__(self, url: GrpcUrl, config: ClientConfig | None = None, credentials: Credentials | None = None):
        super().__init__(url.scheme, url.host, url.port, config, credentials)
        if url.scheme == "grpcs":
            if not self.config.verify:
                raise OptionError("--insecure is not available with grpcs:// (grpcio always checks the server's "
                                  "certificate): give the server's CA with --ca-file")
            roots = Path(self.config.ca_file).read_bytes() if self.config.ca_file else None
            self._channel = grpc.secure_channel(url.target, grpc.ssl_channel_credentials(roots), _CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(url.target, _CHANNEL_OPTIONS)
        headers = credentials.headers() if credentials is not None else {}
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())
        self._calls: dict[str, grpc.UnaryUnaryMultiCallable] = {}

    def call(self, method: str, body: bytes) -> bytes:
        """One call that answers no image (readiness, metadata): refused connections end at once."""
        return self._request("GET", method, body, 0)

    def close(self) -> None:
        super().close()
        self._channel.close()

    # -- internals -----------------------------------------------------------------------------
    def _try(self, method: str, path: str, body: bytes,
             extra: dict[str, str] | None) -> tuple[bytes | None, str, float | None]:
        """One call of the RPC ``path`` (``/inference.GRPCInferenceService/ModelInfer``); ``method``
        "GET" for a call that answers no image, as :meth:`Client._request` reads it."""
        try:
            return self._invoke(path, body), "", None
        except grpc.RpcError as err:
            return (None, *self._judge(err, method, path))

    def _invoke(self, path: str, body: bytes) -> bytes:
        call = self._calls.get(path)
        if call is None:  # no (de)serialiser: bytes in, bytes out
            call = self._calls.setdefault(path, self._channel.unary_unary(path))
        with self._lock:
            self.traffic.bytes_sent += len(body)
        data = call(body, timeout=self.config.timeout, metadata=self._metadata or None)
        with self._lock:
            self.traffic.bytes_received += len(data)
        return data

    def _judge(self, err: grpc.RpcError, method: str, path: str) -> tuple[str, float | None]:
        """What a failed try was, and how long the server asks to wait; raises for what no retry changes."""
        code, said = err.code(), self._said(err)
        lower = (err.details() or "").lower()  # whole: grpcio puts the TLS error at the end of a long line
        if code == _C.RESOURCE_EXHAUSTED and "larger than max" in lower:  # the message, not the rate
            with self._lock:
                self.traffic.failures += 1
            sizes = re.search(r"\((\d+) vs\. (\d+)\)", said)  # grpcio's words: "(SENT vs. LIMIT)"
            share = int(sizes[2]) / int(sizes[1]) if sizes and int(sizes[1]) > 0 else None
            raise TooLargeError(f"{self.where} refused a request as too large (gRPC RESOURCE_EXHAUSTED: {said}): "
                                "lower --max-batch or raise the server's message limit", share)
        if code == _C.UNAVAILABLE:
            self._unreachable(lower, method)
        if code not in RETRY_CODES:
            raise EndpointError(self._refusal_of(code, path, said))
        wait = retry_delay(err.trailing_metadata()) if code == _C.RESOURCE_EXHAUSTED else None
        if wait is not None and wait > self.config.max_wait:
            raise EndpointError(f"{self.where} asks to wait {wait:.0f} s (RESOURCE_EXHAUSTED), "
                                f"more than --max-wait {self.config.max_wait:g} s")
        if code == _C.DEADLINE_EXCEEDED:
            return f"no answer within {self.config.timeout:g} s", None
        return f"gRPC {code.name}" + (f" ({said[:80]})" if said else ""), wait

    def _unreachable(self, lower: str, method: str) -> None:
        """UNAVAILABLE that no retry changes: DNS, TLS; a refused connection when asking for metadata."""
        if "dns" in lower and "resol" in lower:
            raise EndpointError(f"cannot resolve host {self.host!r} (DNS): check the URL")
        if "certificate_verify_failed" in lower or "certificate verify failed" in lower:
            raise EndpointError(f"TLS certificate of {self.where} not trusted; give its CA with --ca-file")
        if "handshake" in lower or "ssl" in lower:
            raise EndpointError(f"TLS with {self.where} failed (is it a grpcs:// server? a grpc:// one?)")
        if method == "GET" and "refused" in lower:
            raise EndpointError(f"cannot connect to {self.where}: connection refused (is the server running, "
                                "on this port?)")

    def _said(self, err: grpc.RpcError) -> str:
        return self.scrub(" ".join((err.details() or "").split())[:200])

    def _refusal_of(self, code: grpc.StatusCode, path: str, said: str) -> str:
        """One line for a status that no retry changes."""
        tail = f": {said}" if said else ""
        if code in (_C.UNAUTHENTICATED, _C.PERMISSION_DENIED):
            how = ("check the credential (--auth-env/--auth-file)" if self.credentials
                   else "give one with --auth-env or --auth-file")
            return f"{self.where} refused bbx (gRPC {code.name}); {how}"
        if code == _C.NOT_FOUND or code == _C.UNKNOWN and "not found" in said.lower():
            return f"{self.where}: not found (gRPC NOT_FOUND): check the model name and version in the URL{tail}"
        if code == _C.UNIMPLEMENTED:
            return (f"{self.where} does not serve the Open Inference Protocol's gRPC service "
                    f"({path.rsplit('/', 1)[-1]}: UNIMPLEMENTED){tail}")
        return f"{self.where} answered gRPC {code.name} to {path.rsplit('/', 1)[-1]}{tail}"
