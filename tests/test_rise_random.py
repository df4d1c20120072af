"""rise and random against answers known in advance: planted models, a model that ignores its input,
and the seed combined with the photo."""

from __future__ import annotations

import numpy as np
import pytest

import bbx
from bbx.result.metrics import top_mask

import onnx_builders
import planted


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("planted") / "target.onnx", "target"))


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory):
    return bbx.OnnxClassifier(onnx_builders.build_constant(tmp_path_factory.mktemp("constant")))


# -- random ----------------------------------------------------------------------------------------
def test_random_draws_another_mask_on_another_photo_with_the_same_seed(target_model):
    masks = [bbx.explain(target_model, planted.photo(seed=s), method="random", seed=0).mask for s in (0, 1, 2)]
    assert not np.allclose(masks[0], masks[1]) and not np.allclose(masks[1], masks[2])


def test_random_is_reproducible_for_one_photo_and_seed_and_moves_with_the_seed(target_model):
    photo = planted.photo(seed=4)
    again = [bbx.explain(target_model, photo, method="random", seed=7).mask for _ in range(2)]
    other = bbx.explain(target_model, photo, method="random", seed=8).mask
    np.testing.assert_array_equal(again[0], again[1])
    assert not np.allclose(again[0], other)


# -- rise --------------------------------------------------------------------------------------------
def test_rise_marks_nothing_on_a_model_that_ignores_the_image(constant_model):
    """No mask moves the target, so no pixel is undesirable. The paper's uncentred sum marked the
    pixels the masks happened to blur most often (the f̄ x times-kept field), heat 1 at its low point."""
    e = bbx.explain(constant_model, onnx_builders.random_images(1, seed=2)[0], method="rise", budget=300, seed=0)
    assert np.abs(e.heatmap).max() == 0.0 and e.undesirable_ratio == 0.0


def test_rise_finds_a_weak_confound_under_a_confident_target():
    """A target near 0.95 that a 4 x 4 patch P of the 28 x 28 mask lowers by at most 0.02: the
    centred weights put the maximum and the top |P| cells of the heat inside P (the paper's uncentred
    sum, measured on these masks: maximum outside P, 0-25% of its top cells inside, the times-kept
    field of 0.95 x ~2% swamping an effect this small)."""
    from bbx.methods.rise import random_masks, undesirable

    rng = np.random.default_rng(0)
    masks = random_masks(rng, 1998, 7, 0.5, 28)
    patch = (slice(10, 14), slice(16, 20))
    probs = 0.95 - 0.02 * masks[:, patch[0], patch[1]].mean(axis=(1, 2)) + rng.normal(0, 0.002, len(masks))
    heat = undesirable(probs, masks)
    inside = np.zeros((28, 28), dtype=bool)
    inside[patch] = True
    top = top_mask(heat, inside.mean())
    assert inside.ravel()[np.argmax(heat)] and inside[top].mean() >= 0.75
    assert heat.max() == 1.0 and heat.min() == 0.0


def test_rise_puts_its_heat_on_the_planted_patch(target_model):
    e = bbx.explain(target_model, planted.photo(seed=0), target=0, method="rise", budget=600, seed=1)
    a = planted.patch_mask(planted.A)
    top = top_mask(e.heatmap, 0.03)
    assert a[top].mean() >= 0.8
    assert e.queries == 600
