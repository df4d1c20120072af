"""Untrusted text made safe for a terminal: class names, input and output names, file names.

A model's metadata, a sidecar, a labels file or a file name can hold escape sequences (clear the
screen, set the window title) or a newline that forges a result line. Everything the CLI prints
from such a source goes through :func:`shown`, which keeps printable text and writes every
control, format or separator character as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``).
"""

from __future__ import annotations

import unicodedata
from typing import Any

_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi/format, surrogates, unassigned, line breaks


def shown(value: Any) -> str:
    """``str(value)`` with every character a terminal could act on escaped."""
    text = str(value)
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
