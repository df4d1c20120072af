"""Property-based tests (hypothesis) of bbx's pure parts: masking, upsampling, regulariser, estimator.

Examples are few and small (``max_examples`` modest, tiny arrays) so that the file runs in
seconds; each property is one the explanation relies on:

* Q(X; M) stays between X and h(X) for every mask in [0, 1] (a blend, never an extrapolation);
* bilinear upsampling has the asked shape, stays within the input's range, keeps constants;
* the regulariser's exact gradient agrees with central finite differences away from its kinks;
* the antithetic NES and SPSA estimators are unbiased on a quadratic loss, within a tolerance
  that follows from the number of sampled directions.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from bbx.maths.estimate import Estimator  # noqa: E402
from bbx.maths.objective import Objective, total_variation  # noqa: E402
from bbx.maths.perturb import BlurSpec, Perturber, upsample  # noqa: E402

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: The statistical test passes by chance with probability ~1 - 1e-5 per example: fixed examples keep CI stable.
STATISTICAL = settings(max_examples=16, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, 2**32 - 1)
sides = st.integers(1, 9)
unit = st.floats(0.0, 1.0, allow_nan=False, width=32)


# -- masking operator -------------------------------------------------------------------------

@FAST
@given(seed=seeds, h=st.integers(4, 24), w=st.integers(4, 24), mh=sides, mw=sides,
       batch=st.integers(1, 3), sigma=st.floats(0.0, 6.0), kernel=st.sampled_from([1, 3, 5, 11]),
       data=st.data())
def test_q_stays_between_x_and_its_blur(seed, h, w, mh, mw, batch, sigma, kernel, data):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3), dtype=np.float32)
    pert = Perturber(image, (mh, mw), BlurSpec(sigma, kernel))
    masks = data.draw(hnp.arrays(np.float32, (batch, mh, mw), elements=unit), label="masks")
    q = pert(masks)
    assert q.shape == (batch, h, w, 3)
    lo = np.minimum(image, pert.blurred)[None]
    hi = np.maximum(image, pert.blurred)[None]
    tol = 1e-6
    assert (q >= lo - tol).all() and (q <= hi + tol).all()
    # the blur itself is a weighted average: it stays within the image's range
    assert pert.blurred.min() >= image.min() - tol and pert.blurred.max() <= image.max() + tol


@FAST
@given(seed=seeds, h=st.integers(4, 20), mh=sides)
def test_q_of_all_ones_is_x_and_of_all_zeros_is_the_blur(seed, h, mh):
    image = np.random.default_rng(seed).random((h, h, 3), dtype=np.float32)
    pert = Perturber(image, (mh, mh), BlurSpec(5.0, 11))
    np.testing.assert_allclose(pert(np.ones((mh, mh), np.float32)), image, atol=1e-6)
    np.testing.assert_allclose(pert(np.zeros((mh, mh), np.float32)), pert.blurred, atol=1e-6)


# -- upsampling -------------------------------------------------------------------------------

@FAST
@given(lead=st.lists(st.integers(1, 3), max_size=2), h=sides, w=sides,
       H=st.integers(1, 40), W=st.integers(1, 40), data=st.data())
def test_upsample_shape_and_range(lead, h, w, H, W, data):
    values = st.floats(-1e3, 1e3, allow_nan=False, width=32)
    m = data.draw(hnp.arrays(np.float32, (*lead, h, w), elements=values), label="masks")
    up = upsample(m, (H, W))
    assert up.shape == (*lead, H, W)
    assert np.isfinite(up).all()
    # a convex combination of input values, per mask
    flat_in = m.reshape(-1, h * w).astype(np.float64)
    flat_up = up.reshape(-1, H * W).astype(np.float64)
    span = np.abs(flat_in).max(axis=1, initial=0.0)
    tol = 1e-6 * (1.0 + span)[:, None]
    assert (flat_up >= flat_in.min(axis=1)[:, None] - tol).all()
    assert (flat_up <= flat_in.max(axis=1)[:, None] + tol).all()


@FAST
@given(c=st.floats(-10.0, 10.0, allow_nan=False, width=32), h=sides, w=sides,
       H=st.integers(1, 40), W=st.integers(1, 40))
def test_upsample_keeps_a_constant(c, h, w, H, W):
    up = upsample(np.full((2, h, w), c, np.float32), (H, W))
    assert up.shape == (2, H, W)
    np.testing.assert_allclose(up, np.float32(c), rtol=1e-6, atol=1e-6)


# -- regulariser gradient ---------------------------------------------------------------------

def _kink_free_mask(r: np.ndarray, centre: float) -> np.ndarray:
    """A mask whose neighbours differ by at least 0.1 and whose values stay 0.05 away from 1.

    ``centre + (-1)^(i+j) * r`` with ``r`` in [0.05, 0.45]: every forward difference is
    ``+-(r_a + r_b)``, never near 0 (the kinks of TV), and no value is near 1 (the kink of |1 - M|).
    """
    i, j = np.indices(r.shape)
    return centre + np.where((i + j) % 2 == 0, 1.0, -1.0) * r


def _central_differences(f, m: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(m)
    for idx in np.ndindex(m.shape):
        e = np.zeros_like(m)
        e[idx] = h
        g[idx] = (f(m + e) - f(m - e)) / (2 * h)
    return g


masks_r = st.tuples(st.integers(2, 6), st.integers(2, 6)).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=st.floats(0.05, 0.45)))


@FAST
@given(r=masks_r, centre=st.sampled_from([0.5, 1.5]), beta=st.floats(1.0, 3.0),
       lambda1=st.floats(0.0, 5.0), lambda2=st.floats(0.0, 5.0))
def test_regularizer_gradient_matches_finite_differences(r, centre, beta, lambda1, lambda2):
    mask = _kink_free_mask(r, centre)
    obj = Objective("ftc", lambda1=lambda1, lambda2=lambda2, beta=beta)
    value, grad = obj.regularizer(mask)
    assert grad.shape == mask.shape and np.isfinite(value)
    fd = _central_differences(lambda m: obj.regularizer(m)[0], mask)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


@FAST
@given(r=masks_r, centre=st.floats(-2.0, 2.0), beta=st.sampled_from([1.0, 1.5, 2.0, 3.0]))
def test_total_variation_gradient_matches_finite_differences(r, centre, beta):
    mask = _kink_free_mask(r, centre)
    tv, grad = total_variation(mask, beta)
    assert tv > 0
    fd = _central_differences(lambda m: total_variation(m, beta)[0], mask)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


# -- estimator unbiasedness -------------------------------------------------------------------

def _quadratic(a: np.ndarray, b: np.ndarray):
    """L(M) = sum(a * (M - b)^2) for a batch of masks, and its gradient 2 a (M - b)."""
    def loss(masks: np.ndarray) -> np.ndarray:
        return (a * (masks - b) ** 2).sum(axis=(1, 2))
    return loss


@STATISTICAL
@given(seed=seeds, side=st.integers(2, 4), kind=st.sampled_from(["nes", "spsa"]),
       pairs=st.sampled_from([1, 4, 16]), step=st.floats(0.01, 0.5))
def test_estimator_is_unbiased_on_a_quadratic(seed, side, kind, pairs, step):
    rng = np.random.default_rng(seed)
    shape = (side, side)
    a, b, mask = rng.uniform(0.5, 2.0, shape), rng.uniform(0.0, 1.0, shape), rng.uniform(0.0, 1.0, shape)
    g_true = 2 * a * (mask - b)
    est = Estimator(kind, pairs=pairs, step=step)
    loss = _quadratic(a, b)
    repeats = 4096 // pairs
    samples = np.stack([est.estimate(loss, mask, rng)[0] for _ in range(repeats)])
    n = repeats * pairs  # directions sampled in all
    # For a quadratic, each direction contributes (g . u) u exactly (the antithetic difference
    # cancels the curvature): variance |g|^2 + g_i^2 per element for Gaussian u, |g|^2 - g_i^2
    # for +-1 u. The mean of n such terms is within 5 standard errors of g_i.
    total = (g_true**2).sum()
    var = total + g_true**2 if kind == "nes" else total - g_true**2
    tol = 5.0 * np.sqrt(var / n) + 1e-9
    err = np.abs(samples.mean(axis=0) - g_true)
    assert (err <= tol).all(), (err / tol).max()


@FAST
@given(seed=seeds, side=st.integers(2, 5), pairs=st.integers(1, 8), step=st.floats(0.01, 0.5))
def test_spsa_loss_value_is_exact_on_a_quadratic(seed, side, pairs, step):
    """With +-1 directions, the mean probe loss is L(M) + c^2 sum(a), whatever the draw."""
    rng = np.random.default_rng(seed)
    shape = (side, side)
    a, b, mask = rng.uniform(0.5, 2.0, shape), rng.uniform(0.0, 1.0, shape), rng.uniform(0.0, 1.0, shape)
    loss = _quadratic(a, b)
    _, value = Estimator("spsa", pairs=pairs, step=step).estimate(loss, mask, rng)
    expected = loss(mask[None])[0] + step**2 * a.sum()
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)
