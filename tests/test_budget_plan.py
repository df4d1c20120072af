"""The budget plan and the range of every option of :class:`ExplainConfig`, from their promises.

The promise of a budget (bbx.config.ExplainConfig.plan): the run costs 2 + 2 * pairs * iterations
queries (the image, the pairs of every step, the final perturbed image), never more than the budget,
and with no ``pairs`` given the budget is spent: one more step would not fit. The expectations
below are that sentence, checked for every budget from 4 to 400, odd and even, not the
implementation's own arithmetic.
"""

from __future__ import annotations

import dataclasses

import pytest

from bbx import defaults
from bbx.config import ExplainConfig
from bbx.errors import OptionError
from bbx.explain import resolve


def cost(iterations: int, pairs: int) -> int:
    return 2 + 2 * pairs * iterations


@pytest.mark.parametrize("iterations", [1, 2, 3, 7, 200])
def test_a_budget_alone_is_spent_and_never_exceeded(iterations):
    for budget in range(4, 401):  # odd and even
        its, pairs = ExplainConfig(budget=budget, iterations=iterations).plan()
        assert its >= 1 and pairs >= 1
        assert cost(its, pairs) <= budget, (budget, its, pairs)
        assert cost(its + 1, pairs) > budget, (budget, its, pairs)  # one more step would not fit: spent
        # pairs: the most that let the asked iterations fit (at least 1)
        assert pairs == 1 or cost(iterations, pairs) <= budget, (budget, pairs)
        assert cost(iterations, pairs + 1) > budget, (budget, pairs)


@pytest.mark.parametrize("budget,iterations,expected", [
    (4, 200, (1, 1)),  # the smallest budget: the image, one pair, the final image
    (5, 200, (1, 1)),
    (51, 200, (24, 1)),  # 2 + 2*24 = 50; 52 would pass the budget by one
    (52, 200, (25, 1)),
    (1000, 200, (249, 2)),  # 2 pairs x 200 fit in 998; then 998 // 4 steps
    (1001, 10, (10, 49)),  # 2 + 2 x 49 pairs x 10 steps = 982; 50 pairs would cost 1002
])
def test_known_plans(budget, iterations, expected):
    assert ExplainConfig(budget=budget, iterations=iterations).plan() == expected


@pytest.mark.parametrize("pairs", [1, 3, 4])
@pytest.mark.parametrize("iterations", [1, 5, 30])
def test_given_pairs_and_iterations_are_only_capped(pairs, iterations):
    for budget in range(2 + 2 * pairs, 400):
        its, got = ExplainConfig(budget=budget, iterations=iterations, pairs=pairs).plan()
        assert got == pairs and 1 <= its <= iterations
        assert cost(its, pairs) <= budget
        assert its == iterations or cost(its + 1, pairs) > budget  # cut only as far as the budget needs


@pytest.mark.parametrize("budget,pairs,expected", [(49, 4, 5), (50, 4, 6), (51, 4, 6), (57, 4, 6), (58, 4, 7)])
def test_known_caps(budget, pairs, expected):
    assert ExplainConfig(budget=budget, iterations=30, pairs=pairs).plan() == (expected, pairs)


def test_without_a_budget_the_plan_is_what_was_asked():
    assert ExplainConfig().plan() == (defaults.ITERATIONS, defaults.PAIRS)
    assert ExplainConfig(iterations=7, pairs=3).plan() == (7, 3)
    assert ExplainConfig(iterations=7).plan() == (7, 8)


@pytest.mark.parametrize("budget,pairs,needs", [(5, 2, 6), (9, 4, 10), (4, 2, 6)])
def test_a_budget_below_one_step_is_refused_with_what_a_step_needs(budget, pairs, needs):
    with pytest.raises(OptionError, match=rf"^budget {budget} is too small: one step needs {needs} queries$"):
        ExplainConfig(budget=budget, pairs=pairs).plan()
    ExplainConfig(budget=needs, pairs=pairs).plan()  # exactly one step fits


def test_a_huge_budget_never_draws_more_pairs_than_a_step_may_hold():
    # 28 x 28 float32 directions: 64 MiB hold 67108864 / 3136 = 21399 of them
    its, pairs = ExplainConfig(budget=10**9, iterations=1).plan()
    assert pairs == 21399 and its == (10**9 - 2) // (2 * 21399)
    assert ExplainConfig(mask_size=512).max_pairs() == 64  # 64 MiB / (4 B x 512 x 512)
    assert ExplainConfig(mask_size=8).max_pairs() == 100_000  # the count cap binds first
    assert ExplainConfig(mask_size=2).max_pairs() == 100_000


