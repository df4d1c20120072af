"""Recurring regions (issue 33): the test's maths on heatmaps whose answer is known, then a planted
model whose shortcut is a stamp at a fixed place, through ``bbx evaluate`` and ``bbx audit``.

The false-flag rate over many random data sets is measured by ``tools/bench_recurring.py`` (a
benchmark, not a test); docs/audit.md states it.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import planted
from bbx.evaluation import recurring as er
from bbx.evaluation.runner import EvalConfig, evaluate
from bbx.config import ExplainConfig
from bbx.maths.perturb import BlurSpec
from bbx.model import OnnxClassifier
from bbx.result import recurring as rc

SIZE = 112
STAMP = (slice(16, 40), slice(56, 96))
P_BOUND = 0.01  # the planted stamp's p-value must be at most this (the floor with 999 draws is 0.001)


def _blobs(rng: np.random.Generator, n: int, size: int = SIZE) -> np.ndarray:
    """``n`` heatmaps, each 1-3 squares at random places (circularly wrapped: no place is favoured)."""
    out = np.zeros((n, size, size))
    for h in out:
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, size, 2)
            side = rng.integers(8, 30)
            rows, cols = (np.arange(r, r + side) % size), (np.arange(c, c + side) % size)
            h[np.ix_(rows, cols)] = 1.0
    return out


def _grids(heat: np.ndarray) -> np.ndarray:
    return np.stack([rc.to_grid(h) for h in heat])


# -- the maths -------------------------------------------------------------------------------------

def _banded(seed: int, rows: slice, marked: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """16 blob heatmaps, the first ``marked`` of them also marking ``rows`` at least at ``level``; and the band."""
    heat = _blobs(np.random.default_rng(seed), 16)
    truth = np.zeros((SIZE, SIZE), dtype=bool)
    truth[rows, :] = True
    heat[:marked, truth] = np.maximum(heat[:marked, truth], level)
    return heat, truth


def test_a_band_marked_in_14_of_16_heatmaps_is_found_where_it_is():
    heat, truth = _banded(seed=1, rows=slice(45, 65), marked=14, level=0.8)
    scan = rc.scan(_grids(heat), alpha=0.05)
    assert len(scan.regions) == 1
    region = scan.regions[0]
    assert rc.iou(rc.to_pixels(region.cells, (SIZE, SIZE)), truth) >= 0.5
    assert region.p <= P_BOUND
    assert set(range(14)) <= set(region.involved) and len(region.involved) <= 15
    assert rc.describe(region, (SIZE, SIZE)).startswith("band at rows ")


def test_a_faint_band_in_most_heatmaps_is_read_whole():
    """A band marked at a fifth of the blobs' strength in 12 of 16 heatmaps: no single cell of the mean
    map stands above the shifted heatmaps' maxima, the band's windows do (the per-cell test alone
    found nothing here)."""
    heat, truth = _banded(seed=20, rows=slice(84, 100), marked=12, level=0.2)
    scan = rc.scan(_grids(heat), alpha=0.05)
    assert len(scan.regions) == 1
    assert scan.mean.max() < np.quantile(_cell_null(_grids(heat)), 0.95)  # one cell alone says nothing
    region = scan.regions[0]
    assert rc.iou(rc.to_pixels(region.cells, (SIZE, SIZE)), truth) >= 0.8 and region.p <= P_BOUND
    assert rc.describe(region, (SIZE, SIZE)).startswith("band at rows ")


def _cell_null(grids: np.ndarray, draws: int = 199) -> np.ndarray:
    """The mean map's largest cell under the shift null."""
    return rc.shifted_means(grids, draws, np.random.default_rng(0)).max(axis=(1, 2))


def test_heatmaps_at_random_places_give_no_region():
    flagged = sum(bool(rc.scan(_grids(_blobs(np.random.default_rng(100 + k), 16)), alpha=0.05, seed=k).regions)
                  for k in range(10))
    assert flagged <= 1  # 5 % each: more than one of ten would be 0.9 % likely


def test_the_null_keeps_each_heatmap_so_one_heatmap_alone_or_identical_ones_say_nothing_new():
    one = _grids(_blobs(np.random.default_rng(3), 1))
    assert rc.scan(one).regions == ()  # fewer than MIN_PHOTOS: not tested
    same = np.repeat(_grids(_blobs(np.random.default_rng(4), 1)), 5, axis=0)
    scan = rc.scan(same, alpha=0.05)
    assert scan.regions and scan.regions[0].p == scan.p_floor  # five photos marking one place: as strong as it gets
    flat = np.full((6, rc.MASK_SIZE, rc.MASK_SIZE), 0.3)
    assert rc.scan(flat).regions == ()  # a flat map is the same at every shift


