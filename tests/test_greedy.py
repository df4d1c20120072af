"""``greedy``: the hard-blur window search against the planted patches, its query count and its outputs."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

import bbx
import planted
from bbx.defaults import GREEDY_BUDGET
from bbx.errors import OptionError
from bbx.evaluation.runner import EvalConfig
from bbx.result.metrics import iou, top_mask

FINE = {"patch": 8, "stride": 4, "window": 12}  # 12 px windows at a 4 px stride: A (12 x 12 at 8, 8) is one


def greedy(model, image, target=None, **options):
    return bbx.explain(model, image, target, method="greedy", **options)


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "target.onnx", "target"))


def test_finds_patch_a_first_and_never_the_decoy(target_model):
    e = greedy(target_model, planted.photo(), target=0, budget=300, **FINE)
    truth = planted.patch_mask(planted.A)
    assert iou(top_mask(e.heatmap, truth.mean()), truth) == 1.0  # the first window chosen is A exactly
    assert not (e.heatmap[planted.patch_mask(planted.C)] > 0.6).any()
    assert e.prob_after > e.prob_before + 0.3
    assert e.config["steps"] >= 2 and 1 <= e.config["prefix"] <= e.config["steps"]


def test_queries_are_counted_exactly_and_the_budget_is_spent(target_model):
    before = target_model.queries
    e = greedy(target_model, planted.photo(), target=0, budget=120, **FINE)
    assert e.queries == target_model.queries - before == 120  # 1 image + 49 occlusion cells + 70 search
    before = target_model.queries
    big = greedy(target_model, planted.photo(), target=0, budget=100_000, **FINE)
    assert big.queries == target_model.queries - before < 100_000  # the area is reached first
    assert (big.heatmap > 0.5).mean() >= 0.10  # every chosen cell ranks above every other one


def test_perturbed_image_blurs_exactly_the_undesirable_pixels_and_its_probability_is_measured(target_model):
    e = greedy(target_model, planted.photo(), target=0, budget=300, **FINE)
    blurred = e.heatmap > 0.6
    assert e.undesirable_ratio == pytest.approx(blurred.mean())
    np.testing.assert_array_equal(e.perturbed[~blurred], e.image[~blurred])
    again = target_model.scores(e.perturbed[None]).probs[0, e.target]  # scored during the search, not after
    assert e.prob_after == pytest.approx(float(again), abs=1e-6)
    assert e.mask.shape == (14, 14) and e.heatmap.shape == (planted.SIZE, planted.SIZE)


def test_through_explain_deterministic_and_defaults(target_model):
    a = bbx.explain(target_model, planted.photo(), target=0, method="greedy", budget=200)
    b = bbx.explain(target_model, planted.photo(), target=0, method="greedy", budget=200)
    assert np.array_equal(a.heatmap, b.heatmap) and a.queries == b.queries <= 200  # no randomness
    with pytest.raises(OptionError, match="greedy does not use seed"):  # so a seed is refused, not dropped
        bbx.explain(target_model, planted.photo(), target=0, method="greedy", budget=200, seed=5)
    assert a.config["method"] == "greedy" and a.config["window"] == 16 and a.config["stride"] == 8
    truth = planted.patch_mask(planted.A)
    assert (a.heatmap[truth] > 0.6).mean() > 0.9  # 16 px windows: A sits inside the first one
    assert bbx.explain(target_model, planted.photo(), method="ftc", iterations=2, estimator="nes").config["method"] == "ftc"


def test_too_small_a_budget_and_bad_sizes_are_refused(target_model):
    with pytest.raises(OptionError, match="too small for greedy.* it needs 18 queries .*larger --budget or --patch"):
        greedy(target_model, planted.photo(), budget=17, patch=15)  # a given cell is kept: 1 + 16 cells + 1 step
    with pytest.raises(OptionError, match="at least 1 pixel"):
        greedy(target_model, planted.photo(), stride=0)
    with pytest.raises(OptionError, match="area"):
        greedy(target_model, planted.photo(), area=0)


def test_evaluate_runs_greedy_once_per_image():
    nes = bbx.ExplainConfig(estimator="nes")
    jobs = EvalConfig(methods=("greedy", "ftc"), seeds=3, explain=nes).validate().jobs(["a.png", "b.png"])
    assert [(j.method, j.seed) for j in jobs if j.image == "a.png"] == [("greedy", 0), ("ftc", 0), ("ftc", 1),
                                                                        ("ftc", 2)]
    # the active estimator draws nothing: one run of ftc, as of greedy
    jobs = EvalConfig(methods=("greedy", "ftc"), seeds=3).validate().jobs(["a.png"])
    assert [(j.method, j.seed) for j in jobs] == [("greedy", 0), ("ftc", 0)]


def test_bbx_explain_without_a_method_runs_the_default_search(tmp_path):
    """``bbx explain MODEL PHOTO``, no method named, runs rise_lead (bbx/defaults.py), greedy's search led by
    RISE: on the planted model it blurs patch A and never the decoy C, within its 2,000 queries, and says no
    convergence verdict."""
    model = planted.build(tmp_path / "target.onnx", "target")
    photo = tmp_path / "photo.png"
    faint = 0.5 + 0.5 * (planted.photo() - 0.5)  # texture in A costs class 0 part of its logit: still top-1
    Image.fromarray(np.rint(faint * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "out"
    proc = subprocess.run(["bbx", "explain", str(model), str(photo), "--out", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["method"] == "rise_lead" and report["config"]["budget"] == GREEDY_BUDGET
    assert report["target"] == 0 and 0 < report["queries"] <= GREEDY_BUDGET
    assert report["prob_after"] > report["prob_before"] + 0.1
    assert report["convergence"] == {}  # a search: no objective, so no verdict
    lines = proc.stdout.strip().splitlines()
    assert f"{report['queries']} queries" in lines[0] and lines[-1].startswith("wrote "), proc.stdout
    assert "converged" not in proc.stdout
    heat = 1.0 - np.load(out / "photo_mask.npy")  # the heatmap on the photo
    assert (heat[planted.patch_mask(planted.A)] > 0.6).all()
    assert not (heat[planted.patch_mask(planted.C)] > 0.6).any()
    with Image.open(out / "heatmap.png") as im:
        assert im.size == (planted.SIZE, planted.SIZE)
    same = bbx.explain(bbx.OnnxClassifier(model), photo)  # and bbx.explain's default is the same method
    assert same.config["method"] == "rise_lead" and same.queries == report["queries"]
    np.testing.assert_allclose(same.mask, np.load(out / "mask.npy"), atol=1e-6)


def test_soft_mask_options_without_a_method_name_the_methods_that_read_them(target_model):
    with pytest.raises(OptionError, match=r"rise_lead \(the default\) does not use iterations .*ftc, fntc, plain do"):
        bbx.explain(target_model, planted.photo(), iterations=5)
    with pytest.raises(OptionError, match="occlusion does not use window .*greedy, rise_lead do: name one as the method"):
        bbx.explain(target_model, planted.photo(), method="occlusion", window=8)


def test_the_progress_bar_names_what_each_method_reports(target_model, monkeypatch):
    """greedy reports minus the target's probability after each window, not a loss: the bar says so."""
    import sys

    from bbx import methods
    from bbx.cli.progress import StepBar

    seen = []
    e = bbx.explain(target_model, planted.photo(), target=0, method="greedy", budget=300,
                    progress=lambda step, total, value: seen.append(value), **FINE)
    assert seen and all(-1.0 <= v <= 0.0 for v in seen)
    assert -seen[0] > e.prob_before  # the first window kept raised the target's probability
    assert (methods.get("greedy").reports, methods.get("ftc").reports) == ("-p(target)", "J")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar is drawn on terminals only
    with StepBar("greedy", value=methods.get("greedy").reports) as bar:
        bar.update(1, 3, seen[0])
        assert bar.progress.tasks[0].fields["status"] == f"-p(target) {seen[0]:+.4f}"


def test_the_default_cell_grows_where_the_budget_cannot_pay_for_it(target_model):
    """16 px cells on the 56 px input are 16 queries; a budget of 12 cannot pay for them and a step, so
    the default cell grows until its cells take half the budget (6: 3 x 3 = 9 too many; 2 x 2 from 28 px)."""
    from bbx.methods.greedy import fitting_patch

    e = greedy(target_model, planted.photo(), target=0, budget=12)
    assert e.config["patch"] == 28 and e.queries <= 12
    assert (e.heatmap[planted.patch_mask(planted.A)] > 0.6).mean() > 0.5  # the search still finds A
    assert greedy(target_model, planted.photo(), target=0, budget=300).config["patch"] == 16  # it paid: unchanged
    assert fitting_patch((1024, 1024), 16, 1000) == 34  # 31 x 31 = 961 cells; at 32 and 33 still 32 x 32 = 1,024
    assert fitting_patch((224, 224), 16, 1000) == 16 and fitting_patch((5, 5), 16, 0) == 16