def test_given_names_the_fields_set_away_from_their_defaults():
    assert ExplainConfig().given() == {}
    assert ExplainConfig(method="ftc").given() == {}  # the method is not an option
    assert ExplainConfig(method="ftc", budget=51, seed=3, lr=0.1).given() == {"budget": 51, "seed": 3}


# -- ranges: the edge accepted, one step beyond refused, in one exact line ---------------------------
EDGES = [  # field, accepted at the edge, refused beyond it, the refusal
    ("iterations", 1, 0, "iterations must be in 1..1,000,000, not 0"),
    ("iterations", 1_000_000, 1_000_001, "iterations must be in 1..1,000,000, not 1000001"),
    ("pairs", 1, 0, "pairs must be in 1..100,000, not 0"),
    ("budget", 4, 3, "budget must be in 4..10^9 queries, not 3"),
    ("budget", 10**9, 10**9 + 1, "budget must be in 4..10^9 queries, not 1000000001"),
    ("step", 1.0, 1.0001, "step must be in (0, 1], not 1.0001"),
    ("step", 1e-9, 0.0, "step must be in (0, 1], not 0.0"),
    ("mask_size", 2, 1, "mask size must be in 2..512, not 1"),
    ("mask_size", 512, 513, "mask size must be in 2..512, not 513"),
    ("resolution", 1, 0, "resolution must be in 1..mask size (28), not 0"),
    ("resolution", 28, 29, "resolution must be in 1..mask size (28), not 29"),
    ("lr", 10.0, 10.5, "lr must be in (0, 10], not 10.5"),
    ("lr", 1e-9, 0.0, "lr must be in (0, 10], not 0.0"),
    ("beta1", 0.0, -0.1, "beta1 must be in [0, 1), not -0.1"),
    ("beta1", 0.999, 1.0, "beta1 must be in [0, 1), not 1.0"),
    ("lambda1", 0.0, -1.0, "lambda1, lambda2 and gamma must be in [0, 1e+06], not -1.0, 3.0, 0.3"),
    ("lambda2", 1e6, 1.5e6, "lambda1, lambda2 and gamma must be in [0, 1e+06], not 1.7, 1500000.0, 0.3"),
    ("gamma", 1e6, 2e6, "lambda1, lambda2 and gamma must be in [0, 1e+06], not 1.7, 3.0, 2000000.0"),
    ("gamma", 0.0, -0.5, "lambda1, lambda2 and gamma must be in [0, 1e+06], not 1.7, 3.0, -0.5"),
    ("beta", 1.0, 0.99, "beta must be in [1, 10], not 0.99"),
    ("beta", 10.0, 10.5, "beta must be in [1, 10], not 10.5"),
    ("sigma", 0.0, -0.1, "blur needs sigma in [0, 1000] and an odd kernel size up to 1001"),
    ("sigma", 1000.0, 1000.5, "blur needs sigma in [0, 1000] and an odd kernel size up to 1001"),
    ("kernel", 1, -1, "blur needs sigma in [0, 1000] and an odd kernel size up to 1001"),
    ("kernel", 1001, 1003, "blur needs sigma in [0, 1000] and an odd kernel size up to 1001"),
    ("kernel", 13, 12, "blur needs sigma in [0, 1000] and an odd kernel size up to 1001"),
    ("seed", 0, -1, "seed must be a non-negative integer, not -1"),
    ("seed", 2**63 - 1, 2**63, f"seed must be a non-negative integer, not {2**63}"),
    ("patch", 1, 0, "patch, stride and window must be at least 1 pixel, not 0, 8, 16"),
    ("stride", 1, 0, "patch, stride and window must be at least 1 pixel, not 16, 0, 16"),
    ("window", 1, 0, "patch, stride and window must be at least 1 pixel, not 16, 8, 0"),
    ("area", 1.0, 1.01, "area must be a fraction in (0, 1], not 1.01"),
    ("area", 1e-9, 0.0, "area must be a fraction in (0, 1], not 0.0"),
    ("estimator", "nes", "adam", "estimator must be one of active, nes, spsa, not 'adam'"),
    ("query_path", "reference", "gpu", "query path must be one of auto, onnx, device, fused, numpy, reference, not 'gpu'"),
    ("lr", 1.0, float("nan"), "lr nan: each option must be a finite number"),
]


