"""A credential for an endpoint: one header, read from an environment variable or a file, never
from the command line (shell history, ``ps``), and never printed: its ``repr`` hides it and
:meth:`Credentials.scrub` takes it out of any text a server sends back."""

from __future__ import annotations

import os
from pathlib import Path

from .._io import read_regular
from ..errors import OptionError

MAX_CREDENTIAL_BYTES = 64 * 1024  # a token or a header value; anything larger is not a credential


class Credentials:
    """One header that authenticates bbx: ``Authorization: Bearer TOKEN`` or ``NAME: VALUE``.

    Read from an environment variable or a file, never from the command line (shell history, ``ps``).
    """

    def __init__(self, secret: str, header: str = "Authorization"):
        secret = secret.strip()
        if not secret:
            raise OptionError("the credential is empty")
        if any(c in secret for c in "\r\n\0") or any(c in header for c in "\r\n\0: "):
            raise OptionError("the credential or its header name holds a line break or a separator")
        if not (secret + header).isascii() or not (secret + header).isprintable():
            # said without the character or its place: either would reveal part of the secret
            raise OptionError("the credential or its header name holds a character outside printable ASCII, "
                              "which an HTTP header cannot carry")
        self.header = header
        self._secret = secret
        lower = secret.lower()
        scheme = header.lower() == "authorization" and not lower.startswith(("bearer ", "basic "))
        self._value = f"Bearer {secret}" if scheme else secret

    @classmethod
    def from_sources(cls, env: str | None = None, file: str | Path | None = None,
                     header: str | None = None) -> "Credentials | None":
        if env and file:
            raise OptionError("give the credential with --auth-env or --auth-file, not both")
        if env:
            if env not in os.environ:
                raise OptionError(f"--auth-env {env}: no such environment variable is set")
            secret = os.environ[env]
        elif file:
            try:  # a regular file of at most 64 KiB: a FIFO or /dev/zero is refused before it is read
                secret = read_regular(file, MAX_CREDENTIAL_BYTES, "--auth-file").decode("utf-8")
            except UnicodeDecodeError:
                raise OptionError(f"cannot read --auth-file {file}: not UTF-8 text") from None
        else:
            if header:
                raise OptionError("--auth-header needs a credential: --auth-env or --auth-file")
            return None
        return cls(secret, header or "Authorization")

    def headers(self) -> dict[str, str]:
        return {self.header: self._value}

    def scrub(self, text: str) -> str:
        """``text`` without the secret (servers sometimes echo what they refused)."""
        return text.replace(self._value, "***").replace(self._secret, "***")

    def __repr__(self) -> str:
        return f"Credentials(header={self.header!r}, value=***)"

    __str__ = __repr__
