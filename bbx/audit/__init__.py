"""``bbx audit``: an evaluation over a folder of photos, reported as a page a person opens offline."""

from .run import DEFAULT_METHODS, Audit, audit

__all__ = ["Audit", "DEFAULT_METHODS", "audit"]
