"""HTTP to an inference endpoint, built for a real network and a real bill.

Only the standard library (``http.client``): one keep-alive connection per worker thread, at most
``concurrency`` requests in flight, at most ``max_rps`` request starts per second, retries with
exponential backoff on timeouts, dropped connections, 429 and 5xx (a ``Retry-After`` header wins
over the backoff), and a hard cap on answered images that no retry or thread can pass: images are
reserved before a request goes out and given back only when it finally fails.

Credentials (:mod:`.credentials`) go in one header and nowhere else: no error or counter holds
them, and any text the server sends back is scrubbed of them before it is shown.
"""

from __future__ import annotations

import email.utils
import http.client
import random
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..errors import BudgetError, EndpointError, OptionError, TooLargeError
from .credentials import Credentials
from .limits import Deadline, read_capped

#: answers worth another try: the server or something on the way was busy or broken for a moment
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class ClientConfig:
    """How bbx talks to an endpoint; every field has a CLI flag (``bbx explain --help``)."""

    timeout: float = 60.0  # seconds for one whole request (connect, send, the whole answer), per try
    retries: int = 5  # further tries of one request after a timeout, a drop, 429 or 5xx
    backoff: float = 0.5  # first wait before a retry, doubled each time (with up to 10 % jitter)
    max_wait: float = 120.0  # longest single wait, Retry-After included; a longer one is an error
    concurrency: int = 2  # requests in flight at once
    max_rps: float | None = None  # request starts per second, retries included
    max_answered: int | None = None  # hard cap on images the endpoint answers for this process
    verify: bool = True  # TLS certificates checked (https only)
    ca_file: str | None = None  # a CA bundle for a private certificate authority

    def validate(self) -> "ClientConfig":
        checks = [
            (0 < self.timeout <= 3600, f"--timeout must be in (0, 3600] seconds, not {self.timeout}"),
            (0 <= self.retries <= 100, f"--retries must be in 0..100, not {self.retries}"),
            (0 <= self.backoff <= 600, f"backoff must be in 0..600 seconds, not {self.backoff}"),
            (0 < self.max_wait <= 3600, f"--max-wait must be in (0, 3600] seconds, not {self.max_wait}"),
            (1 <= self.concurrency <= 64, f"--concurrency must be in 1..64, not {self.concurrency}"),
            (self.max_rps is None or 0 < self.max_rps <= 10_000, f"--max-rps must be in (0, 10000], not {self.max_rps}"),
            (self.max_answered is None or self.max_answered >= 1,
             f"--max-answered must be at least 1, not {self.max_answered}"),
            (self.ca_file is None or Path(self.ca_file).is_file(), f"--ca-file {self.ca_file} is not a file"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise OptionError("; ".join(bad))
        return self


@dataclass
class Traffic:
    """What the endpoint was sent and answered (every report carries it)."""

    answered: int = 0  # images in answered requests
    requests: int = 0  # inference requests answered (the metadata's GET is not counted)
    retries: int = 0  # requests sent again
    failures: int = 0  # tries that failed: timeouts, drops, 429, 5xx
    bytes_sent: int = 0  # request bodies, retries included
    bytes_received: int = 0  # answer bodies
    cached: int = 0  # images asked for again and answered from bbx's cache, not sent

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Client:
    """Requests to one server (``scheme://host:port``), counted in :attr:`traffic`."""

    def __init__(self, scheme: str, host: str, port: int, config: ClientConfig | None = None,
                 credentials: Credentials | None = None):
        self.scheme, self.host, self.port = scheme, host, port
        self.config = (config or ClientConfig()).validate()
        self.credentials = credentials
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._reserved = 0
        self._next_start = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._ssl = None
        if scheme == "https":
            self._ssl = ssl.create_default_context(cafile=self.config.ca_file)
            if not self.config.verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    @property
    def where(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    # -- requests ----------------------------------------------------------------------------
    def get(self, path: str) -> bytes:
        """One GET (metadata): connection refused and DNS failures end at once, the rest is retried."""
        return self._request("GET", path, b"", 0)

    def post(self, path: str, body: bytes, images: int, extra: dict[str, str] | None = None) -> bytes:
        """One inference request of ``images`` images; within the hard cap or :class:`BudgetError`.
        ``extra``: headers of the body's form (a binary body's Content-Type and JSON length)."""
        self._reserve(images)
        try:
            answer = self._request("POST", path, body, images, extra)
        except BaseException:
            with self._lock:
                self._reserved -= images
            raise
        with self._lock:
            self._reserved -= images
            self.traffic.answered += images
            self.traffic.requests += 1
        return answer

    def cap_more(self, images: int) -> None:
        """From now on at most ``images`` more answered images (under any cap already set)."""
        with self._lock:
            cap = self.traffic.answered + self._reserved + images
            old = self.config.max_answered
            self.config = replace(self.config, max_answered=cap if old is None else min(old, cap))

    def map(self, fn: Callable[[T], bytes], items: Sequence[T]) -> list[bytes]:
        """``fn`` over ``items`` with at most ``concurrency`` in flight, answers in order. The first
        failure is raised once the requests already in flight have ended; none is started after it."""
        if len(items) <= 1 or self.config.concurrency == 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="bbx-endpoint")
        stop = threading.Event()

        def guarded(item: T) -> bytes | None:
            if stop.is_set():
                return None
            try:
                return fn(item)
            except BaseException:
                stop.set()
                raise

        futures = [self._pool.submit(guarded, item) for item in items]
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]  # type: ignore[misc]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- internals -----------------------------------------------------------------------------
    def _reserve(self, images: int) -> None:
        cap = self.config.max_answered
        with self._lock:
            if cap is not None and self.traffic.answered + self._reserved + images > cap:
                raise BudgetError(f"the endpoint may answer at most {cap} images (--max-answered) and "
                                  f"{self.traffic.answered} are answered; {images} more would pass the cap")
            self._reserved += images

    def _request(self, method: str, path: str, body: bytes, images: int, extra: dict[str, str] | None = None) -> bytes:
        """One call, tried up to ``retries`` + 1 times: each try (:meth:`_try`) gives the answer, or
        why it failed and how long the server asks to wait (None: back off), or raises for what no
        retry mends."""
        tries = self.config.retries + 1
        last = ""
        for attempt in range(tries):
            if attempt:
                with self._lock:
                    self.traffic.retries += 1
            self._pace()
            answer, last, wait = self._try(method, path, body, extra)
            if answer is not None:
                return answer
            with self._lock:
                self.traffic.failures += 1
            if attempt + 1 < tries:
                if wait is None:
                    wait = min(self.config.max_wait, self.config.backoff * 2 ** attempt * (1 + 0.1 * random.random()))
                time.sleep(wait)
        what = f"{images} images" if method == "POST" else "metadata"
        raise EndpointError(f"{self.where} failed {tries} times ({what}); last: {last}")

    def _try(self, method: str, path: str, body: bytes,
             extra: dict[str, str] | None) -> tuple[bytes | None, str, float | None]:
        """One HTTP request: (the answer, "", None), or (None, why it failed, the wait asked for)."""
        try:
            status, headers, data = self._send(method, path, body, extra)
        except (socket.timeout, TimeoutError):
            return None, f"no answer within {self.config.timeout:g} s", None
        except ConnectionRefusedError:
            if method == "GET":
                raise EndpointError(f"cannot connect to {self.where}: connection refused "
                                    "(is the server running, on this port?)") from None
            return None, "connection refused", None
        except socket.gaierror:
            raise EndpointError(f"cannot resolve host {self.host!r} (DNS): check the URL") from None
        except ssl.SSLCertVerificationError as exc:
            raise EndpointError(f"TLS certificate of {self.where} not trusted ({exc.verify_message}); "
                                "give its CA with --ca-file") from None
        except ssl.SSLError as exc:
            raise EndpointError(f"TLS with {self.where} failed: {exc.reason or type(exc).__name__}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            return None, f"connection dropped ({type(exc).__name__})", None
        with self._lock:
            self.traffic.bytes_received += len(data)
        if 200 <= status < 300:
            return data, "", None
        if status == 413:  # the caller may send fewer images: a failed try, not the end
            with self._lock:
                self.traffic.failures += 1
            raise TooLargeError(self._refusal(status, path, data))
        if status not in RETRY_STATUS:
            raise EndpointError(self._refusal(status, path, data))
        wait = _retry_after(headers.get("retry-after"))
        if wait is not None and wait > self.config.max_wait:
            raise EndpointError(f"{self.where} asks to wait {wait:.0f} s (Retry-After after HTTP {status}), "
                                f"more than --max-wait {self.config.max_wait:g} s")
        return None, f"HTTP {status}", wait

    def _pace(self) -> None:
        """Wait for this request's start slot under ``max_rps`` (slots are handed out in order)."""
        if not self.config.max_rps:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.config.max_rps
        if start > now:
            time.sleep(start - now)

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.config.timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.config.timeout)
            self._local.conn = conn
        return conn

    def _send(self, method: str, path: str, body: bytes,
              extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": "application/json", "User-Agent": "bbx"}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        if self.credentials is not None:
            headers.update(self.credentials.headers())
        conn = self._connection()
        # --timeout bounds the whole request: a socket timeout bounds only each read, and a server
        # that drips a byte at a time would pass every one of them
        deadline = Deadline(conn, self.config.timeout)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            with self._lock:
                self.traffic.bytes_sent += len(body)
            response = conn.getresponse()
            data = read_capped(response, self.where)
            answer = {k.lower(): v for k, v in response.getheaders()}
            deadline.check()
            if response.will_close:
                self._drop()
            return response.status, answer, data
        except BaseException as exc:
            self._drop()  # a half-read answer leaves the connection in an unknown state
            if deadline.expired and not isinstance(exc, (EndpointError, KeyboardInterrupt)):
                raise socket.timeout("whole-request deadline") from None
            raise
        finally:
            deadline.cancel()

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def scrub(self, text: str) -> str:
        """``text`` without the credential (servers sometimes echo what they refused)."""
        return text if self.credentials is None else self.credentials.scrub(text)

    def _refusal(self, status: int, path: str, data: bytes) -> str:
        """One line for an answer that no retry changes."""
        said = _first_line(data, self.scrub)
        tail = f": {said}" if said else ""
        if status in (401, 403):
            how = "check the credential (--auth-env/--auth-file)" if self.credentials else "give one with --auth-env or --auth-file"
            return f"{self.where} refused bbx (HTTP {status} {'unauthorised' if status == 401 else 'forbidden'}); {how}"
        if status == 404:
            return f"{self.where}{path} not found (HTTP 404): check the model name and version in the URL{tail}"
        if status == 413:
            return f"{self.where} refused a request as too large (HTTP 413): lower --max-batch{tail}"
        return f"{self.where}{path} answered HTTP {status}{tail}"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _first_line(data: bytes, scrub: Callable[[str], str]) -> str:
    text = scrub(data[:4096].decode("utf-8", errors="replace")).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:200]
