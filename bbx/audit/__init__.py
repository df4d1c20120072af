"""``bbx audit``: an evaluation over a folder of photos, reported as a page a person opens offline."""

from .run import Audit, audit

__all__ = ["Audit", "audit"]