def test_involvement_ranks_a_photo_against_its_own_shifts():
    cells = np.zeros((rc.MASK_SIZE, rc.MASK_SIZE), dtype=bool)
    cells[5:9, 10:20] = True
    marks_it = cells.astype(float)
    elsewhere = np.roll(marks_it, 12, axis=0)
    share = rc.involvement(np.stack([marks_it, elsewhere, np.zeros_like(marks_it)]), cells)
    assert share[0] == 1 / rc.MASK_SIZE ** 2  # only the region itself reaches its own mean
    assert share[1] > 0.5 and share[2] == 1.0


def test_grid_and_pixels_agree_on_uneven_sizes():
    heat = np.zeros((50, 70))
    heat[10:20, 35:70] = 1.0
    grid = rc.to_grid(heat, 10)
    assert grid.shape == (10, 10) and np.isclose(grid.mean(), heat.mean())
    back = rc.to_pixels(grid > 0.5, (50, 70))
    assert back.shape == (50, 70) and rc.iou(back, heat > 0) == 1.0


def test_a_heatmap_smaller_than_the_grid_keeps_its_values():
    """A 16 px input on the 28-cell grid (more cells than pixels): each cell takes the pixel under its
    centre, so no cell is 0 / 0 and the hot corner stays where it was."""
    heat = np.zeros((16, 40))
    heat[:4, 30:] = 1.0
    grid = rc.to_grid(heat)
    assert grid.shape == (rc.MASK_SIZE, rc.MASK_SIZE) and np.isfinite(grid).all()
    assert set(np.unique(grid)) == {0.0, 1.0}
    assert grid[:7, 21:].all() and not grid[7:].any() and not grid[:, :21].any()


# -- a planted shortcut, end to end -------------------------------------------------------------

@pytest.fixture(scope="module")
def stamp_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("recurring")
    model = planted.build_reader(d / "stamp.onnx", STAMP, SIZE)
    stamped = planted.stamped_folder(d / "stamped", 8, STAMP, SIZE, strength=0.125)
    clean = planted.stamped_folder(d / "clean", 8, None, SIZE, first_seed=100, strength=0.125, avoid=STAMP)
    return {"dir": d, "model": model, "stamped": stamped, "clean": clean}


def _found(world, photos, name):
    model = OnnxClassifier(str(world["model"]))
    config = EvalConfig(methods=("greedy",), seeds=1, explain=ExplainConfig(budget=300)).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = evaluate(model, photos, config, world["dir"] / name)
    before = model.queries
    found = er.blur_effects(er.find(outcome.records, "greedy"), outcome.records, model, BlurSpec())
    return found, model.queries - before


def test_a_planted_stamp_is_flagged_at_its_place_and_blurring_it_raises_the_class(stamp_world):
    found, queries = _found(stamp_world, stamp_world["stamped"], "ev-stamped")
    (group, flag), = found.flagged
    assert group.name == "all photos"
    assert rc.iou(rc.to_pixels(flag.region.cells, (SIZE, SIZE)), planted.patch_mask(STAMP, SIZE)) >= 0.5
    assert flag.region.p <= P_BOUND and len(flag.region.involved) == 8
    # the model's logit 0 gains its texture energy back: p(target) 0.58 -> 0.79 in every photo
    assert flag.effect.raised == 8 and flag.effect.delta_p > 0.15
    assert abs(flag.effect.control_delta_p) < 0.02  # as much blurred elsewhere: the model reads nothing there
    assert queries == found.queries == 16  # the region and its control, once per photo: every query counted


def test_the_same_model_on_photos_without_the_stamp_flags_nothing(stamp_world):
    found, queries = _found(stamp_world, stamp_world["clean"], "ev-clean")
    assert found.found == [] and found.flagged == [] and queries == 0
    assert found.lines()[0].startswith("No recurring region in the greedy heatmaps")


def test_a_method_whose_heatmap_ignores_the_photo_is_not_tested():
    recs = [{"image": f"/p/{i}.png", "method": "random", "seed": 0, "top1_name": "x", "top1_prob_before": 0.5,
             "top1_prob_after": 0.6, "input_size": [SIZE, SIZE], "mask": np.full((28, 28), 0.5).tolist()}
            for i in range(5)]
    result = er.find(recs, "random")
    assert result.groups == [] and "is the same in every photo" in result.lines()[0]


