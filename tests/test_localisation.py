"""Ground-truth localisation: each metric on hand-made heatmaps whose answer is computed by hand,
``evaluate --truth`` on the planted model whose right region (patch A) is known, a wrong region
(the decoy C) that every metric must score low, and bad ``--truth`` inputs as one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import t as student_t

import planted
from bbx.config import ExplainConfig
from bbx.errors import OptionError, OutputError
from bbx.evaluation.runner import EvalConfig, evaluate
from bbx.evaluation.summary import summarise
from bbx.evaluation.truth import load_truth
from bbx.explain import explain
from bbx.maths.perturb import Perturber
from bbx.model import OnnxClassifier
from bbx.result import localisation as loc
from bbx.result.metrics import phi

# -- each metric on a 10 x 10 photo whose region is rows 0-1, columns 0-4 (area share 0.1) ----------

REGION = np.zeros((10, 10), dtype=bool)
REGION[:2, :5] = True


def heat(*points: tuple[int, int, float]) -> np.ndarray:
    h = np.zeros((10, 10))
    for y, x, v in points:
        h[y, x] = v
    return h


@pytest.mark.parametrize("points, tolerance, hit", [
    ([(0, 0, 1.0)], 0, 1.0),  # the maximum in the region
    ([(9, 9, 1.0)], 0, 0.0),  # far from it
    ([(5, 4, 1.0)], 4, 1.0),  # 4 px below the region's pixel (1, 4): within 4 px
    ([(5, 4, 1.0)], 3.9, 0.0),
    ([(0, 0, 1.0), (9, 9, 1.0)], 0, 0.5),  # two tied maxima, one in: half a hit
    ([(0, 0, 1.0), (9, 9, 1.0), (9, 0, 1.0), (1, 1, 0.5)], 0, 1 / 3),
    ([], 15, 0.0),  # no positive heat points nowhere, whatever the tolerance
])
def test_pointing_game_by_hand(points, tolerance, hit):
    assert loc.pointing_game(heat(*points), REGION, tolerance=tolerance) == pytest.approx(hit)


def test_a_flat_heatmap_points_at_chance_not_at_a_hit():
    assert loc.pointing_game(np.ones((10, 10)), REGION, tolerance=0) == pytest.approx(0.1)
    # within 1 px: the region (10 px), the 5 px of the row below it and the 2 px of the column right of it
    assert loc.pointing_game(np.ones((10, 10)), REGION, tolerance=1) == pytest.approx(0.17)


def test_relevance_mass_and_lift_by_hand():
    h = heat((0, 0, 1.0), (1, 4, 1.0), (5, 5, 3.0), (6, 6, -5.0))  # the negative pixel is no mass
    assert loc.relevance_mass(h, REGION) == pytest.approx(2 / 5)
    assert loc.relevance_mass_lift(h, REGION) == pytest.approx((2 / 5) / 0.1)
    assert loc.relevance_mass(np.ones((10, 10)), REGION) == pytest.approx(0.1)  # uniform: the area share
    assert loc.relevance_mass_lift(np.ones((10, 10)), REGION) == pytest.approx(1.0)
    assert loc.relevance_mass(np.zeros((10, 10)), REGION) == 0.0


def test_top_share_by_hand():
    h = heat((0, 0, 9), (0, 1, 8), (0, 2, 7), (5, 5, 6), (5, 6, 5), (7, 7, 4))
    assert loc.top_share(h, REGION, 1) == 1.0  # k = 1: the 9
    assert loc.top_share(h, REGION, 5) == pytest.approx(3 / 5)  # 9 8 7 in, 6 5 out
    # k = 10: 6 marked (3 in), the 4 places left shared by the 94 zeros, 7 of them in the region
    assert loc.top_share(h, REGION, 10) == pytest.approx((3 + 4 * 7 / 94) / 10)


def test_top_share_ties_at_the_cut_are_shared_not_taken_in_raster_order():
    h = heat((0, 0, 1), (0, 1, 1), (9, 8, 1), (9, 9, 1))  # 4 tied pixels, the first two (raster order) in
    assert loc.top_share(h, REGION, 1) == pytest.approx(0.5)
    assert loc.top_share(np.ones((10, 10)), REGION, 5) == pytest.approx(0.1)


def test_metrics_describe_themselves():
    names = [m.name for m in loc.LOCALISATION]
    assert names == ["pointing_game", "relevance_mass", "relevance_mass_lift", "top1_share", "top5_share",
                     "top10_share"]
    assert all(m.higher_is_better for m in loc.LOCALISATION)
    assert "15 px" in loc.POINTING_GAME.description and "4 px" in loc.pointing_metric(4).description
    assert loc.pointing_metric(4)(heat((5, 4, 1.0)), REGION) == 1.0


def test_a_region_of_another_size_or_an_empty_one_is_refused():
    with pytest.raises(ValueError, match="same H x W"):
        loc.relevance_mass(np.ones((10, 11)), REGION)
    with pytest.raises(ValueError, match="empty"):
        loc.top_share(np.ones((10, 10)), np.zeros((10, 10), bool), 5)


def test_every_metric_fails_on_the_decoy_and_passes_on_the_planted_patch():
    right, decoy = planted.patch_mask(planted.A), planted.patch_mask(planted.C)
    heatmap = right.astype(float)  # a heatmap exactly on A
    good = loc.localisation(heatmap, right)
    bad = loc.localisation(heatmap, decoy)
    assert good["pointing_game"] == 1 and good["relevance_mass"] == 1 and good["top1_share"] == 1
    assert good["relevance_mass_lift"] == pytest.approx(1 / right.mean())
    assert good["top5_share"] == pytest.approx(min(1, right.sum() / round(0.05 * right.size)))
    # C is 17 px below A, beyond the 15 px tolerance; the top 5% and 10% hold more pixels than A, filled
    # from the unmarked pixels at their share of C: below a flat heatmap's score, the area share
    assert bad["pointing_game"] == bad["relevance_mass"] == bad["relevance_mass_lift"] == bad["top1_share"] == 0
    assert 0 < bad["top5_share"] < bad["top10_share"] < decoy.mean(), bad


# -- evaluate --truth on the planted model ---------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The planted ``target`` model, three faint photos (class 0 stays top-1; blurring A raises it),
    masks of A (right) and of C (the decoy, wrong), the same as boxes, and 2x larger copies."""
    d = tmp_path_factory.mktemp("truth")
    model = planted.build(d / "target.onnx", "target")
    for sub in ("photos", "right", "wrong", "big", "big_right"):
        (d / sub).mkdir()
    for i in range(3):
        faint = np.rint((0.5 + 0.5 * (planted.photo(seed=i) - 0.5)) * 255).astype(np.uint8)
        Image.fromarray(faint).save(d / "photos" / f"p{i}.png")
        _mask(planted.patch_mask(planted.A), d / "right" / f"p{i}.png")
        _mask(planted.patch_mask(planted.C), d / "wrong" / f"p{i}.png")
        Image.fromarray(np.kron(faint, np.ones((2, 2, 1), np.uint8))).save(d / "big" / f"p{i}.png")
        _mask(np.kron(planted.patch_mask(planted.A), np.ones((2, 2), bool)), d / "big_right" / f"p{i}.png")
    (d / "boxes.json").write_text(json.dumps({f"p{i}.png": [[8, 8, 20, 20]] for i in range(3)}))
    return d


