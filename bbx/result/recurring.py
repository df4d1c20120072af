"""Recurring regions: places that are undesirable at the same spot in many photos.

Pure maths on heatmaps already in the model's input coordinates (no model, no files). Each
heatmap is averaged onto a coarse grid (the mask grid: a soft mask has no finer detail), and the
grids' mean is the data set's mean map. A cell of the mean map is high either because many photos
mark that place or because a few photos mark much; the test tells the two apart.

The null keeps each heatmap exactly as it is (its area, its blobs, its values) and moves it: every
photo's grid is shifted circularly by its own random offset, so under the null no place is shared
by the photos beyond chance, and the mean map's maximum is drawn again. ``draws`` such maxima give
a max-statistic test over every cell at once (family-wise, no per-cell correction): a cell is
significant at ``alpha`` where the observed mean exceeds the null maxima's 1 - alpha quantile.
A region is a connected set of significant cells, its extent the half-maximum contour around its
peak (the part of the mean map above half-way from the data set's mean to the peak); its p-value
is ``(1 + #null maxima >= its peak) / (1 + draws)``.

A photo is *involved* in a region when the heatmap's mean inside the region ranks in the top
``involved_level`` of the same region shape at every circular position of that photo: the
photo marks the region more than it marks the rest of itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..defaults import MASK_SIZE

#: Null draws of the max statistic: p-values down to 1/1000.
DRAWS = 999
#: Family-wise level of the max-statistic test, per group of photos tested.
ALPHA = 0.01
#: Fewer photos than this say nothing about recurrence (one heatmap's maximum is shift-invariant).
MIN_PHOTOS = 3
#: Relative difference below which a null draw ties with the data (float32 sums).
TOLERANCE = 1e-5
#: A photo takes part in a region when its mean inside it is in its own top 5 % of positions.
INVOLVED_LEVEL = 0.05


@dataclass(frozen=True)
class Region:
    """One recurring region, in grid cells (``cells``) and as a box ``(row0, row1, col0, col1)``,
    end-exclusive."""

    cells: np.ndarray = field(repr=False)  # bool (G, G)
    peak: float  # the mean map at its peak cell
    background: float  # the mean map's mean: what every cell expects under the null
    p: float
    involved: tuple[int, ...]  # indices of the photos that mark it (see the module's docstring)

    @property
    def box(self) -> tuple[int, int, int, int]:
        rows, cols = np.nonzero(self.cells)
        return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1

    @property
    def area(self) -> float:
        """Share of the image the region covers."""
        return float(self.cells.mean())


@dataclass(frozen=True)
class Scan:
    """What the test saw on one group of photos."""

    photos: int
    mean: np.ndarray = field(repr=False)  # (G, G) mean map
    null_max: np.ndarray = field(repr=False)  # (draws,) the mean map's maximum under the null
    threshold: float  # the null maxima's 1 - alpha quantile
    alpha: float
    regions: tuple[Region, ...]

    @property
    def p_floor(self) -> float:
        """The smallest p-value this many draws can give."""
        return 1.0 / (1 + len(self.null_max))


def to_grid(heatmap: np.ndarray, grid: int = MASK_SIZE) -> np.ndarray:
    """``(H, W)`` heatmap -> ``(grid, grid)`` cell means (cells as even as the size allows; along a
    side of fewer pixels than cells, each cell takes the pixel under its centre)."""
    heat = np.asarray(heatmap, dtype=np.float64)
    return _cells(_cells(heat, grid, 0), grid, 1)


def _cells(heat: np.ndarray, grid: int, axis: int) -> np.ndarray:
    n = heat.shape[axis]
    if n < grid:  # a cell would hold no pixel: its mean would be 0 / 0
        return np.take(heat, ((np.arange(grid) + 0.5) * n / grid).astype(int), axis=axis)
    edges = np.linspace(0, n, grid + 1).round().astype(int)
    shape = [1, 1]
    shape[axis] = grid
    return np.add.reduceat(heat, edges[:-1], axis=axis) / np.diff(edges).reshape(shape)


def to_pixels(cells: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A cell grid at ``size`` pixels, each cell's value over the pixels :func:`to_grid` averaged
    (a bool grid gives a bool mask)."""
    grid_r, grid_c = cells.shape
    rows = np.linspace(0, size[0], grid_r + 1).round().astype(int)
    cols = np.linspace(0, size[1], grid_c + 1).round().astype(int)
    r_of = np.searchsorted(rows, np.arange(size[0]), side="right") - 1
    c_of = np.searchsorted(cols, np.arange(size[1]), side="right") - 1
    return np.asarray(cells)[r_of[:, None], c_of[None, :]]


