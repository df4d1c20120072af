"""The active-set optimiser, the convergence verdict and RISE, against the planted model's known answer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import bbx
import planted
from bbx.maths.active_steps import blocks
from bbx.maths.convergence import Convergence, assess
from bbx.errors import OptionError
from bbx.evaluation.runner import EvalConfig, evaluate
from bbx.config import ExplainConfig
from bbx.methods.rise import random_masks

A, C = planted.patch_mask(planted.A), planted.patch_mask(planted.C)


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "target.onnx", "target"))


def test_active_converges_where_nes_does_not_at_equal_queries(target_model):
    active = bbx.explain(target_model, planted.photo(), target=0, method="ftc", estimator="active", budget=1200)
    nes = bbx.explain(target_model, planted.photo(), target=0, method="ftc", estimator="nes", budget=1200)
    assert active.queries <= 1200 and nes.queries <= 1200
    a, n = active.convergence, nes.convergence
    assert a["converged"] and not n["converged"], (a, n)
    assert a["objective_final"] < n["objective_final"] < a["objective_at_ones"] == pytest.approx(n["objective_at_ones"])
    assert a["noise"] < 1e-3 < n["noise"]  # the active history is exact J; NES's is probes' means
    # the planted answer: patch A, not the decoy C
    assert active.heatmap[A].mean() > 0.8 and active.heatmap[C].max() < 0.05
    assert (active.heatmap[~A] > 0.6).mean() < 0.02


def test_active_never_ends_above_m_equal_1_and_is_a_function_of_its_inputs(target_model):
    e = bbx.explain(target_model, planted.photo(), target=0, method="ftc", estimator="active", budget=900)
    history = e.loss_history
    assert all(b <= a for a, b in zip(history, history[1:]))  # only steps that lowered J were taken
    assert history[-1] == pytest.approx(e.convergence["objective_final"], abs=1e-6)  # exact J, no estimate
    again = bbx.explain(target_model, planted.photo(), target=0, method="ftc", estimator="active", budget=900)
    assert np.array_equal(e.mask, again.mask)  # no random draws
    with pytest.raises(bbx.OptionError, match="ftc does not use seed"):  # so a seed is refused, not dropped
        bbx.explain(target_model, planted.photo(), target=0, method="ftc", estimator="active", budget=900, seed=7)


def test_a_run_that_cannot_converge_says_so(target_model):
    e = bbx.explain(target_model, planted.photo(), target=0, method="ftc", estimator="nes", iterations=3, pairs=1)
    c = e.convergence
    assert c["converged"] is False and c["suggested_budget"] > e.queries
    assert c["objective_final"] >= c["objective_at_ones"]  # 3 noisy steps ended worse than no mask
    assert Convergence(**c).line().startswith("NOT converged") and "--budget" in Convergence(**c).line()
    assert e.summary()["convergence"] == c


def test_assess_reads_the_ends_and_the_tail():
    assert not assess(-1.0, -0.5, [-1.0, -0.6, -0.5], 10).converged  # ended above M = 1
    falling = assess(0.0, -1.0, list(np.linspace(0.0, -1.0, 40)), 100, stopped=False)
    assert not falling.converged and "budget ran out" in falling.reason and falling.suggested_budget == 200
    flat = assess(0.0, -1.0, [0.0] + [-1.0] * 39, 100, stopped=True)
    assert flat.converged and abs(flat.trend) < 1e-12 and flat.noise < 1e-12
    # the optimiser stopped on its own test (no step lowers the exact J) with J falling until then:
    # converged, and no larger budget suggested (more queries would change nothing)
    certified = assess(0.0, -1.0, list(np.linspace(0.0, -1.0, 40)), 100, stopped=True)
    assert certified.converged and certified.suggested_budget is None and certified.trend < 0
    assert assess(0.0, -1.0, list(np.linspace(0.0, -1.0, 40)), 100).converged is False  # no test of its own: the tail decides


def test_the_cli_says_in_one_line_whether_it_converged(tmp_path):
    model = planted.build(tmp_path / "target.onnx", "target")
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray((planted.photo() * 255).astype(np.uint8)).save(photo)
    proc = subprocess.run([sys.executable, "-m", "bbx", "explain", model, photo, "--target", "0", "--method", "ftc",
                           "--estimator", "nes", "--iterations", "3", "--pairs", "1", "--out", tmp_path / "o", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("NOT converged") and "--budget" in last
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["convergence"]["converged"] is False


def test_blocks_fit_the_room():
    free = np.ones(28 * 28, dtype=bool)
    assert len(blocks((28, 28), free, 784)) == 784
    groups = blocks((28, 28), free, 200)
    assert len(groups) <= 200 and sorted(np.concatenate(groups).tolist()) == list(range(784))
    assert blocks((28, 28), free, 0) is None


def test_rise_finds_the_planted_patch(target_model):
    e = bbx.explain(target_model, planted.photo(), target=0, method="rise", budget=500, seed=0)
    assert e.queries == 500 and e.config["method"] == "rise"
    assert (e.heatmap[A] > 0.6).mean() > 0.7 and (e.heatmap[~A] > 0.6).mean() < 0.03
    assert e.heatmap[A].mean() > 3 * e.heatmap[C].mean()
    assert e.prob_after > e.prob_before  # blurring what RISE marks raises the target
    other = bbx.explain(target_model, planted.photo(), target=0, method="rise", budget=500, seed=1)
    assert not np.array_equal(other.mask, e.mask)  # seeded: other masks, the same patch
    assert (other.heatmap[A] > 0.6).mean() > 0.7
    with pytest.raises(OptionError):
        bbx.explain(target_model, planted.photo(), method="rise", budget=2)
    with pytest.raises(OptionError, match="does not use"):
        bbx.explain(target_model, planted.photo(), method="rise", lr=0.5)


def test_rise_masks_are_smooth_shifted_grids():
    masks = random_masks(np.random.default_rng(0), 200, 7, 0.5, 28)
    assert masks.shape == (200, 28, 28) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.5) < 0.05
    assert not np.array_equal(masks[0], masks[1])


def test_evaluate_compares_rise_and_records_convergence(target_model, tmp_path):
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray((planted.photo() * 255).astype(np.uint8)).save(photo)
    cfg = EvalConfig(methods=("ftc", "rise", "occlusion"), seeds=1, explain=ExplainConfig(budget=300))
    out = evaluate(target_model, [photo], cfg, tmp_path / "e")
    by = {r["method"]: r for r in out.records}
    assert by["rise"]["queries"] <= 300 and by["rise"]["converged"] is None
    assert by["ftc"]["objective_final"] is not None and by["ftc"]["converged"] in (True, False)
    from bbx.evaluation.summary import summarise

    md = summarise(out.records).markdown()
    assert "| rise |" in md and "converged" in md
