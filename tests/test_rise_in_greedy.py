"""Levers that put RISE inside greedy's search, on two planted patches: ``greedy_ranked`` (greedy's
undesirable pixels with the rest of the budget, ranked by RISE's drop), ``rise_first`` (greedy's search
started at RISE's worst window when blurring it pays) and ``rise_lead`` (started at the best-paying of
RISE's worst windows)."""

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
    with registered("bbx.methods.greedy_ranked", "bbx.methods.rise_first"):
        yield


@pytest.fixture(scope="module")
def two_patches(tmp_path_factory):
    """Texture in A and in B both count against class 0: blurring either raises it."""
    path = tmp_path_factory.mktemp("m") / "two.onnx"
    return bbx.OnnxClassifier(planted.build_reader(path, [planted.A, planted.B], coef=(-2.0, 0.0, 0.0)))


def rise_drop(model, seed: int, masks: int) -> np.ndarray:
    """RISE's drop per ``stride`` cell, computed apart from the methods (the same masks: same seed and photo)."""
    from bbx.methods.context import Context
    from bbx.methods.rise import rise_prior

    cfg = ExplainConfig(seed=seed, **FINE)
    ctx = Context(model, planted.photo(), 0, "rise", None)
    return rise_prior(ctx, cfg, masks, BlurSpec(cfg.sigma, cfg.kernel))


def rise_worst_window(model, seed: int, masks: int) -> np.ndarray:
    """The cells of the window RISE's drop rates worst."""
    from bbx.methods.greedy import window_grid, window_means

    _, windows, px = window_grid((planted.SIZE, planted.SIZE), ExplainConfig(**FINE))
    return windows[int(np.argmax(window_means(windows, px, rise_drop(model, seed, masks))))]


def top_cell(heatmap: np.ndarray) -> int:
    i, j = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return (i // FINE["stride"]) * (planted.SIZE // FINE["stride"]) + j // FINE["stride"]


def test_greedy_ranked_blurs_greedys_pixels_with_the_rest_of_the_budget(two_patches):
    ranked = bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", budget=600, seed=1, **FINE)
    masks = ranked.config["rise_masks"]
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=600 - masks, **FINE)
    assert ranked.queries == 600 and masks == 300
    np.testing.assert_array_equal(ranked.heatmap > 0.6, plain.heatmap > 0.6)
    np.testing.assert_array_equal(ranked.perturbed, plain.perturbed)
    assert ranked.prob_after == pytest.approx(plain.prob_after)
    assert ranked.config["ranked"] is True


def test_greedy_ranked_tops_the_undesirable_cell_rise_rates_worst(two_patches):
    ranked = bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", budget=600, seed=1, **FINE)
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=300, **FINE)
    drop = rise_drop(two_patches, 1, 300)
    cells = (ranked.heatmap[::FINE["stride"], ::FINE["stride"]] > 0.6).ravel()
    worst = np.flatnonzero(cells)[np.argmax(drop[cells])]
    assert top_cell(ranked.heatmap) == worst
    assert top_cell(plain.heatmap) != worst  # the order did change


def test_greedy_ranked_refuses_a_budget_without_room_for_rise(two_patches):
    with pytest.raises(OptionError, match=r"too small for greedy_ranked.* it needs 81 queries \(30 of its own, the image, 49"):
        bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", budget=60, **FINE)
    with pytest.raises(OptionError, match="does not use"):
        bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", lambda1=2.0)


def test_rise_first_starts_at_rises_worst_window_and_still_finds_both_patches(two_patches, monkeypatch):
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


def test_rise_first_leaves_greedys_search_when_the_window_does_not_pay(two_patches, monkeypatch):
    monkeypatch.setattr(defaults, "RISE_FIRST_GATE", 1e9)
    e = bbx.explain(two_patches, planted.photo(), 0, method="rise_first", budget=600, seed=0, **FINE)
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=600 - e.config["rise_masks"] - 1,
                        **FINE)
    assert not e.config["first_kept"] and "started" not in e.config
    np.testing.assert_array_equal(e.heatmap, plain.heatmap)
    assert e.prob_after == pytest.approx(plain.prob_after)


def test_rise_first_refuses_a_budget_without_room(two_patches, monkeypatch):
    monkeypatch.setattr(defaults, "RISE_FIRST_SHARE", 0.5)
    with pytest.raises(OptionError, match=r"too small for rise_first.* it needs 82 queries \(31 of its own"):
        bbx.explain(two_patches, planted.photo(), 0, method="rise_first", budget=60, **FINE)
    with pytest.raises(OptionError, match="does not use"):
        bbx.explain(two_patches, planted.photo(), 0, method="rise_first", lambda1=2.0)


