"""The report's plots, drawn by matplotlib (Agg, no display) as self-contained SVG files.

Text is drawn as paths, so an SVG needs no font and fetches nothing; ids are salted with a fixed
string so that a report redrawn from the same records is byte for byte the same.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "bbx-audit", "font.size": 9,
                                "axes.spines.top": False, "axes.spines.right": False})
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def _phi_axis(ax: Any) -> None:
    """φ is at most 100 but unbounded below (a sure class that drops): linear within ±10, log beyond,
    so that one collapse does not flatten every other point."""
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel("φ (%), symlog")


def confidence_histogram(confidences: Sequence[float], path: Path) -> Path:
    """The top-1 probability of each photo before any blur."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    ax.hist(confidences, bins=np.linspace(0, 1, 21), color="#4a6fa5", edgecolor="white")
    ax.set_xlabel("top-1 probability")
    ax.set_ylabel("photos")
    ax.set_xlim(0, 1)
    return _save(fig, path)


def phi_by_method(phis: dict[str, Sequence[float]], path: Path) -> Path:
    """φ of every explanation (all seeds), one box and its points per method."""
    plt = _pyplot()
    methods = list(phis)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods), 2.6))
    data = [np.asarray([v for v in phis[m] if np.isfinite(v)]) for m in methods]
    ax.boxplot(data, showfliers=False, widths=0.5)
    jitter = np.random.default_rng(0)
    for i, vals in enumerate(data, 1):
        ax.scatter(i + jitter.uniform(-0.15, 0.15, len(vals)), vals, s=8, alpha=0.6, color="#c0504d", zorder=3)
    ax.set_xticks(range(1, len(methods) + 1), methods)
    _phi_axis(ax)
    ax.axhline(0, color="grey", lw=0.6)
    return _save(fig, path)


def insertion_curves(curves: dict[str, tuple[Sequence[float], np.ndarray]], path: Path) -> Path:
    """Mean φ after blurring the top a% of each method's heatmap (hard), with a 95% interval band.

    ``curves``: method -> (areas, φ per explanation and area, shape (n, len(areas))).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    for method, (areas, values) in curves.items():
        vals = np.asarray(values, dtype=np.float64)
        mean = np.nanmean(vals, axis=0)
        n = np.sum(np.isfinite(vals), axis=0)
        half = 1.96 * np.nanstd(vals, axis=0, ddof=1) / np.sqrt(n) if vals.shape[0] > 1 else np.zeros_like(mean)
        style = {"random": ":", "occlusion": "--"}.get(method, "-")
        ax.plot(areas, mean, style, marker="o", ms=3, label=method)
        ax.fill_between(areas, mean - half, mean + half, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(list(next(iter(curves.values()))[0]) if curves else [])
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}%")
    ax.set_xlabel("blurred area (top of the heatmap)")
    ax.set_ylabel("mean φ (%)")
    ax.axhline(0, color="grey", lw=0.6)
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)


def confidence_vs_phi(points: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path) -> Path:
    """φ against the top-1 probability before the blur, per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.8, 2.6))
    for method, (conf, phis) in points.items():
        ax.scatter(conf, phis, s=10, alpha=0.7, label=method)
    ax.set_xlabel("top-1 probability before")
    _phi_axis(ax)
    ax.set_xlim(0, 1)
    ax.axhline(0, color="grey", lw=0.6)
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)
