"""The metrics (bbx.result.metrics) on inputs whose answer is worked by hand.

φ is the paper's Eq. 8: 100 (f_h(Q) - f_h(X)) / (1 - f_h(X)): the share of the room left above the
photo's own probability that the perturbation gained.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bbx.result import metrics as mx


@pytest.mark.parametrize("before,after,expected", [
    (0.2, 0.6, 50.0),  # 0.4 gained of the 0.8 left
    (0.5, 0.25, -50.0),  # a loss is negative, on the same scale
    (0.0, 1.0, 100.0),  # all the room gained
    (0.75, 0.75, 0.0),
    (0.9, 0.99, 90.0),
])
def test_phi_is_the_share_of_the_room_left_that_was_gained(before, after, expected):
    assert mx.phi(before, after) == pytest.approx(expected, abs=1e-9)
    assert mx.PHI(before, after) == pytest.approx(expected, abs=1e-9)
    assert type(mx.PHI(before, after)) is float


def test_phi_of_a_certain_photo_stays_finite():
    # 1 - f_h(X) is held at least 1e-12: a photo scored 1 - 1e-13 gains 1e-13 of a room counted as 1e-12
    before = 1.0 - 1e-13
    assert mx.phi(before, 1.0) == pytest.approx(100.0 * (1.0 - before) / 1e-12, rel=1e-9)
    assert mx.phi(before, 1.0) < 11  # not the 100 of an unclamped ratio
    assert mx.phi(1.0, 1.0) == 0.0
    assert mx.phi(1.0, 0.5) == pytest.approx(-0.5e14)


def test_the_metrics_describe_themselves():
    assert (mx.PHI.name, mx.PHI.higher_is_better) == ("phi", True)
    assert (mx.UNDESIRABLE_RATIO.name, mx.UNDESIRABLE_RATIO.higher_is_better) == ("undesirable_ratio", False)
    assert (mx.MASK_CORRELATION.name, mx.MASK_CORRELATION.higher_is_better) == ("mask_correlation", True)
    assert (mx.TOP_IOU.name, mx.TOP_IOU.higher_is_better) == ("top5_iou", True)
    assert mx.PHI.description == "relative gain of the top-1 probability, 100*(f(Q)-f(X))/(1-f(X)) (Eq. 8)"
    assert mx.UNDESIRABLE_RATIO.description == "share of pixels with heatmap > 0.6 (Table 2)"
    assert mx.MASK_CORRELATION.description == "mean pairwise Pearson r of masks across seeds"
    assert mx.TOP_IOU.description == "mean pairwise IoU of the top 5% heatmap pixels across seeds"
    with pytest.raises(dataclasses.FrozenInstanceError):
        mx.PHI.name = "gain"  # shared by every table: a value, not a place
    assert mx.Metric("m", False, "d", len) == mx.Metric("m", False, "d", len)


def test_undesirable_ratio_counts_pixels_strictly_above_the_threshold():
    heat = np.array([[0.6, 0.61], [0.2, 0.9]])
    assert mx.undesirable_ratio(heat) == 0.5  # 0.6 itself is not undesirable (Table 2: "above 0.6")
    assert mx.UNDESIRABLE_RATIO(heat) == 0.5
    assert mx.undesirable_ratio(heat, threshold=0.1) == 1.0
    assert mx.undesirable_ratio(heat, threshold=0.9) == 0.0


def test_mask_correlation_is_the_mean_pairwise_pearson_r():
    a, b = np.array([0.0, 1, 2, 3]), np.array([3.0, 2, 1, 0])
    assert mx.mask_correlation([a, a]) == pytest.approx(1.0)
    assert mx.mask_correlation([a, b]) == pytest.approx(-1.0)
    assert mx.mask_correlation([a, a, b]) == pytest.approx(-1 / 3)  # pairs: +1, -1, -1
    c = np.array([0.0, 1, 0, 1])  # centred: (-1.5, -.5, .5, 1.5) . (-.5, .5, -.5, .5) = 1; norms sqrt 5 and 1
    assert mx.mask_correlation([a, c]) == pytest.approx(1 / math.sqrt(5))
    flat = np.ones(4)
    assert mx.mask_correlation([flat, flat]) == 1.0  # two equal constant masks agree
    assert mx.mask_correlation([flat, 0.5 * flat]) == 0.0  # two different constants do not
    assert mx.mask_correlation([flat, a]) == 0.0 and mx.mask_correlation([a, flat]) == 0.0
    assert math.isnan(mx.mask_correlation([a]))  # no pair
    assert mx.MASK_CORRELATION([a.reshape(2, 2), b.reshape(2, 2)]) == pytest.approx(-1.0)


def test_top_mask_takes_the_highest_pixels_and_breaks_ties_by_position():
    heat = np.array([[0.1, 0.5], [0.5, 0.2]])
    np.testing.assert_array_equal(mx.top_mask(heat, 0.5), [[False, True], [True, False]])
    np.testing.assert_array_equal(mx.top_mask(heat, 0.25), [[False, True], [False, False]])  # the first of the tie
    np.testing.assert_array_equal(mx.top_mask(heat, 0.1), [[False, True], [False, False]])  # at least one pixel
    np.testing.assert_array_equal(mx.top_mask(heat, 0.4), [[False, True], [True, False]])  # 1.6 rounds to 2
    np.testing.assert_array_equal(mx.top_mask(heat, 0.6), [[False, True], [True, False]])  # 2.4 rounds to 2
    assert mx.top_mask(heat, 1.0).all()


def test_iou():
    a = np.array([True, True, False, False])
    b = np.array([False, True, True, False])
    assert mx.iou(a, b) == pytest.approx(1 / 3)
    assert mx.iou(a, a) == 1.0
    none = np.zeros(4, dtype=bool)
    assert mx.iou(none, none) == 1.0  # two empty sets agree
    assert mx.iou(a, none) == 0.0


def test_top_iou_does_not_count_unmarked_filler_as_agreement():
    one = np.array([[1.0, 0.0], [0.0, 0.0]])
    other = np.array([[0.0, 1.0], [0.0, 0.0]])
    # the top half of each is its marked pixel plus the first unmarked one: the same filler for both,
    # which must not make them agree
    assert mx.top_iou([one, other], fraction=0.5) == 0.0
    assert mx.top_iou([one, one], fraction=0.5) == 1.0
    assert mx.top_iou([one, one, other], fraction=0.5) == pytest.approx(1 / 3)
    assert math.isnan(mx.top_iou([one]))


def test_top_iou_defaults_to_the_top_five_percent():
    rng = np.random.default_rng(0)
    a = rng.random((20, 20)) + 0.1  # 400 marked pixels, top 5% = 20
    b = a.copy()
    order = np.argsort(-a, axis=None)
    b.flat[order[10:20]] = 0.05  # half of a's top 20 leave b's top 20, the next 10 enter
    assert mx.top_iou([a, b]) == pytest.approx(10 / 30)  # 10 shared of 30
    assert mx.TOP_IOU([a, b]) == pytest.approx(10 / 30)
    assert mx.top_iou([a, b], fraction=0.025) == 1.0  # the top 10 are the same


def test_mean_ci_is_student_t():
    mean, half = mx.mean_ci([1.0, 2.0, 3.0])  # s = 1, n = 3: t(0.975, 2) = 4.3027 (tables)
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    mean, half = mx.mean_ci([1.0, 2.0, 3.0], level=0.9)  # t(0.95, 2) = 2.9200
    assert half == pytest.approx(2.919986 / math.sqrt(3), rel=1e-6)
    mean, half = mx.mean_ci([1.0, float("nan"), 3.0, float("inf")])  # only finite values: s = sqrt 2, n = 2
    assert mean == 2.0 and half == pytest.approx(12.706205, rel=1e-6)  # t(0.975, 1) x sqrt(2) / sqrt(2)
    mean, half = mx.mean_ci([5.0])
    assert mean == 5.0 and math.isnan(half)
    assert all(math.isnan(v) for v in mx.mean_ci([]))
    assert all(math.isnan(v) for v in mx.mean_ci([float("nan")]))
