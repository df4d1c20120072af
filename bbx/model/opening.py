"""One way to open a model by name: a path to an ONNX file, or an address whose scheme a kind of
remote black box registered (``http(s)://`` by :mod:`bbx.remote`).

The model package knows no remote kind: each registers its schemes here (:func:`register_scheme`),
so a URL opens through the same call as a file without this package importing its opener.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .onnx_classifier import OnnxClassifier
from .protocol import BlackBox

Opener = Callable[..., BlackBox]
_SCHEMES: dict[str, Opener] = {}


def register_scheme(schemes: tuple[str, ...], opener: Opener) -> None:
    """``opener(address, **options)`` opens every address that starts with ``scheme://``."""
    for scheme in schemes:
        _SCHEMES[scheme.lower()] = opener


def scheme_of(source: str | Path) -> str | None:
    """The registered scheme ``source`` is an address of, else None (a file)."""
    head, sep, _ = str(source).partition("://")
    return head.lower() if sep and head.lower() in _SCHEMES else None


def open_model(source: BlackBox | str | Path, **options: Any) -> BlackBox:
    """``source`` opened as a black box: a black box is returned as it is (it takes no options),
    an address by the opener of its scheme, anything else as an ONNX file (:class:`OnnxClassifier`)."""
    if not isinstance(source, (str, Path)):
        if options:
            raise TypeError(f"options {sorted(options)} open a model by name; this one is open already")
        return source
    scheme = scheme_of(source)
    if scheme is not None:
        return _SCHEMES[scheme](str(source), **options)
    return OnnxClassifier(source, **options)