def _mask(region: np.ndarray, path: Path) -> None:
    Image.fromarray(region.astype(np.uint8) * 255).save(path)


def _photos(d: Path, sub: str = "photos") -> list[Path]:
    return sorted((d / sub).glob("*.png"))


def test_evaluate_truth_reports_a_hit_on_the_planted_patch(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    cfg = EvalConfig(methods=("greedy", "occlusion"), truth=load_truth(world / "right"))
    out = evaluate(m, _photos(world), cfg, tmp_path)
    assert len(out.records) == 6
    for r in out.records:
        t = r["truth"]
        share = planted.patch_mask(planted.A).mean()
        assert t["region_share"] == pytest.approx(share, abs=1e-6) and t["tolerance_px"] == 15
        assert t["pointing_game"] == 1.0, (r["method"], t)
        assert t["relevance_mass_lift"] > 3 and t["top1_share"] > 3 * share and t["top10_share"] > 3 * share
        assert t["queries"] == 1
    assert out.queries == m.queries == sum(r["queries"] + r["insertion_queries"] + 1 for r in out.records)


def test_the_truth_regions_own_phi_is_one_query_blurring_the_region_alone(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    out = evaluate(m, _photos(world)[:1], EvalConfig(methods=("random",), seeds=1,
                                                      truth=load_truth(world / "right")), tmp_path)
    rec = out.records[0]
    x = np.asarray(Image.open(_photos(world)[0]), dtype=np.float32) / 255  # 56 px: the model's own size
    pert = Perturber(x)
    by_hand = np.where(planted.patch_mask(planted.A)[..., None], pert.blurred, pert.image)
    p = float(OnnxClassifier(world / "target.onnx").scores(by_hand[None]).probs[0][rec["top1"]])
    assert rec["truth"]["top1_prob_after"] == pytest.approx(p, abs=1e-5)
    assert rec["truth"]["phi"] == pytest.approx(phi(rec["top1_prob_before"], p), abs=1e-3)
    assert rec["truth"]["phi"] > 20  # blurring A helps class 0: the reference is far from nothing


def test_a_wrong_region_scores_low_on_every_metric(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    out = evaluate(m, _photos(world), EvalConfig(methods=("greedy", "occlusion"),
                                                 truth=load_truth(world / "wrong")), tmp_path)
    decoy = planted.patch_mask(planted.C)
    chance = loc.near_region(decoy, 15).mean()  # a flat heatmap's pointing game
    for r in out.records:
        t = r["truth"]
        # occlusion's maximum is a whole 16 px cell, partly within 15 px of C on this 56 px photo: its
        # pointing game there is no evidence either way (docs/localisation.md); greedy's windows are finer
        assert r["method"] == "occlusion" or t["pointing_game"] < chance, (r["method"], t)
        assert t["relevance_mass"] == t["relevance_mass_lift"] == 0.0
        assert t["top1_share"] == t["top5_share"] == t["top10_share"] == 0.0
        assert abs(t["phi"]) < 1  # the model reads no pixel of C


def test_an_exact_pointing_game_misses_the_decoy_for_every_method(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    exact = load_truth(world / "wrong", tolerance=0)
    out = evaluate(m, _photos(world), EvalConfig(methods=("greedy", "occlusion"), truth=exact), tmp_path)
    assert all(r["truth"]["pointing_game"] == 0 and r["truth"]["tolerance_px"] == 0 for r in out.records)
    with pytest.raises(OptionError, match="tolerance"):
        load_truth(world / "wrong", tolerance=-1)


def test_boxes_give_the_masks_numbers(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    cfg = dict(methods=("occlusion",))
    by_mask = evaluate(m, _photos(world), EvalConfig(**cfg, truth=load_truth(world / "right")), tmp_path / "a")
    by_box = evaluate(m, _photos(world), EvalConfig(**cfg, truth=load_truth(world / "boxes.json")), tmp_path / "b")
    assert [r["truth"] for r in by_mask.records] == [r["truth"] for r in by_box.records]


def test_localisation_is_at_the_photos_size(world, tmp_path):
    """A 112 px photo of a 56 px model: the truth is at 112 px and so is the heatmap it is scored on."""
    m = OnnxClassifier(world / "target.onnx")
    out = evaluate(m, _photos(world, "big")[:1], EvalConfig(methods=("greedy",),
                                                          truth=load_truth(world / "big_right")), tmp_path)
    t = out.records[0]["truth"]
    e = explain(OnnxClassifier(world / "target.onnx"), str(_photos(world, "big")[0]), method="greedy")
    on_photo = e.on_photo()[0]
    assert on_photo.shape == (112, 112)
    region = np.kron(planted.patch_mask(planted.A), np.ones((2, 2), bool))
    expected = loc.localisation(on_photo, region)
    assert t["pointing_game"] == 1.0
    assert {k: t[k] for k in expected} == pytest.approx(expected, abs=1e-6)


def test_summary_and_csv_carry_means_and_intervals(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    recs = evaluate(m, _photos(world), EvalConfig(methods=("random",), seeds=2, explain=ExplainConfig(),
                                                  truth=load_truth(world / "right")), tmp_path).records
    s = summarise(recs)
    row = s.overall[0]
    per_image = {}
    for r in recs:
        per_image.setdefault(r["image"], []).append(r["truth"]["relevance_mass"])
    means = [np.mean(v) for v in per_image.values()]
    assert row.truth["relevance_mass"][0] == pytest.approx(np.mean(means))
    half = student_t.ppf(0.975, len(means) - 1) * np.std(means, ddof=1) / np.sqrt(len(means))
    assert row.truth["relevance_mass"][1] == pytest.approx(half) and row.truth["images"][0] == 3
    assert "## Ground-truth localisation" in s.markdown() and "within 15 px" in s.markdown()
    header = s.csv().splitlines()[0].split(",")
    assert "truth_pointing_game" in header and "truth_phi_ci95" in header
    plain = summarise([{k: v for k, v in r.items() if k != "truth"} for r in recs])
    assert "truth_" not in plain.csv() and "localisation" not in plain.markdown()  # old lines: old tables


def test_resuming_with_another_truth_is_refused(world, tmp_path):
    m = OnnxClassifier(world / "target.onnx")
    cfg = EvalConfig(methods=("random",), seeds=1, truth=load_truth(world / "right"))
    evaluate(m, _photos(world)[:1], cfg, tmp_path)
    again = evaluate(m, _photos(world)[:1], cfg, tmp_path)
    assert again.ran == 0
    for other in (None, load_truth(world / "wrong")):
        with pytest.raises(OutputError, match="other settings"):
            evaluate(m, _photos(world)[:1], EvalConfig(methods=("random",), seeds=1, truth=other), tmp_path)


# -- bad --truth: one line, exit 2, nothing written -------------------------------------------------

def _bad_inputs(world: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "empty").mkdir()
    (tmp / "some").mkdir()
    _mask(planted.patch_mask(planted.A), tmp / "some" / "p0.png")
    for name, region in (("small", np.ones((20, 20), bool)), ("blank", np.zeros((56, 56), bool))):
        (tmp / name).mkdir()
        for i in range(3):
            _mask(region, tmp / name / f"p{i}.png")
    (tmp / "broken").mkdir()
    for i in range(3):
        (tmp / "broken" / f"p{i}.png").write_bytes(b"\x89PNG not really")
    texts = {"a.txt": "x", "list.json": "[1, 2]", "nan.json": '{"p0.png": [[0, 0, "a", 4]]}',
             "flat.json": '{"p0.png": [[5, 5, 5, 9]]}', "outside.json": '{"p0.png": [[0, 0, 57, 9]]}',
             "header.csv": "name,a,b,c,d\np0.png,1,1,4,4\n", "short.csv": "image,x0,y0,x1,y1\np0.png,1,1\n"}
    for name, text in texts.items():
        (tmp / name).write_text(text)
    return {
        "nothing": (tmp / "nope.json", "not found"), "suffix": (tmp / "a.txt", "folder of PNG masks"),
        "no masks": (tmp / "empty", "no .png masks"), "missing": (tmp / "some", "no truth mask for p1.png"),
        "size": (tmp / "small", "must have its photo's size"), "blank": (tmp / "blank", "is empty"),
        "broken": (tmp / "broken", "cannot read truth mask"), "list": (tmp / "list.json", "must be an object"),
        "nan": (tmp / "nan.json", "four numbers"), "flat": (tmp / "flat.json", "x0 < x1"),
        "outside": (tmp / "outside.json", "outside its photo"), "header": (tmp / "header.csv", "header"),
        "short": (tmp / "short.csv", "line 2"),
    }


def test_bad_truth_is_one_line_and_exit_2_before_anything_is_written(world, tmp_path):
    for case, (path, fragment) in _bad_inputs(world, tmp_path).items():
        out = tmp_path / f"out-{case.replace(' ', '-')}"
        proc = subprocess.run(["bbx", "evaluate", str(world / "target.onnx"), str(world / "photos"), "--methods",
                               "random", "--seeds", "1", "-q", "--truth", str(path), "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (case, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, (case, proc.stderr)
        assert fragment in proc.stderr, (case, proc.stderr)
        assert not (out / "settings.json").exists() and not (out / "results.jsonl").exists(), case


def test_library_refuses_a_photo_without_truth_before_any_query(world, tmp_path):
    (tmp_path / "m").mkdir()
    _mask(planted.patch_mask(planted.A), tmp_path / "m" / "p0.png")
    m = OnnxClassifier(world / "target.onnx")
    with pytest.raises(OptionError, match="p1.png"):
        evaluate(m, _photos(world), EvalConfig(methods=("random",), truth=load_truth(tmp_path / "m")), tmp_path / "o")
    assert m.queries == 0


def test_audit_page_shows_the_localisation(world, tmp_path):
    pytest.importorskip("matplotlib", reason="bbx audit needs the report extra")
    proc = subprocess.run(["bbx", "audit", str(world / "target.onnx"), str(world / "photos"), "--methods",
                           "occlusion,random", "--truth", str(world / "boxes.json"), "--out", str(tmp_path), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "index.html").read_text()
    section = page[page.index("<section id=localisation>"):]
    section = section[:section.index("</section>")]
    assert "pointing game" in section and "<td>occlusion</td>" in section and "<td>random</td>" in section
    assert 'href="#localisation"' in page
    recs = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    total = sum(r["queries"] + r["insertion_queries"] + r["truth"]["queries"] for r in recs)
    assert f"{total:,} model queries" in page
