"""``rise_first``: greedy's search started at RISE's worst window when blurring it pays, on two planted patches."""

from __future__ import annotations

import numpy as np
import pytest

import bbx
import planted
from lever_registry import registered
from bbx import defaults
from bbx.config import ExplainConfig
from bbx.errors import OptionError
from bbx.maths.perturb import BlurSpec

FINE = {"stride": 4, "window": 12, "area": 0.2, "patch": 8}  # A and B are one window each; several windows


@pytest.fixture(scope="module", autouse=True)
def lever():
    with registered("bbx.methods.rise_first"):
        yield


@pytest.fixture(scope="module")
def two_patches(tmp_path_factory):
    """Texture in A and in B both count against class 0: blurring either raises it."""
    path = tmp_path_factory.mktemp("m") / "two.onnx"
    return bbx.OnnxClassifier(planted.build_reader(path, [planted.A, planted.B], coef=(-2.0, 0.0, 0.0)))


def rise_worst_window(model, seed: int, masks: int) -> np.ndarray:
    """The cells of the window RISE's drop rates worst, computed apart from the method (same masks)."""
    from bbx.methods.context import Context
    from bbx.methods.greedy import window_grid, window_means
    from bbx.methods.rise import rise_prior

    cfg = ExplainConfig(seed=seed, **FINE)
    ctx = Context(model, planted.photo(), 0, "rise_first", None)
    drop = rise_prior(ctx, cfg, masks, BlurSpec(cfg.sigma, cfg.kernel))
    _, windows, px = window_grid((planted.SIZE, planted.SIZE), cfg)
    return windows[int(np.argmax(window_means(windows, px, drop)))]


def top_cell(heatmap: np.ndarray) -> int:
    i, j = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return (i // FINE["stride"]) * (planted.SIZE // FINE["stride"]) + j // FINE["stride"]


def test_starts_at_rises_worst_window_and_still_finds_both_patches(two_patches, monkeypatch):
    monkeypatch.setattr(defaults, "RISE_FIRST_SHARE", 0.5)  # 300 masks: RISE rates B worst, greedy starts at A
    e = bbx.explain(two_patches, planted.photo(), 0, method="rise_first", budget=600, seed=0, **FINE)
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=600, **FINE)
    worst = rise_worst_window(two_patches, 0, e.config["rise_masks"])
    assert e.config["first_kept"] and e.queries == 600
    assert top_cell(e.heatmap) in worst and top_cell(plain.heatmap) not in worst  # the start changed the top
    for patch in (planted.A, planted.B):
        assert (e.heatmap[planted.patch_mask(patch)] > 0.6).all()
    after = two_patches.scores(e.perturbed[None]).probs[0][0]
    assert after == pytest.approx(e.prob_after, abs=1e-6) and e.prob_after > e.prob_before + 0.3


def test_a_window_that_does_not_pay_leaves_greedys_search(two_patches, monkeypatch):
    monkeypatch.setattr(defaults, "RISE_FIRST_GATE", 1e9)
    e = bbx.explain(two_patches, planted.photo(), 0, method="rise_first", budget=600, seed=0, **FINE)
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=600 - e.config["rise_masks"] - 1,
                        **FINE)
    assert not e.config["first_kept"] and "started" not in e.config
    np.testing.assert_array_equal(e.heatmap, plain.heatmap)
    assert e.prob_after == pytest.approx(plain.prob_after)


def test_a_budget_without_room_is_refused(two_patches, monkeypatch):
    monkeypatch.setattr(defaults, "RISE_FIRST_SHARE", 0.5)
    with pytest.raises(OptionError, match=r"too small for rise_first.* it needs 82 queries \(31 of its own"):
        bbx.explain(two_patches, planted.photo(), 0, method="rise_first", budget=60, **FINE)
    with pytest.raises(OptionError, match="does not use"):
        bbx.explain(two_patches, planted.photo(), 0, method="rise_first", lambda1=2.0)
