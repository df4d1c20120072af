"""The levers on greedy's search (bbx.methods.levers) on two planted patches."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import bbx
import planted
from lever_registry import registered
from bbx.errors import OptionError

FINE = {"stride": 4, "window": 12, "area": 0.2}  # A (12 x 12 at 8, 8) is one window; 0.2: several windows


@pytest.fixture(scope="module", autouse=True)
def lever():
    with registered("bbx.methods.levers", "bbx.methods.rise_greedy"):
        yield


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    """Texture in A and in B, far apart, both count against class 0: blurring either raises it."""
    path = tmp_path_factory.mktemp("m") / "two.onnx"
    return bbx.OnnxClassifier(planted.build_reader(path, [planted.A, planted.B], coef=(-2.0, 0.0, 0.0)))


def regions(e) -> int:
    """How many 8-connected pieces the cells the search chose (heat > 0.5) make."""
    return ndimage.label(e.heatmap > 0.5, structure=np.ones((3, 3)))[1]


@pytest.mark.parametrize("method,seeded", [("greedy_region", {}), ("rise_region", {"seed": 0})])
def test_the_chosen_windows_are_one_region_that_starts_on_a_planted_patch(target_model, method, seeded):
    e = bbx.explain(target_model, planted.photo(), 0, method=method, budget=400, **seeded, **FINE)
    assert regions(e) == 1 and e.config["grow"] is True
    first = e.heatmap == e.heatmap.max()
    on = [(first & planted.patch_mask(p)).sum() == first.sum() for p in (planted.A, planted.B)]
    assert any(on)  # the first window is A's or B's
    assert e.prob_after > e.prob_before + 0.05


def test_free_greedy_blurs_both_patches_where_the_region_keeps_to_one(target_model):
    """The same search without ``grow`` takes A and B, two pieces (so the check above can fail)."""
    e = bbx.explain(target_model, planted.photo(), 0, method="greedy", budget=400, **FINE)
    assert regions(e) == 2 and "grow" not in e.config
    for patch in (planted.A, planted.B):
        assert (e.heatmap[planted.patch_mask(patch)] > 0.6).mean() > 0.5


def test_queries_are_counted_and_bad_options_refused(target_model):
    e = bbx.explain(target_model, planted.photo(), 0, method="greedy_region", budget=300, **FINE)
    assert 0 < e.queries <= 300
    with pytest.raises(OptionError, match="does not use mask_size"):
        bbx.explain(target_model, planted.photo(), 0, method="greedy_region", mask_size=14)
    with pytest.raises(OptionError, match="too small"):
        bbx.explain(target_model, planted.photo(), 0, method="rise_region", budget=4)


def test_density_keeps_the_windows_that_add_few_pixels(target_model):
    """Gain per added pixel: both patches blurred, as by greedy, with fewer pixels marked outside them."""
    both = planted.patch_mask(planted.A) | planted.patch_mask(planted.B)
    runs = {m: bbx.explain(target_model, planted.photo(), 0, method=m, budget=400, **FINE)
            for m in ("greedy", "greedy_density")}
    for e in runs.values():
        for patch in (planted.A, planted.B):
            assert (e.heatmap[planted.patch_mask(patch)] > 0.6).mean() > 0.5
    outside = {m: int((e.heatmap[~both] > 0.6).sum()) for m, e in runs.items()}
    assert outside["greedy_density"] < outside["greedy"]
    assert runs["greedy_density"].config["density"] is True


def test_steady_settles_near_ties_by_occlusions_prior(target_model, monkeypatch):
    """With no tie, greedy's choices; with every candidate counted as tied, the first window is the one
    occlusion's 16 px cells rate highest, where greedy's first window (on A, which those cells split) is not."""
    from bbx import defaults

    plain = bbx.explain(target_model, planted.photo(), 0, method="greedy", budget=400, **FINE)
    monkeypatch.setattr(defaults, "STEADY_TIE", 0.0)
    same = bbx.explain(target_model, planted.photo(), 0, method="greedy_steady", budget=400, **FINE)
    np.testing.assert_array_equal(same.heatmap, plain.heatmap)  # no tie: greedy's choices
    monkeypatch.setattr(defaults, "STEADY_TIE", 10.0)
    tied = bbx.explain(target_model, planted.photo(), 0, method="greedy_steady", budget=400, **FINE)
    occlusion = bbx.explain(target_model, planted.photo(), 0, method="occlusion")
    assert tied.config["tie"] == 10.0
    top = tied.heatmap == tied.heatmap.max()
    assert occlusion.heatmap[top].mean() == pytest.approx(occlusion.heatmap.max(), abs=0.05)
    assert occlusion.heatmap[plain.heatmap == plain.heatmap.max()].mean() < 0.5 * occlusion.heatmap.max()
