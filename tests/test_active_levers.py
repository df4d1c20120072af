"""The active-set optimiser's levers (``ActiveSet`` fields) on a separable toy loss whose optimum is known.

Model part: -c t + d t**2 summed over the elements of a patch P, t = 1 - M (blurring P pays, with
diminishing returns), nothing elsewhere; R_M: the L1 term lambda2 / n x sum(t) alone. Each element of P
then has its optimum at t* = (c - lambda2 / n) / (2 d), every other element stays at 1.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bbx.maths.active import ActiveSet, optimise
from bbx.maths.active_steps import nearby, quasi_newton

SHAPE = (8, 8)
N = SHAPE[0] * SHAPE[1]
LAMBDA2, C, D = 3.0, 0.5, 0.5
P = np.zeros(SHAPE, dtype=bool)
P[2:5, 3:6] = True
T_STAR = (C - LAMBDA2 / N) / (2 * D)
# one-sided differences of step c see the slope at t + c / 2: the optimum they find is up to c / 2 short
TOLERANCE = ActiveSet().step / 2 + 0.005


class Toy:
    """The model part, recording the size of every batch it is asked for (one query per mask)."""

    def __init__(self, weights: np.ndarray | None = None):
        self.weights = P.astype(float) if weights is None else weights
        self.batches: list[int] = []

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.batches.append(len(masks))
        t = 1.0 - masks
        return (self.weights * (-C * t + D * t ** 2)).sum(axis=(1, 2))


def l1(mask: np.ndarray) -> tuple[float, np.ndarray]:
    return float(LAMBDA2 / N * (1.0 - mask).sum()), np.full(mask.shape, -LAMBDA2 / N)


def run(settings: ActiveSet, budget: int = 3000, toy: Toy | None = None):
    toy = toy or Toy()
    return optimise(toy, l1, SHAPE, budget, 0.0, LAMBDA2, settings), toy


OFF = ActiveSet(reuse=False, local=0, stall=0.0)


@pytest.mark.parametrize("settings", [OFF, ActiveSet(), replace(OFF, reuse=True), replace(OFF, local=1),
                                      replace(OFF, stall=0.1), replace(OFF, memory=4)],
                         ids=["off", "defaults", "reuse", "local", "stall", "memory"])
def test_each_lever_finds_the_known_optimum(settings):
    result, toy = run(settings)
    assert result.converged and result.queries == sum(toy.batches) <= 3000
    assert np.allclose(1.0 - result.mask[P], T_STAR, atol=TOLERANCE), result.mask[P]
    assert (result.mask[~P] == 1.0).all()
    assert all(b <= a for a, b in zip(result.history, result.history[1:]))


def test_reuse_retries_a_failed_step_without_probing_the_slopes_again():
    without, _ = run(OFF)
    with_reuse, toy = run(replace(OFF, reuse=True))
    assert with_reuse.queries < without.queries  # the same answer (above) for fewer queries
    # after a batch of trials that lowered nothing, the next batch is trials again, not |A| probes
    trials = ActiveSet().trials
    assert any(a == b == trials for a, b in zip(toy.batches, toy.batches[1:]))


def test_a_local_screen_looks_near_the_moved_elements_before_a_full_one():
    result, toy = run(replace(OFF, local=1))
    screens = [b for b in toy.batches if b > P.sum()]  # the descent's batches: |A| probes, or the trials
    ring = nearby(np.where(P, 0.5, 1.0), np.zeros(N), 1, 1.0)
    assert ring.sum() == 25 and ring.reshape(SHAPE)[P].all()
    # every element, then the ring around P (found nothing), then the rest (which certifies convergence)
    assert screens == [N, ring.sum() - P.sum(), N - P.sum()] and result.converged
    assert result.screens == 3


def test_nearby_takes_the_ring_and_the_earlier_candidates():
    mask = np.ones(SHAPE)
    mask[0, 0] = 0.5
    seen = np.zeros(N)
    seen[63] = 2.0
    got = nearby(mask, seen, 1, 1.0).reshape(SHAPE)
    assert got.sum() == 5 and got[0, 0] and got[1, 1] and got[7, 7] and not got[2, 2]


def test_quasi_newton_is_newtons_step_on_a_quadratic():
    h = np.array([1.0, 4.0, 0.5, 2.0])  # diagonal Hessian
    pairs = [(e, h * e) for e in np.eye(4) * 0.1]
    grad = np.array([1.0, -2.0, 0.5, 0.3])
    flat = np.full(4, 0.5)
    assert np.allclose(quasi_newton(grad, pairs, flat), grad / h)
    # an element that the step would push out of [0, 1] is left where it is
    assert quasi_newton(grad, pairs, np.array([0.5, 1.0, 0.5, 0.5]))[1] == 0.0  # raising an element at 1


def test_room_steps_lets_the_set_grow_with_the_budget():
    small = replace(OFF, max_active=3)
    capped, _ = run(small, budget=400)
    grown, _ = run(replace(small, room_steps=10), budget=4000)
    assert len(capped.active) <= 3 + 4 and len(grown.active) >= P.sum()
    assert np.allclose(1.0 - grown.mask[P], T_STAR, atol=TOLERANCE)


def test_a_block_screen_finds_a_move_that_no_single_element_makes():
    # the model part pays for the square of the mean blur of a 2 x 2 block: one element lowered by
    # 0.5 gains 1/64, less than its L1 cost (0.5 x 3/64), the whole block 1/4 against 4 x that cost
    block = np.zeros(SHAPE, dtype=bool)
    block[2:4, 2:4] = True

    def joint(masks: np.ndarray) -> np.ndarray:
        return -((1.0 - masks)[:, block].mean(axis=1) ** 2)

    alone = optimise(joint, l1, SHAPE, 3000, 0.0, LAMBDA2, ActiveSet())
    assert alone.converged and (alone.mask == 1.0).all()  # no element pays alone: M = 1 is a fixed point
    together = optimise(joint, l1, SHAPE, 3000, 0.0, LAMBDA2, ActiveSet(block_screen=2))
    assert together.converged and np.allclose(together.mask[block], 0.0) and (together.mask[~block] == 1.0).all()
