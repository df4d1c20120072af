"""Explanation methods, one module each, all with the call shape of :func:`bbx.explain`."""
