"""The method options of the commands that explain, made from :class:`~bbx.config.ExplainConfig`'s
fields: each field's help is in its metadata, so a field added there is an option of ``bbx explain``
and ``bbx evaluate`` at once, with one text.

Every option defaults to unset: only what is given overrides the config, and the registry refuses
an option the method does not read.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import fields
from typing import Any, Callable, Optional

import typer

from ..config import ExplainConfig

_TYPES = {"int": int, "float": float, "str": str}


def method_fields(exclude: tuple[str, ...] = ()) -> list[Any]:
    """The fields that are options: every one with help text, less ``exclude``."""
    return [f for f in fields(ExplainConfig) if "help" in f.metadata and f.name not in exclude]


def method_options(exclude: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one ``--NAME`` option per :class:`ExplainConfig` field (less ``exclude``),
    passed to it as ``method_opts``: the fields given, strings trimmed and lower-cased."""
    chosen = method_fields(exclude)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(f)
        params = [p for p in sig.parameters.values() if p.name != "method_opts"]
        params += [inspect.Parameter(c.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[_type(c)],
                                     default=typer.Option(None, "--" + c.name.replace("_", "-"),
                                                          help=c.metadata["help"]))
                   for c in chosen]

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {c.name: kwargs.pop(c.name) for c in chosen}
            opts = {k: v.strip().lower() if isinstance(v, str) else v for k, v in given.items() if v is not None}
            return f(*args, method_opts=opts, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _type(f: Any) -> type:
    """An option's type from the field's annotation (``int | None`` is an int that may be unset)."""
    return _TYPES[str(f.type).split("|")[0].strip()]
