"""Ending a model call that runs too long or is interrupted.

onnxruntime keeps the calling thread for the whole of a call and Python runs its signal handlers
only between bytecodes, so Ctrl-C would wait for a slow graph (a long ``Loop``) to finish. One
watcher thread per process ends the call in flight through its ``RunOptions.terminate``: on a
signal (Python writes each caught signal's number to a wakeup pipe this module owns) or when the
call's deadline passes. Without a time limit a call costs no more than setting two attributes.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from typing import Any

from ..errors import ModelError, OptionError
from .providers import first_line


class Limits:
    """Time limits of a model's calls: ``call_s`` for each call, ``run_s`` for all of them from now."""

    def __init__(self, call_s: float | None = None, run_s: float | None = None):
        for name, value in (("timeout", call_s), ("run timeout", run_s)):
            if value is not None and not 0 < value < 10**7:
                raise OptionError(f"{name} must be a number of seconds in (0, 10^7), not {value}")
        self.call_s, self.run_s = call_s, run_s
        self.run_deadline = None if run_s is None else time.monotonic() + run_s

    def deadline(self) -> tuple[float | None, str]:
        """The latest time the next call may end, and the option that sets it."""
        now = time.monotonic()
        if self.run_deadline is not None and now >= self.run_deadline:
            raise ModelError(f"the run took longer than --run-timeout {self.run_s:g} s")
        ends = []
        if self.call_s is not None:
            ends.append((now + self.call_s, f"a model call took longer than --timeout {self.call_s:g} s"))
        if self.run_deadline is not None:
            ends.append((self.run_deadline, f"the run took longer than --run-timeout {self.run_s:g} s"))
        return min(ends) if ends else (None, "")


class _Watcher:
    """The one watcher thread: ends the registered call on a signal or at its deadline."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.signals = False
        if threading.current_thread() is threading.main_thread():
            try:
                old = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            except (ValueError, OSError):
                old = -2
            if old == -1:
                self.signals = True
            elif old >= 0:  # someone else (an event loop) owns the wakeup fd: leave it to them
                signal.set_wakeup_fd(old)
        self.options: Any = None  # the RunOptions of the call in flight
        self.ends: float | None = None
        self.why = ""  # why the watcher ended the call in flight ("" while it did not)
        self._thread = threading.Thread(target=self._watch, name="bbx-model-watchdog", daemon=True)
        self._thread.start()

    def begin(self, options: Any, ends: float | None) -> None:
        self.why = ""
        self.options, self.ends = options, ends
        if ends is not None:
            self._poke()

    def end(self) -> str:
        self.options, self.ends = None, None
        return self.why

    def _poke(self) -> None:
        try:
            os.write(self._write, b"\0")  # not a signal number: only "look at the deadline again"
        except (BlockingIOError, OSError):
            pass

    def _watch(self) -> None:
        while True:
            ends = self.ends
            wait = None if ends is None else max(0.0, ends - time.monotonic())
            ready, _, _ = select.select([self._read], [], [], wait)
            signalled = False
            if ready:
                try:
                    signalled = any(b != 0 for b in os.read(self._read, 512))
                except (BlockingIOError, OSError):
                    pass
            options = self.options
            if options is None:
                continue
            if signalled:
                self.why = "interrupted"
                options.terminate = True
            elif self.ends is not None and time.monotonic() >= self.ends:
                self.why = "timeout"
                options.terminate = True
                self.ends = None


_WATCHER: _Watcher | None = None
_LOCK = threading.Lock()


def watcher() -> _Watcher:
    global _WATCHER
    with _LOCK:
        if _WATCHER is None:
            _WATCHER = _Watcher()
        return _WATCHER


class Guard:
    """``with guard.call():`` around one onnxruntime call, whose ``RunOptions`` is :attr:`options`."""

    def __init__(self, limits: Limits | None = None):
        import onnxruntime

        self.limits = limits or Limits()
        self.options = onnxruntime.RunOptions()
        self.watcher = watcher()

    def run(self, call: Any, what: str) -> Any:
        """``call(options)``, ended early on Ctrl-C (KeyboardInterrupt) or at the deadline (ModelError)."""
        ends, reason = self.limits.deadline()
        self.options.terminate = False
        self.watcher.begin(self.options, ends)
        try:
            return call(self.options)
        except Exception as exc:
            why = self.watcher.end()
            if why == "interrupted":
                raise KeyboardInterrupt from None
            if why == "timeout":
                raise ModelError(reason) from None
            raise ModelError(f"the model failed on {what}: {first_line(exc)}") from None
        finally:
            self.watcher.end()
