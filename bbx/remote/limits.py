"""What bounds one request to an endpoint, whatever the server does: a deadline for the whole
request (a socket timeout bounds each read only, and a server dripping a byte every half second
passes every one of them) and a cap on the answer's size, checked while it is read."""

from __future__ import annotations

import http.client
import socket
import threading

from ..errors import EndpointError

#: the largest answer bbx reads: 32 images' scores over 1,000 classes are under 1 MB of JSON
MAX_ANSWER_BYTES = 64 * 2**20


class Deadline:
    """Closes a connection's socket when ``seconds`` have passed, whatever it is waiting for."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.expired = False
        self._conn = conn
        self._done = threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        while not self._done.is_set():
            sock = self._conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read at once
                except OSError:
                    pass
                return
            self._done.wait(0.05)  # still connecting (bounded by the socket timeout): close it once it is open

    def check(self) -> None:
        if self.expired:
            raise socket.timeout("whole-request deadline")

    def cancel(self) -> None:
        self._done.set()
        self._timer.cancel()


def read_capped(response: http.client.HTTPResponse, where: str) -> bytes:
    """The answer's body, or one line once it passes ``MAX_ANSWER_BYTES`` (never read whole first)."""
    declared = response.getheader("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise EndpointError(f"{where} announced an answer of {int(declared):,} bytes, above bbx's limit of "
                            f"{MAX_ANSWER_BYTES:,}")
    chunks, total = [], 0
    while True:
        chunk = response.read(min(1 << 20, MAX_ANSWER_BYTES + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_ANSWER_BYTES:
            raise EndpointError(f"{where} sent an answer of more than {MAX_ANSWER_BYTES:,} bytes, bbx's limit")
