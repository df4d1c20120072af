"""A real MLServer on 127.0.0.1 and a loopback proxy that injects faults, for bbx's remote tests.

:class:`MLServer` writes a model repository (one folder per model, served by the runtime in
``tests/mlserver_onnx.py``), starts ``mlserver start`` on free ports, waits until every model is
ready and stops the server after. :class:`FaultProxy` forwards to it and, per inference request,
applies the next fault of a script (a delay, a dropped connection, 500, 429 with Retry-After, a
malformed body, a wrong shape; 413 above a number of images) and records what it saw and what it
delivered.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
_ONNX_TO_OIP = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8", "tensor(float16)": "FP16"}


def bbx_cli(*args, env=None) -> subprocess.CompletedProcess:
    """``python -m bbx ARGS`` with its output captured, bounded in time."""
    return subprocess.run([sys.executable, "-m", "bbx", *map(str, args)], capture_output=True, text=True,
                          timeout=180, env=env)


def one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The one ``bbx: error:`` line a refused command prints (exit 2, no traceback), holding each fragment."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bbx: error:"), proc.stderr
    assert proc.returncode == 2, proc.returncode
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def self_signed(folder: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 and its key, made with the openssl command (None without it)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if shutil.which("openssl") is None:
        return None
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """One model of the repository: the .onnx file, what the endpoint reveals, extra metadata."""

    onnx: Path
    reveal: str = "full"
    k: int = 5
    parameters: dict[str, Any] = field(default_factory=dict)
    threads: int = 1  # onnxruntime's threads in the server (0: its default); 1 leaves a core to the client


class MLServer:
    """``grpc_max_message``: the server's limit on one gRPC message in bytes (None: gRPC's 4 MB,
    MLServer's default), above which it refuses a request with RESOURCE_EXHAUSTED."""

    def __init__(self, folder: Path, models: dict[str, Served], grpc_max_message: int | None = None):
        self.folder = folder
        self.models = models
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_max_message = grpc_max_message
        self.process: subprocess.Popen | None = None

    def model_url(self, name: str, base: str | None = None) -> str:
        return f"{base or self.url}/v2/models/{name}"

    def grpc_url(self, name: str, base: str | None = None) -> str:
        return f"{base or f'grpc://127.0.0.1:{self.grpc_port}'}/{name}"

    def __enter__(self) -> "MLServer":
        repo = self.folder / "repo"
        repo.mkdir(parents=True)
        shutil.copy(HERE / "mlserver_onnx.py", repo / "mlserver_onnx.py")
        ports = {"http_port": self.port, "grpc_port": self.grpc_port, "metrics_port": free_port()}
        if self.grpc_max_message is not None:
            ports["grpc_max_message_length"] = self.grpc_max_message
        (repo / "settings.json").write_text(json.dumps({"debug": False, "host": "127.0.0.1", "parallel_workers": 0,
                                                        "metrics_endpoint": None, **ports}))
        for name, served in self.models.items():
            session = ort.InferenceSession(str(served.onnx), providers=["CPUExecutionProvider"])
            (i,), outs = session.get_inputs(), session.get_outputs()
            shape = [-1 if not isinstance(d, int) else d for d in i.shape]
            if served.reveal == "full":
                outputs = [{"name": o.name, "datatype": "FP32", "shape": [-1, o.shape[-1]]} for o in outs[:1]]
            elif served.reveal == "topk":
                outputs = [{"name": "probabilities", "datatype": "FP32", "shape": [-1, served.k]},
                           {"name": "classes", "datatype": "INT64", "shape": [-1, served.k]}]
            else:
                outputs = [{"name": "label", "datatype": "INT64", "shape": [-1, 1]}]
            (repo / name).mkdir()
            (repo / name / "model-settings.json").write_text(json.dumps({
                "name": name, "implementation": "mlserver_onnx.OnnxRuntime",
                "parameters": {"uri": str(served.onnx), "extra": {"reveal": served.reveal, "k": served.k, "threads": served.threads,
                                                                  "parameters": served.parameters}},
                "inputs": [{"name": i.name, "datatype": _ONNX_TO_OIP[i.type], "shape": shape}],
                "outputs": outputs,
            }))
        exe = Path(sys.executable).with_name("mlserver")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlserver.cli.main"]
        self.log = open(self.folder / "mlserver.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(repo)}
        self.process = subprocess.Popen([*command, "start", str(repo)], cwd=repo, stdout=self.log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_ready(timeout=90.0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(self.models)
        while waiting and time.monotonic() < deadline:  # bounded: at most timeout / 0.2 polls
            if self.process.poll() is not None:
                raise RuntimeError(f"mlserver exited ({self.process.returncode}): {self._log_tail()}")
            for name in list(waiting):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                    conn.request("GET", f"/v2/models/{name}/ready")
                    if conn.getresponse().status == 200:
                        waiting.discard(name)
                    conn.close()
                except OSError:
                    pass
            time.sleep(0.2)
        if waiting:
            raise RuntimeError(f"mlserver not ready after {timeout:.0f} s ({', '.join(waiting)}): {self._log_tail()}")

    def _log_tail(self) -> str:
        self.log.flush()
        return (self.folder / "mlserver.log").read_text(errors="replace")[-2000:]

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self.log.close()


@dataclass
class Seen:
    """One inference request as the proxy saw it."""

    fault: str
    images: int
    hashes: list[str]  # one per image of the request
    delivered: bool  # an answer of 200 went back whole
    started: float
    ended: float = 0.0


class FaultProxy:
    """``http://127.0.0.1:PORT`` in front of ``upstream``; ``faults`` is consumed by inference
    requests in order ("ok" when empty). ``token``: requests without ``Authorization: Bearer TOKEN``
    get 401 (whose body echoes the header they sent, as careless servers do)."""

    def __init__(self, upstream_port: int, faults: list[str] | None = None, token: str | None = None,
                 delay: float = 0.0, max_images: int | None = None, tls: tuple[Path, Path] | None = None):
        self.upstream = upstream_port
        self.faults = list(faults or [])
        self.token = token
        self.delay = delay  # added to every inference request (to see concurrency)
        self.max_images = max_images  # a request of more images is refused as too large (413)
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        # "hang" holds a request until the proxy closes: no answer however long the client waits, so a
        # client timeout is tested with a generous one, not with a race against a fixed delay
        self._closing = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._handle(self, body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:  # (certificate, key): the proxy speaks HTTPS
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*map(str, tls))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def delivered(self) -> list[Seen]:
        return [s for s in self.seen if s.delivered]

    def _forward(self, method: str, path: str, body: bytes, headers: Any) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=60)
        conn.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data, r.getheader("Content-Type", "application/json")

    def _reply(self, h: Any, status: int, data: bytes, extra: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _handle(self, h: Any, body: bytes) -> None:
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            said = h.headers.get("Authorization", "")
            self._reply(h, 401, json.dumps({"error": f"bad credentials: {said}"}).encode())
            return
        if h.command != "POST" or not h.path.endswith("/infer"):
            status, data, _ = self._forward(h.command, h.path, body, h.headers)
            self._reply(h, status, data)
            return
        images, hashes = _images(body)
        if self.max_images is not None and images > self.max_images:
            self.seen.append(Seen("413", images, hashes, False, time.monotonic(), time.monotonic()))
            self._reply(h, 413, b'{"error": "request entity too large"}')
            return
        with self._lock:
            fault = self.faults.pop(0) if self.faults else "ok"
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        seen = Seen(fault, images, hashes, delivered=False, started=time.monotonic())
        with self._lock:  # recorded before the answer goes out: the client may read `seen` as soon as it has it
            self.seen.append(seen)
        try:
            self._inject(h, body, fault, seen)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            seen.delivered = False
        finally:
            seen.ended = seen.ended or time.monotonic()
            with self._lock:
                self.in_flight -= 1

    def _inject(self, h: Any, body: bytes, fault: str, seen: Seen) -> None:
        kind, _, arg = fault.partition(":")
        if self.delay:
            time.sleep(self.delay)
        if kind == "hang":  # no answer until the proxy closes (the client gives up first)
            self._closing.wait()
            h.close_connection = True
            return
        if kind == "drop_before":  # the server never sees it
            h.close_connection = True
            return
        if kind == "status":
            self._reply(h, int(arg), b'{"error": "injected"}')
            return
        if kind == "429":
            seen.ended = time.monotonic()  # the wait that Retry-After asks for starts once the answer is out
            self._reply(h, 429, b'{"error": "slow down"}', {"Retry-After": arg})
            return
        if kind == "delay":  # longer than the client waits: the answer goes nowhere
            time.sleep(float(arg))
        status, data, _ = self._forward("POST", h.path, body, h.headers)
        if kind == "drop_after":  # the server answered; the client never hears it
            h.close_connection = True
            return
        if kind == "malformed":
            data = b"<html>502 Bad Gateway</html>"
        elif kind == "wrong_shape":
            answer = json.loads(data)
            for o in answer["outputs"]:
                o["shape"] = [o["shape"][0], o["shape"][1] - 1]
                o["data"] = np.asarray(o["data"]).reshape(o["shape"][0], -1)[:, :-1].ravel().tolist()
            data = json.dumps(answer).encode()
        seen.delivered = status == 200 and kind == "ok"  # set before the client can see the answer
        self._reply(h, status, data)


def _images(body: bytes) -> tuple[int, list[str]]:
    """How many images a request holds and a hash of each."""
    request = json.loads(body)
    tensor = request["inputs"][0]
    data = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"][0], -1)
    return len(data), [hashlib.sha1(row.tobytes()).hexdigest() for row in data]