def _random_estimator(field: str) -> dict:
    """pairs and resolution belong to the random estimators (the default, active, refuses them)."""
    return {"estimator": "nes"} if field in ("pairs", "resolution") else {}


@pytest.mark.parametrize("field,ok,bad,message", EDGES, ids=[f"{e[0]}={e[2]}" for e in EDGES])
def test_each_option_has_its_range(field, ok, bad, message):
    extra = _random_estimator(field)
    assert ExplainConfig(**{field: ok}, **extra).validate() == ExplainConfig(**{field: ok}, **extra)
    with pytest.raises(OptionError) as err:
        ExplainConfig(**{field: bad}, **extra).validate()
    if field == "lr":  # nan is also out of (0, 10]: both lines
        assert str(err.value).split("; ")[0] == message
    else:
        assert str(err.value) == message


def test_every_finite_field_is_checked_for_nan():
    for field in ("step", "lr", "beta1", "lambda1", "lambda2", "beta", "gamma", "sigma", "area"):
        with pytest.raises(OptionError, match=f"^{field} nan: each option must be a finite number"):
            ExplainConfig(**{field: float("nan")}).validate()


def test_pairs_past_the_step_memory_are_refused_in_mib():
    ExplainConfig(estimator="nes", mask_size=512, pairs=64).validate()  # 64 MiB exactly
    with pytest.raises(OptionError) as err:
        ExplainConfig(estimator="nes", mask_size=512, pairs=65).validate()
    assert str(err.value) == "pairs 65 of 512x512 directions are 65 MiB per step, above bbx's limit of 64 MiB"
    ExplainConfig(estimator="nes", pairs=100_000, mask_size=8).validate()  # 100,000 x 256 B: within 64 MiB
    with pytest.raises(OptionError, match=r"^pairs must be in 1..100,000, not 100001; pairs 100001 of 8x8"):
        ExplainConfig(estimator="nes", pairs=100_001, mask_size=8).validate()
    with pytest.raises(OptionError, match=r"^mask size must be in 2..512, not 600$"):  # no memory line for a bad size
        ExplainConfig(estimator="nes", pairs=10, mask_size=600).validate()
    with pytest.raises(OptionError, match=r"^mask size must be in 2..512, not 513$"):  # 64 x 513 x 513 x 4 B > 64 MiB
        ExplainConfig(estimator="nes", pairs=64, mask_size=513).validate()


def test_the_active_estimator_refuses_pairs_and_a_direction_grid():
    """pairs and resolution belong to the random estimators: with active (the default) the refusal names
    the method and the estimators that read them; a config alone does not know its method yet."""
    for field in ("pairs", "resolution"):
        ExplainConfig(**{field: 4}).validate()
        with pytest.raises(OptionError) as err:
            resolve("ftc", None, {field: 4})
        assert str(err.value).startswith(f"method ftc does not use {field} (it reads ")
        assert str(err.value).endswith("; with --estimator nes or spsa it does")
    with pytest.raises(OptionError, match=r"^method greedy does not use pairs \(it reads "):
        resolve("greedy", None, {"pairs": 4})
    for estimator in ("nes", "spsa"):
        assert resolve("ftc", None, {"pairs": 4, "resolution": 4, "estimator": estimator}).pairs == 4


def test_validate_returns_the_config_itself():
    cfg = ExplainConfig(budget=51)
    assert cfg.validate() is cfg


def test_a_config_is_a_frozen_value():
    cfg = ExplainConfig(budget=51)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.budget = 52  # one config is shared by the runs of an evaluation: nobody may change it
    assert cfg == ExplainConfig(budget=51) and hash(cfg) == hash(ExplainConfig(budget=51))
    assert ExplainConfig().method is None  # None: the method explain() is given, else the default
    assert (ExplainConfig().budget, ExplainConfig().pairs, ExplainConfig().resolution) == (None, None, None)


def test_fields_names_every_option_in_order():
    from bbx.config import FIELDS

    assert FIELDS == ("method", "budget", "seed", "sigma", "kernel", "mask_size", "iterations", "pairs", "estimator",
                      "step", "resolution", "lr", "beta1", "lambda1", "lambda2", "beta", "gamma", "query_path",
                      "patch", "area", "stride", "window")
