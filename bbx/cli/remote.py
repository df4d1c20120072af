"""The command line's endpoint options and how a model argument that is a URL is opened.

Every command that opens a model takes these options (:func:`bbx.cli.app.model_options`); they are
refused with a local file, and the local-only ones (``--device``, ``--cuda-option``) with a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import OptionError
from ..remote.client import ClientConfig

_HELP = "Endpoint"


def option_specs() -> dict[str, tuple[Any, Any]]:
    """The endpoint options, fresh per command (Typer keeps state on them): name -> (type, option)."""
    return {
        "auth_env": (Optional[str], typer.Option(None, "--auth-env", help=f"{_HELP}: environment variable holding "
                     "the credential (a bearer token, or the value of --auth-header)")),
        "auth_file": (Optional[Path], typer.Option(None, "--auth-file", help=f"{_HELP}: file holding the credential")),
        "auth_header": (Optional[str], typer.Option(None, "--auth-header", help=f"{_HELP}: header the credential "
                        "goes in (default Authorization: Bearer ...)")),
        "max_rps": (Optional[float], typer.Option(None, "--max-rps", help=f"{_HELP}: at most this many requests per "
                    "second")),
        "concurrency": (Optional[int], typer.Option(None, "--concurrency", help=f"{_HELP}: requests in flight at once "
                        f"(default {ClientConfig.concurrency})")),
        "retries": (Optional[int], typer.Option(None, "--retries", help=f"{_HELP}: further tries after a timeout, a "
                    f"dropped connection, 429 or 5xx (default {ClientConfig.retries}; Retry-After is honoured)")),
        "max_wait": (Optional[float], typer.Option(None, "--max-wait", help=f"{_HELP}: longest wait before a retry, "
                     f"Retry-After included (default {ClientConfig.max_wait:g} s)")),
        "max_answered": (Optional[int], typer.Option(None, "--max-answered", help=f"{_HELP}: hard cap on images the "
                         "endpoint answers in this command (explain: --budget sets it)")),
        "ca_file": (Optional[Path], typer.Option(None, "--ca-file", help=f"{_HELP}: CA bundle to verify the server's "
                    "TLS certificate")),
        "insecure": (bool, typer.Option(False, "--insecure", help=f"{_HELP}: do not verify the TLS certificate")),
    }


def open_endpoint(url: str, *, device: str, cuda_option: Optional[list[str]], preprocess: dict[str, Any],
                  preset: Optional[str], spec_file: Optional[Path], output: Optional[str], labels: Optional[Path],
                  max_batch: Optional[int], remote: dict[str, Any]) -> Any:
    from ..model import open_model
    from ..remote import ClientConfig, Credentials

    if device.lower() != "cpu":
        raise OptionError(f"--device {device} does nothing for an endpoint: the server decides where the model runs")
    if cuda_option:
        raise OptionError("--cuda-option does nothing for an endpoint: the server decides how the model runs")
    config = {k: remote[k] for k in ("max_rps", "concurrency", "timeout", "retries", "max_wait", "max_answered")
              if remote[k] is not None}
    config["verify"] = not remote["insecure"]
    if remote["ca_file"] is not None:
        config["ca_file"] = str(remote["ca_file"])
    creds = Credentials.from_sources(remote["auth_env"], remote["auth_file"], remote["auth_header"])
    return open_model(url, preprocess_overrides=preprocess, preset=preset, spec_file=spec_file, output=output,
                              labels=labels, max_batch=max_batch, client=ClientConfig(**config), credentials=creds)


def refuse_with_file(remote: dict[str, Any]) -> None:
    """An endpoint option given with a local model file: refused, never dropped."""
    given = [name for name, value in remote.items() if value not in (None, False)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise OptionError(f"{flags} {'is' if len(given) == 1 else 'are'} for endpoints (http(s)://..., grpc(s)://...), "
                          "not for a local model file")


def traffic_line(traffic: dict[str, int]) -> str:
    """What the endpoint was sent and answered, in one line (never a credential)."""
    return (f"endpoint: {traffic['answered']} images answered in {traffic['requests']} requests, "
            f"{traffic['retries']} retries, {traffic['failures']} failures, {traffic['cached']} from the cache, "
            f"{traffic['bytes_sent'] / 1e6:.1f} MB sent, {traffic['bytes_received'] / 1e6:.1f} MB received")
