"""``rise_greedy``: greedy's search from a RISE prior, against the planted patches; its queries and options."""

from __future__ import annotations

import numpy as np
import pytest

import bbx
import planted
from lever_registry import registered
from bbx.errors import OptionError
from bbx.result.metrics import iou, top_mask

FINE = {"stride": 4, "window": 12}  # 12 px windows at a 4 px stride: A (12 x 12 at 8, 8) is one


@pytest.fixture(scope="module", autouse=True)
def lever():
    with registered("bbx.methods.rise_greedy"):
        yield


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "target.onnx", "target"))


def test_finds_patch_a_and_never_the_decoy(target_model):
    e = bbx.explain(target_model, planted.photo(), 0, method="rise_greedy", budget=400, **FINE)
    truth = planted.patch_mask(planted.A)
    assert iou(top_mask(e.heatmap, truth.mean()), truth) == 1.0
    assert not (e.heatmap[planted.patch_mask(planted.C)] > 0.6).any()
    assert e.prob_after > e.prob_before + 0.3


def test_spends_its_budget_half_on_rise_and_measures_the_perturbed_image(target_model):
    e = bbx.explain(target_model, planted.photo(), 0, method="rise_greedy", budget=300, seed=2, **FINE)
    assert e.queries == 300 and e.config["rise_masks"] == 150
    after = target_model.scores(e.perturbed[None]).probs[0][0]
    assert after == pytest.approx(e.prob_after, abs=1e-6)


def test_deterministic_and_bad_options_are_refused(target_model):
    runs = [bbx.explain(target_model, planted.photo(seed=s), 0, method="rise_greedy", budget=200, seed=0, **FINE)
            for s in (0, 0)]
    np.testing.assert_array_equal(runs[0].mask, runs[1].mask)  # deterministic
    with pytest.raises(OptionError, match="too small"):
        bbx.explain(target_model, planted.photo(), 0, method="rise_greedy", budget=4)
    with pytest.raises(OptionError, match="does not use patch"):
        bbx.explain(target_model, planted.photo(), 0, method="rise_greedy", patch=8)
