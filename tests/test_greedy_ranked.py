"""``greedy_ranked``: greedy's undesirable pixels with the rest of the budget, ranked by RISE's drop."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bbx
import planted
from lever_registry import registered
from bbx.config import ExplainConfig
from bbx.errors import OptionError
from bbx.maths.perturb import BlurSpec

FINE = {"stride": 4, "window": 12, "area": 0.2, "patch": 8}  # several windows, on both patches


@pytest.fixture(scope="module", autouse=True)
def lever():
    with registered("bbx.methods.greedy_ranked"):
        yield


@pytest.fixture(scope="module")
def two_patches(tmp_path_factory):
    """Texture in A and in B both count against class 0: blurring either raises it."""
    path = tmp_path_factory.mktemp("m") / "two.onnx"
    return bbx.OnnxClassifier(planted.build_reader(path, [planted.A, planted.B], coef=(-2.0, 0.0, 0.0)))


def test_its_undesirable_pixels_are_greedys_with_the_rest_of_the_budget(two_patches):
    ranked = bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", budget=600, seed=1, **FINE)
    masks = ranked.config["rise_masks"]
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=600 - masks, **FINE)
    assert ranked.queries == 600 and masks == 300
    np.testing.assert_array_equal(ranked.heatmap > 0.6, plain.heatmap > 0.6)
    np.testing.assert_array_equal(ranked.perturbed, plain.perturbed)
    assert ranked.prob_after == pytest.approx(plain.prob_after)
    assert ranked.config["ranked"] is True


def test_its_top_cell_is_the_undesirable_cell_rise_rates_worst(two_patches):
    from bbx.methods.context import Context
    from bbx.methods.rise import rise_prior

    ranked = bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", budget=600, seed=1, **FINE)
    plain = bbx.explain(two_patches, planted.photo(), 0, method="greedy", budget=300, **FINE)
    ctx = Context(two_patches, planted.photo(), 0, "greedy_ranked", 600)
    cfg = ExplainConfig(seed=1, **FINE)
    drop = rise_prior(ctx, cfg, 300, BlurSpec(cfg.sigma, cfg.kernel))  # the same masks: same seed and photo
    side = math.ceil(planted.SIZE / FINE["stride"])
    cells = (ranked.heatmap[::FINE["stride"], ::FINE["stride"]] > 0.6).ravel()
    worst = np.flatnonzero(cells)[np.argmax(drop[cells])]
    top = np.unravel_index(np.argmax(ranked.heatmap), ranked.heatmap.shape)
    assert (top[0] // FINE["stride"]) * side + top[1] // FINE["stride"] == worst
    first = np.unravel_index(np.argmax(plain.heatmap), plain.heatmap.shape)
    assert (first[0] // FINE["stride"]) * side + first[1] // FINE["stride"] != worst  # the order did change


def test_a_budget_without_room_for_rise_is_refused(two_patches):
    with pytest.raises(OptionError, match=r"too small for greedy_ranked.* it needs 81 queries \(30 of its own, the image, 49"):
        bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", budget=60, **FINE)
    with pytest.raises(OptionError, match="does not use"):
        bbx.explain(two_patches, planted.photo(), 0, method="greedy_ranked", lambda1=2.0)