def shifted_maxima(grids: np.ndarray, draws: int, rng: np.random.Generator, chunk: int = 16) -> np.ndarray:
    """``(draws,)``: the maximum of the mean of ``grids`` after shifting each circularly at random."""
    n, g_r, g_c = grids.shape
    src = grids.astype(np.float32)
    photo = np.arange(n)[:, None, None]
    out = np.empty(draws)
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        dy = rng.integers(0, g_r, size=(k, n))
        dx = rng.integers(0, g_c, size=(k, n))
        for j in range(k):
            rows = (np.arange(g_r)[None, :] - dy[j][:, None]) % g_r
            cols = (np.arange(g_c)[None, :] - dx[j][:, None]) % g_c
            out[start + j] = src[photo, rows[:, :, None], cols[:, None, :]].mean(axis=0).max()
    return out


def involvement(grids: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per photo, the share of circular positions of ``cells`` where the photo's mean is at least
    its mean at ``cells`` itself (1/G² at best: the region is where it marks most)."""
    kernel = np.fft.fft2(np.asarray(cells, dtype=np.float64))
    corr = np.real(np.fft.ifft2(np.fft.fft2(grids) * np.conj(kernel)[None]))  # [i, s]: sum over cells + s
    here = corr[:, 0, 0]
    tol = 1e-9 * np.maximum(1.0, np.abs(corr).max(axis=(1, 2)))
    return (corr >= (here - tol)[:, None, None]).mean(axis=(1, 2))


def scan(grids: np.ndarray, draws: int = DRAWS, alpha: float = ALPHA, seed: int = 0,
         involved_level: float = INVOLVED_LEVEL) -> Scan:
    """Test ``(N, G, G)`` heatmap grids for recurring regions (see the module's docstring)."""
    grids = np.asarray(grids, dtype=np.float64)
    mean = grids.astype(np.float32).mean(axis=0).astype(np.float64)  # as the null's draws sum it
    if len(grids) < MIN_PHOTOS:
        return Scan(len(grids), mean, np.zeros(0), float("inf"), alpha, ())
    null_max = shifted_maxima(grids, draws, np.random.default_rng(seed))
    threshold = float(np.quantile(null_max, 1 - alpha))
    tol = TOLERANCE * max(1.0, float(np.abs(mean).max()))  # a draw equal to the data up to rounding is a tie
    labels, count = ndimage.label(mean > threshold + tol, structure=np.ones((3, 3)))
    background = float(mean.mean())
    regions: list[Region] = []
    for k in range(1, count + 1):
        inside = labels == k
        peak_at = np.unravel_index(np.argmax(np.where(inside, mean, -np.inf)), mean.shape)
        cells = half_maximum(mean, peak_at, background)
        if any((cells & r.cells).any() for r in regions):  # two peaks of one blob: one region
            continue
        peak = float(mean[peak_at])
        p = (1 + int((null_max >= peak - tol).sum())) / (1 + draws)
        share = involvement(grids, cells)
        regions.append(Region(cells, peak, background, p, tuple(int(i) for i in np.nonzero(share <= involved_level)[0])))
    return Scan(len(grids), mean, null_max, threshold, alpha, tuple(sorted(regions, key=lambda r: (r.p, -r.peak))))


def half_maximum(mean: np.ndarray, peak_at: tuple[int, ...], background: float) -> np.ndarray:
    """The connected cells around ``peak_at`` above half-way from ``background`` to the peak."""
    level = background + 0.5 * (mean[peak_at] - background)
    labels, _ = ndimage.label(mean >= level, structure=np.ones((3, 3)))
    return labels == labels[peak_at]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def describe(region: Region, size: tuple[int, int]) -> str:
    """"band at rows 90-130", "band at columns 0-24" or "patch at rows 8-20, columns 8-20" (pixels)."""
    r0, r1, c0, c1 = pixel_box(region, size)
    if c1 - c0 >= 0.8 * size[1]:
        return f"band at rows {r0}-{r1}"
    if r1 - r0 >= 0.8 * size[0]:
        return f"band at columns {c0}-{c1}"
    return f"patch at rows {r0}-{r1}, columns {c0}-{c1}"


def pixel_box(region: Region, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The region's box in input pixels ``(row0, row1, col0, col1)``, end-exclusive."""
    g_r, g_c = region.cells.shape
    r0, r1, c0, c1 = region.box
    rows = np.linspace(0, size[0], g_r + 1).round().astype(int)
    cols = np.linspace(0, size[1], g_c + 1).round().astype(int)
    return int(rows[r0]), int(rows[r1]), int(cols[c0]), int(cols[c1])


def p_text(p: float, floor: float) -> str:
    return f"p ≤ {floor:.3g}" if p <= floor else f"p = {p:.3g}"


def group_names(top1_names: Sequence[str]) -> dict[str, list[int]]:
    """"all photos" and each predicted class with at least :data:`MIN_PHOTOS` photos -> indices."""
    groups: dict[str, list[int]] = {"all photos": list(range(len(top1_names)))}
    for i, name in enumerate(top1_names):
        groups.setdefault(f"class {name}", []).append(i)
    return {k: v for k, v in groups.items() if len(v) >= MIN_PHOTOS and (k == "all photos" or len(v) < len(top1_names))}
