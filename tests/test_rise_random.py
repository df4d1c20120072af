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
