"""The levers (bbx.methods does not import them) registered for one test module only."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def registered(*modules: str) -> Iterator[None]:
    """Import ``modules`` (importing a lever registers it, and whatever it imports) and unregister, at
    the end, every method they registered: left registered, a lever would change other tests' messages
    that list the methods reading an option."""
    from bbx.methods import Method, names, register, unregister

    before = set(names())
    for name in modules:
        module = importlib.import_module(name)
        for method in [v for v in vars(module).values() if isinstance(v, Method)]:
            if method.name not in names():  # imported by an earlier module, then unregistered
                register(method)
    try:
        yield
    finally:
        for name in set(names()) - before:
            unregister(name)