def _audit(world, photos: str, out: Path, methods: str) -> subprocess.CompletedProcess:
    """``bbx audit`` of the planted model on one of the world's folders (the report extra needed)."""
    pytest.importorskip("matplotlib", reason="bbx audit needs the report extra")
    run = subprocess.run(["bbx", "audit", str(world["model"]), str(world[photos][0].parent), "--out", str(out),
                          "--budget", "300", "--methods", methods, "-q"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.slow  # a whole bbx audit, with the report extra
def test_audit_puts_the_region_first_and_writes_it_for_machines(stamp_world, tmp_path):
    out = tmp_path / "audit"
    _audit(stamp_world, "stamped", out, "greedy")
    page = (out / "index.html").read_text()
    main = page[page.index("<main>"):]
    assert main.index("id=recurring") < main.index("id=card")  # at the top of the page
    assert "Recurring region (all photos): patch at rows" in page and "in 8 of 8 photos, p ≤ 0.001" in page
    data = json.loads((out / "recurring.json").read_text())["recurring"][0]
    region = data["groups"][0]["regions"][0]
    assert region["photos_involved"] == 8 and region["blur"]["queries"] == 16
    for pic in ("mean.png", "0.jpg"):
        assert list((out / "img").glob(f"recurring-*-{pic}"))


def test_the_audit_reads_rise_where_it_ran_and_else_the_gallery_method():
    from bbx.audit.run import recurring_method

    assert recurring_method(("greedy", "occlusion", "rise", "random")) == "rise"
    assert recurring_method(("greedy", "occlusion")) == "greedy"
    assert recurring_method(("occlusion", "greedy")) == "occlusion"


@pytest.mark.slow  # a whole bbx audit, with the report extra
def test_audit_tests_rise_heatmaps_when_it_ran_rise(stamp_world, tmp_path):
    out = tmp_path / "audit-rise"
    run = _audit(stamp_world, "stamped", out, "greedy,rise")
    data, = json.loads((out / "recurring.json").read_text())["recurring"]
    assert data["method"] == "rise"
    region = data["groups"][0]["regions"][0]
    cells = np.zeros((rc.MASK_SIZE, rc.MASK_SIZE), dtype=bool)
    cells[tuple(np.array(region["cells"]).T)] = True
    assert region["flagged"] and rc.iou(rc.to_pixels(cells, (SIZE, SIZE)), planted.patch_mask(STAMP, SIZE)) >= 0.5
    assert "Recurring region (all photos)" in run.stdout


@pytest.mark.slow  # a whole bbx audit, with the report extra
def test_audit_says_in_one_line_when_there_is_no_region(stamp_world, tmp_path):
    out = tmp_path / "audit-clean"
    _audit(stamp_world, "clean", out, "greedy")
    page = (out / "index.html").read_text()
    assert page.count("class=recurring-none") == 1 and "No recurring region in the greedy heatmaps" in page


def test_evaluate_appends_the_regions_to_summary_md_per_method(stamp_world, tmp_path):
    out = tmp_path / "eval"
    run = subprocess.run(["bbx", "evaluate", str(stamp_world["model"]), str(stamp_world["stamped"][0].parent),
                          "--methods", "greedy,random", "--budget", "300", "--seeds", "1", "--out", str(out), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = (out / "summary.md").read_text()
    greedy = summary[summary.index("## Recurring regions (greedy)"):summary.index("## Recurring regions (random)")]
    assert "- Recurring region (all photos): patch at rows" in greedy and "in 8 of 8 photos" in greedy
    # random draws each photo's mask from the seed and the photo, so its heatmaps differ and nothing recurs
    assert "No recurring region in the random heatmaps (tested: all photos (8)" in summary
    data = json.loads((out / "recurring.json").read_text())["recurring"]
    assert [d["method"] for d in data] == ["greedy", "random"] and data[0]["queries"] == 16
    assert "Recurring region (all photos)" in run.stdout


def test_a_region_whose_blurring_changes_nothing_recurs_but_is_not_flagged():
    rng = np.random.default_rng(5)
    recs = []
    for i in range(8):
        heat = np.zeros((28, 28))
        for r, c in rng.integers(0, 24, (2, 2)):
            heat[r:r + 4, c:c + 4] = 1.0  # two squares at random places
        heat[11:16] = 0.8  # and the band, in every photo
        recs.append({"image": f"/p/{i}.png", "method": "ftc", "seed": 0, "top1_name": "x", "top1_prob_before": 0.5,
                     "top1_prob_after": 0.6, "input_size": [SIZE, SIZE], "mask": (1 - heat).tolist()})
    result = er.find(recs, "ftc")
    (_, found), = result.found
    found.effect = er.Effect(delta_p=0.002, phi=0.4, raised=8, control_delta_p=0.0005, queries=16)
    assert result.flagged == [] and result.lines()[0].startswith("No recurring region")
    assert "1 place recurred in the heatmaps but blurring it raised p(top-1) by less than 0.01" in result.lines()[0]
    found.effect = er.Effect(delta_p=0.05, phi=10.0, raised=8, control_delta_p=0.08, queries=16)
    assert result.flagged == []  # helps, but no more than blurring as much elsewhere
    found.effect = er.Effect(delta_p=0.2, phi=40.0, raised=8, control_delta_p=0.0, queries=16)
    assert result.flagged and result.lines()[0].startswith("Recurring region (all photos): band at rows")
