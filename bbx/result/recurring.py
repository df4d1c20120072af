"""Recurring regions: places that are undesirable at the same spot in many photos.

Pure maths on heatmaps already in the model's input coordinates (no model, no files). Each
heatmap is averaged onto a coarse grid (the mask grid: a soft mask has no finer detail), and the
grids' mean is the data set's mean map. A cell of the mean map is high either because many photos
mark that place or because a few photos mark much; the test tells the two apart.

The null keeps each heatmap exactly as it is (its area, its blobs, its values) and moves it: every
photo's grid is shifted circularly by its own random offset, so under the null no place is shared
by the photos beyond chance. The statistic is a scan over window shapes (:data:`WINDOWS`: squares
for patches and stickers, bands for strips, frames and lines of text): the mean map averaged over
every placement of a window inside the grid, standardised by that shape's own null maxima (their
mean and spread), and the largest of these over shapes and places. ``draws`` null maps give its
null distribution, so the test is family-wise over every place and shape at once; a placement is
significant at ``alpha`` where its standardised mean exceeds the null's 1 - alpha quantile. A
region is the cells covered by a connected set of significant placements of one shape (the
strongest first; a later one touching an earlier region is the same region), less its cells
below half-way from the mean map's mean to the strongest window's mean; its p-value is
``(1 + #null maxima >= its largest standardised mean) / (1 + draws)``. One cell alone is a shape,
so a sharp small spot is found as before, and a wide faint band gains from being read whole.

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
#: Window shapes the scan slides, (rows, columns) of grid cells, cut to the grid's size.
WINDOWS = ((1, 1), (2, 2), (4, 4), (8, 8), (2, 14), (14, 2), (2, 28), (28, 2), (4, 28), (28, 4))


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
    null_max: np.ndarray = field(repr=False)  # (draws,) the scan statistic under the null (standardised)
    threshold: float  # the null maxima's 1 - alpha quantile (standardised, as null_max)
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


def shifted_means(grids: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``(draws, G, G)``: the mean of ``grids`` after shifting each circularly by its own random offset."""
    n, g_r, g_c = grids.shape
    src = grids.astype(np.float32)
    photo = np.arange(n)[:, None, None]
    out = np.empty((draws, g_r, g_c))
    dy = rng.integers(0, g_r, size=(draws, n))
    dx = rng.integers(0, g_c, size=(draws, n))
    for j in range(draws):
        rows = (np.arange(g_r)[None, :] - dy[j][:, None]) % g_r
        cols = (np.arange(g_c)[None, :] - dx[j][:, None]) % g_c
        out[j] = src[photo, rows[:, :, None], cols[:, None, :]].mean(axis=0)
    return out


def window_means(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``maps`` (..., G, G) averaged over a ``shape`` window at every placement inside the grid
    (``[..., r, c]``: the window's top-left cell at ``(r, c)``)."""
    h, w = shape
    total = np.cumsum(np.cumsum(np.pad(maps, [(0, 0)] * (maps.ndim - 2) + [(1, 0), (1, 0)]), axis=-2), axis=-1)
    box = total[..., h:, w:] - total[..., :-h, w:] - total[..., h:, :-w] + total[..., :-h, :-w]
    return box / (h * w)


def footprint(anchors: np.ndarray, shape: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The cells covered by a ``shape`` window at each of ``anchors`` (bool, placements)."""
    cells = np.zeros(grid, dtype=bool)
    for r, c in np.argwhere(anchors):
        cells[r:r + shape[0], c:c + shape[1]] = True
    return cells


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
    nulls = shifted_means(grids, draws, np.random.default_rng(seed))
    scores, null_max = standardised(mean, nulls)
    threshold = float(np.quantile(null_max, 1 - alpha)) if len(scores) else float("inf")
    background = float(mean.mean())
    regions: list[Region] = []
    for shape, z, anchors in placements(scores, threshold):
        best = float(window_means(mean, shape)[anchors].max())
        cells = trimmed(mean, footprint(anchors, shape, mean.shape), best, background)
        if not cells.any() or any((cells & r.cells).any() for r in regions):  # the same place read by another shape
            continue
        top = float(z[anchors].max())
        p = (1 + int((null_max >= top - TOLERANCE).sum())) / (1 + draws)
        share = involvement(grids, cells)
        regions.append(Region(cells, float(mean[cells].max()), background, p,
                              tuple(int(i) for i in np.nonzero(share <= involved_level)[0])))
    return Scan(len(grids), mean, null_max, threshold, alpha, tuple(sorted(regions, key=lambda r: (r.p, -r.peak))))


def standardised(mean: np.ndarray, nulls: np.ndarray) -> tuple[dict[tuple[int, int], np.ndarray], np.ndarray]:
    """Per window shape, the mean map's window means standardised by that shape's null maxima; and
    the null's scan statistic (per draw, the largest standardised maximum over shapes). A shape whose
    null maxima do not vary (a flat map) says nothing and is left out."""
    scores: dict[tuple[int, int], np.ndarray] = {}
    null_max = np.full(len(nulls), -np.inf)
    for shape in dict.fromkeys((min(h, mean.shape[0]), min(w, mean.shape[1])) for h, w in WINDOWS):
        maxima = window_means(nulls, shape).max(axis=(-2, -1))
        spread = maxima.std()
        if spread <= TOLERANCE * max(1.0, float(np.abs(maxima).max())):
            continue
        scores[shape] = (window_means(mean, shape) - maxima.mean()) / spread
        null_max = np.maximum(null_max, (maxima - maxima.mean()) / spread)
    return scores, null_max


def trimmed(mean: np.ndarray, cells: np.ndarray, best: float, background: float) -> np.ndarray:
    """``cells`` less those below half-way from ``background`` to ``best`` (the strongest window's
    mean): windows overlapping a region's edge are significant too, and would widen it by their size."""
    return cells & (mean >= background + 0.5 * (best - background))


def placements(scores: dict[tuple[int, int], np.ndarray],
               threshold: float) -> list[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """``(shape, standardised means, anchors)`` for each connected set of significant placements of
    one shape, the strongest first."""
    found = []
    for shape, z in scores.items():
        labels, count = ndimage.label(z > threshold + TOLERANCE, structure=np.ones((3, 3)))
        found += [(float(z[labels == k].max()), shape, z, labels == k) for k in range(1, count + 1)]
    return [(shape, z, anchors) for _, shape, z, anchors in sorted(found, key=lambda f: -f[0])]


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
