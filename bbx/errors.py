"""Errors that bbx reports to the user as one line, never as a traceback, one class per cause."""

from __future__ import annotations

import sys
from typing import Callable


class BbxError(Exception):
    """Bad input: a broken model, an unreadable image, a wrong option.

    The CLI prints ``str(err)`` on one line and exits with ``exit_code``.
    """

    exit_code = 2


class ModelError(BbxError):
    """The ONNX file cannot be opened or is not an image classifier."""


class ImageError(BbxError):
    """The image cannot be read or decoded."""


class OptionError(BbxError):
    """An option has a wrong value (target, budget, method ...)."""


class OutputError(BbxError):
    """The output folder or a file in it cannot be written, or holds work that must not be mixed."""


class EndpointError(ModelError):
    """An inference endpoint cannot be reached, refuses bbx, or answers what is not a classifier's."""


class TooLargeError(EndpointError):
    """The endpoint refused a request as too large (HTTP 413): fewer images per request may pass.
    ``share``: the part of the request that its stated limit takes (a gRPC server says its limit in
    bytes), None when it does not say."""

    def __init__(self, message: str, share: float | None = None):
        super().__init__(message)
        self.share = share


class BudgetError(EndpointError):
    """The hard cap on images an endpoint may answer (``--max-answered``) would be passed."""


def exit_on_error(main: Callable[[], object], prog: str) -> None:
    """Run a script's ``main`` so that bad input ends as in the CLI: one line and ``exit_code``.

    The scripts in ``tools/`` take models and photos too; a traceback there hides the one line
    that matters.
    """
    try:
        main()
    except BbxError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