def lead_apart(model, seed: int, masks: int, tried: int) -> tuple[np.ndarray, float]:
    """Computed apart from the method: (the cells of the one of RISE's ``tried`` worst windows whose blurring
    alone raises class 0 most, that probability)."""
    from bbx.evaluation.insertion import hard_blur
    from bbx.maths.perturb import Perturber
    from bbx.methods.greedy import window_grid, window_means

    fine, windows, px = window_grid((planted.SIZE, planted.SIZE), ExplainConfig(**FINE))
    worst = np.argsort(-window_means(windows, px, rise_drop(model, seed, masks)), kind="stable")[:tried]
    pert = Perturber(planted.photo(), blur_spec=BlurSpec(ExplainConfig().sigma, ExplainConfig().kernel))
    p = [float(model.scores(hard_blur(pert, np.isin(fine, windows[t]))[None]).probs[0][0]) for t in worst]
    return windows[worst[int(np.argmax(p))]], max(p)


@pytest.mark.parametrize("tried", [1, 8])
def test_rise_lead_starts_at_the_best_paying_of_rises_worst_windows(two_patches, monkeypatch, tried):
    monkeypatch.setattr(defaults, "RISE_LEAD_SHARE", 0.5)
    monkeypatch.setattr(defaults, "RISE_LEAD_WINDOWS", tried)
    e = bbx.explain(two_patches, planted.photo(), 0, method="rise_lead", budget=600, seed=0, **FINE)
    cells, p_lead = lead_apart(two_patches, 0, e.config["rise_masks"], tried)
    assert e.queries == 600 and e.config["lead_windows"] == tried and e.config["started"] is True
    assert e.config["lead_kept"] is True
    assert e.config["lead_gain"] == pytest.approx(p_lead - e.prob_before, abs=1e-6)
    assert top_cell(e.heatmap) in cells
    for patch in (planted.A, planted.B):  # the search after the lead still blurs both patches
        assert (e.heatmap[planted.patch_mask(patch)] > 0.6).all()
    after = two_patches.scores(e.perturbed[None]).probs[0][0]
    assert after == pytest.approx(e.prob_after, abs=1e-6) and e.prob_after > e.prob_before + 0.3


def test_rise_lead_tries_more_than_rises_worst_window(two_patches, monkeypatch):
    """With one window it leads with RISE's worst; with eight, with one that pays more when blurred alone."""
    monkeypatch.setattr(defaults, "RISE_LEAD_SHARE", 0.5)
    one, p_one = lead_apart(two_patches, 0, 300, 1)
    eight, p_eight = lead_apart(two_patches, 0, 300, 8)
    np.testing.assert_array_equal(one, rise_worst_window(two_patches, 0, 300))
    assert p_eight > p_one + 0.01  # so the parametrised test above checks two different leads


def test_rise_lead_does_not_lead_with_a_window_that_lowers_the_target(tmp_path, monkeypatch):
    """Texture in A counts *for* class 0: blurring a window lowers it or leaves it, so no lead is kept and the
    search is greedy's with the rest of the budget, heatmap for heatmap."""
    monkeypatch.setattr(defaults, "RISE_LEAD_SHARE", 0.5)
    model = bbx.OnnxClassifier(planted.build_reader(tmp_path / "for.onnx", planted.A, coef=(0.5, 0.0, 0.0),
                                                    bias=(-1.5, 0.0, 0.0)))
    e = bbx.explain(model, planted.photo(), 0, method="rise_lead", budget=600, seed=0, **FINE)
    tried = e.config["lead_windows"]
    plain = bbx.explain(model, planted.photo(), 0, method="greedy", budget=600 - 300 - tried, **FINE)
    assert e.config["lead_gain"] <= 0 and e.config["lead_kept"] is False and "started" not in e.config
    np.testing.assert_array_equal(e.heatmap, plain.heatmap)


def test_rise_lead_refuses_a_budget_without_room(two_patches, monkeypatch):
    monkeypatch.setattr(defaults, "RISE_LEAD_SHARE", 0.5)
    monkeypatch.setattr(defaults, "RISE_LEAD_WINDOWS", 8)
    with pytest.raises(OptionError, match=r"too small for rise_lead.* it needs 89 queries \(38 of its own"):
        bbx.explain(two_patches, planted.photo(), 0, method="rise_lead", budget=60, **FINE)
    with pytest.raises(OptionError, match="does not use"):
        bbx.explain(two_patches, planted.photo(), 0, method="rise_lead", lambda1=2.0)
