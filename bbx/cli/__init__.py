"""The ``bbx`` command: inspect, devices, predict, explain, evaluate, audit.

Every bad input ends in one line on stderr and exit code 2, never a traceback. Each command lives
in its own module and registers itself on the shared app (:mod:`.app`) when imported here.
"""

from __future__ import annotations

import sys
import warnings
from typing import Optional

import typer

from ..errors import BbxError
from . import audit, evaluate, explain, model_commands  # noqa: F401  each registers its commands on the app
from .app import ARGV, app, fail, warn_line

__all__ = ["app", "main"]

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: one line and exit code 2 for bad input, never a traceback."""
    warnings.showwarning = warn_line
    ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = evaluate.ray_argv(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, prog_name="bbx", standalone_mode=False)
    except BbxError as exc:
        fail(str(exc), exc.exit_code)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        fail("interrupted", INTERRUPTED)
    except Exception as exc:  # usage errors and anything unforeseen: still one line
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click/typer usage error
            msg = exc.format_message()
            if not msg.strip():  # "no arguments: show help" carries no message
                raise SystemExit(exc.exit_code) from None
            fail(msg, 2)
        if type(exc).__name__ == "Abort":
            fail("aborted", 1)
        fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    if code == INTERRUPTED:  # typer turns Ctrl-C inside a command into this exit code
        fail("interrupted", INTERRUPTED)
    if isinstance(code, int) and code:
        raise SystemExit(code)
