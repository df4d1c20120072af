"""``bbx evaluate``: baselines, blur-insertion, resumable JSON lines (SIGKILL included), tables."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scipy.stats import t as student_t

import planted
from bbx.methods.cells import cell_map
from bbx.errors import OptionError, OutputError
from bbx.evaluation.runner import EvalConfig, evaluate, find_images, read_records, record_key
from bbx.config import ExplainConfig
from bbx.explain import explain
from bbx.evaluation.insertion import blur_top
from bbx.model import OnnxClassifier
from bbx.result.metrics import phi
from bbx.evaluation.summary import BELOW, summarise

TINY = ExplainConfig(iterations=2, pairs=1, estimator="nes")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The planted ``target`` model and six of its photos as PNG files."""
    d = tmp_path_factory.mktemp("evaluate")
    model = planted.build(d / "target.onnx", "target")
    paths = planted.photo_folder(d / "images", 6)
    return {"model": model, "images": d / "images", "paths": paths}


def lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line parses


# -- baselines and blur-insertion ---------------------------------------------------------------

def test_occlusion_finds_patch_a_with_one_query_per_cell(world):
    m = OnnxClassifier(world["model"])
    e = explain(m, planted.photo(0), target="target", method="occlusion")
    grid = (4, 4)  # ceil(56 / 16)
    assert e.queries == grid[0] * grid[1] + 2 == m.queries  # image, one per cell, perturbed image
    assert e.mask.shape == grid and e.heatmap.shape == (planted.SIZE, planted.SIZE)
    assert e.heatmap.min() >= 0 and e.heatmap.max() == 1
    top_cell = e.heatmap == 1
    assert (top_cell & planted.patch_mask(planted.A)).any()
    assert not (top_cell & planted.patch_mask(planted.B)).any()
    assert not (top_cell & planted.patch_mask(planted.C)).any()
    assert e.prob_after > e.prob_before + 0.3  # blurring the best cells helps the target
    np.testing.assert_array_equal(e.perturbed[~(e.heatmap > 0.6)], e.image[~(e.heatmap > 0.6)])
    assert e.undesirable_ratio == pytest.approx((e.heatmap > 0.6).mean())


def test_occlusion_grid_is_16_px_patches_on_224():
    cells = cell_map((224, 224), (14, 14))
    rows, cols = np.indices((224, 224))
    np.testing.assert_array_equal(cells, (rows // 16) * 14 + cols // 16)
    assert set(np.bincount(cell_map((56, 56), (4, 4)).ravel())) == {14 * 14}  # uneven sizes split evenly


def test_blur_top_at_the_area_of_a(world):
    m = OnnxClassifier(world["model"])
    x = planted.photo(0)
    area = planted.patch_mask(planted.A).mean()
    p0 = m.scores(x[None]).probs[0, 0]
    occ = explain(m, x, target=0, method="occlusion", patch=8)  # 8 px cells resolve A
    before = m.queries
    gain_occ = blur_top(m, x, occ.heatmap, [area], cls=0)[0] - p0
    assert m.queries == before + 1  # one query per area
    gains_random = [blur_top(m, x, explain(m, x, method="random", seed=s).heatmap, [area], cls=0)[0] - p0 for s in range(4)]
    assert gain_occ > 0.4, gain_occ
    assert max(gains_random) < 0.1, gains_random
    assert blur_top(m, x, occ.heatmap, [], cls=0) == []


def test_random_baseline_is_seeded_and_cheap(world):
    m = OnnxClassifier(world["model"])
    a, b, c = (explain(m, planted.photo(0), method="random", seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert not np.array_equal(a.heatmap, c.heatmap)
    assert a.queries == 2 and m.queries == 6
    assert a.mask.shape == (28, 28) and 0 <= a.heatmap.min() and a.heatmap.max() <= 1
    assert a.config["method"] == "random"


# -- the evaluation loop ---------------------------------------------------------------------

def test_one_line_per_job_and_a_rerun_costs_nothing(world, tmp_path):
    images = world["paths"][:3]
    cfg = EvalConfig(methods=("ftc", "occlusion", "random"), seeds=2, explain=TINY)
    m = OnnxClassifier(world["model"])
    first = evaluate(m, images, cfg, tmp_path)
    recs = lines(tmp_path / "results.jsonl")
    assert len(recs) == first.ran == 3 * (2 + 1 + 2)
    assert Counter(map(record_key, recs)) == Counter(  # keyed by the photo's content
        (hashlib.sha256(p.read_bytes()).hexdigest(), meth, s) for p in images for meth, seeds in (("ftc", 2), ("occlusion", 1), ("random", 2))
        for s in range(seeds))
    own = {"ftc": 2 + 2 * 1 * 2, "occlusion": 4 * 4 + 2, "random": 2}
    assert all(r["queries"] == own[r["method"]] for r in recs)
    assert first.queries == m.queries == sum(r["queries"] + r["insertion_queries"] for r in recs)
    r = next(r for r in recs if r["method"] == "ftc")  # lines come as jobs finish: not in job order
    assert r["target"] == r["top1"] and len(r["phi_at_area"]) == len(r["areas"]) == r["insertion_queries"] == 5
    assert np.asarray(r["mask"]).shape == (28, 28) and r["input_size"] == [planted.SIZE, planted.SIZE]
    assert all(r["config"]["method"] == r["method"] for r in recs)  # each line says what made it
    assert {r["config"]["seed"] for r in recs if r["method"] == "random"} == {0, 1}
    assert all(r["config"]["grid"] == [4, 4] for r in recs if r["method"] == "occlusion")

    again = OnnxClassifier(world["model"])
    second = evaluate(again, images, cfg, tmp_path)
    assert second.ran == 0 and second.done_before == 15 and again.queries == 0
    assert lines(tmp_path / "results.jsonl") == recs
    assert sorted(second.records, key=record_key) == sorted(recs, key=record_key)  # records: in job order

    more = evaluate(again, images, EvalConfig(methods=("ftc", "occlusion", "random"), seeds=3, explain=TINY), tmp_path)
    assert more.ran == 3 * 2  # only the new seed of ftc and random
    with pytest.raises(OutputError, match="other settings"):
        evaluate(again, images, EvalConfig(methods=("ftc",), explain=ExplainConfig(iterations=3, pairs=1, estimator="nes")), tmp_path)


def _stored(seed: int, **changes) -> dict:
    rec = {"image": "a", "image_sha256": "ab" * 32, "method": "ftc", "seed": seed, "phi": 1.0,
           "undesirable_ratio": 0.1, "queries": 6, "seconds": 0.5, "top1_prob_before": 0.4, "areas": [5],
           "phi_at_area": [0.0], "input_size": [2, 2], "mask": [[1.0]], "device": "cpu"}
    return {**rec, **changes}


def test_a_torn_last_line_is_dropped_from_the_file(tmp_path):
    path = tmp_path / "results.jsonl"
    good = [_stored(s) for s in range(2)]
    path.write_text("".join(json.dumps(g) + "\n" for g in good) + '{"image": "a", "method": "ft')
    assert read_records(path) == good
    assert lines(path) == good


def test_a_bad_line_is_named_by_file_and_line_kept_and_its_job_runs_again(tmp_path):
    """A whole line that is not a record (a missing field, not JSON) is not data to delete: it is
    named in a warning and left in the file; the records around it count."""
    path = tmp_path / "results.jsonl"
    broken = {k: v for k, v in _stored(1).items() if k != "phi"}
    text = json.dumps(_stored(0)) + "\n" + json.dumps(broken) + "\nnot json\n" + json.dumps(_stored(2)) + "\n"
    path.write_text(text)
    with pytest.warns(RuntimeWarning) as caught:
        assert read_records(path) == [_stored(0), _stored(2)]
    messages = [str(w.message) for w in caught]
    assert f"{path} line 2: no field 'phi'" in messages[0] and f"{path} line 3: not JSON" in messages[1]
    assert path.read_text() == text
def test_find_images(world, tmp_path):
    folder = world["images"]
    (folder / "notes.txt").write_text("not an image")
    assert find_images([folder]) == [p.resolve() for p in world["paths"]]
    assert find_images([str(folder / "photo[12].png"), folder / "photo1.png"]) == [
        (folder / "photo1.png").resolve(), (folder / "photo2.png").resolve()]
    assert len(find_images([folder], limit=2)) == 2
    bad_specs = (([tmp_path / "missing"], "no such"), ([tmp_path], "no images"), ([str(tmp_path / "*.png")], "match"))
    for bad, msg in bad_specs:
        with pytest.raises(OptionError, match=msg):
            find_images(bad)


@pytest.mark.parametrize("args, fragment", [
    (["--methods", "ftc,nope"], "methods"),
    (["--seeds", "0"], "seeds"),
    (["--iterations", "0"], "iterations"),
    (["--limit", "0"], "limit"),
])
def test_bad_options_are_one_line(world, tmp_path, args, fragment):
    proc = subprocess.run(["bbx", "evaluate", str(world["model"]), str(world["images"]), *args, "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and fragment in proc.stderr, proc.stderr


def test_missing_path_is_one_line(world, tmp_path):
    proc = subprocess.run(["bbx", "evaluate", str(world["model"]), str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("bbx: error: no such") and len(proc.stderr.splitlines()) == 1


@pytest.mark.slow  # the bundled 224 px model through whole explanations
def test_sigkill_midway_then_rerun_finishes_each_job_once(world, tmp_path):
    out = tmp_path / "out"
    results = out / "results.jsonl"
    cmd = ["bbx", "evaluate", str(world["model"]), str(world["images"]), "--methods", "ftc,occlusion,random",
           "--seeds", "2", "--iterations", "150", "--pairs", "8", "--estimator", "nes", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the evaluation finished before it could be killed: make it slower"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = results.read_bytes()
    kept = done[: done.rfind(b"\n") + 1].decode().splitlines()  # whole lines written before the kill
    assert 1 <= len(kept) < 30
    with open(results, "ab") as fh:  # as if killed in the middle of a write
        fh.write(b'{"image": "' + str(world["paths"][0]).encode() + b'", "method": "ftc", "se')

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(kept)} done before, {30 - len(kept)} to do" in rerun.stderr
    recs = lines(results)
    keys = Counter(map(record_key, recs))
    want = {(hashlib.sha256(p.read_bytes()).hexdigest(), meth, s) for p in world["paths"] for meth, seeds in
            (("ftc", 2), ("occlusion", 1), ("random", 2)) for s in range(seeds)}
    assert set(keys) == want and set(keys.values()) == {1}
    assert {r["device"] for r in recs} == {"cpu"}
    assert results.read_text().splitlines()[: len(kept)] == kept  # nothing finished was redone
    assert (out / "summary.md").exists() and (out / "summary.csv").exists()

    third = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert "30 done before, 0 to do" in third.stderr and lines(results) == recs


# -- tables ------------------------------------------------------------------------------------

def _rec(image, method, seed, p0, phi, undesirable, mask, curve, queries):
    return {"image": image, "image_sha256": image * 64, "method": method, "seed": seed,
            "top1_prob_before": p0, "phi": phi,
            "undesirable_ratio": undesirable, "mask": mask, "input_size": [4, 4], "areas": [1, 5],
            "phi_at_area": curve, "queries": queries, "seconds": queries / 100}


M1, M2 = [[1, 0], [1, 1]], [[0, 1], [1, 1]]
HAND = [
    _rec("a", "ftc", 0, 0.3, 10, 0.01, M1, [1, 2], 100),
    _rec("a", "ftc", 1, 0.3, 20, 0.03, M1, [3, 4], 100),
    _rec("b", "ftc", 0, 0.97, 30, 0.05, M1, [10, 0], 100),
    _rec("b", "ftc", 1, 0.97, 50, 0.05, M2, [10, 0], 100),
    _rec("a", "occlusion", 0, 0.3, 5, 0.04, M1, [4, 2], 18),
    _rec("b", "occlusion", 0, 0.97, 7, 0.02, M1, [4, 2], 18),
]


def test_summary_of_a_hand_made_jsonl(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HAND + HAND[:1]))  # a repeated line counts once
    s = summarise(read_records(path))
    t1 = student_t.ppf(0.975, 1)
    ftc, occ = s.overall
    assert (ftc.method, ftc.images, ftc.runs, occ.method, occ.runs) == ("ftc", 2, 4, "occlusion", 2)
    assert ftc.phi == pytest.approx(27.5)  # seeds first: a 15, b 40
    assert ftc.phi_ci == pytest.approx(t1 * np.std([15, 40], ddof=1) / np.sqrt(2))
    assert occ.phi == pytest.approx(6) and occ.phi_ci == pytest.approx(t1)
    assert ftc.undesirable == pytest.approx(3.5) and occ.undesirable == pytest.approx(3.0)
    assert ftc.correlation == pytest.approx((1 - 1 / 3) / 2)  # a: same masks; b: r = -1/3
    assert ftc.top_iou == pytest.approx(0.5)  # a: same top pixel; b: opposite corners
    assert np.isnan(occ.correlation) and np.isnan(occ.top_iou)  # one run per image
    assert (ftc.queries, occ.queries) == (100, 18) and ftc.seconds == pytest.approx(1.0)
    assert ftc.phi_at_area == pytest.approx((6, 1.5)) and ftc.below_reference == (False, True)
    assert occ.below_reference == (False, False)

    (lo_label, lo), (hi_label, hi) = s.by_confidence
    assert (lo_label, hi_label) == ("[0, 0.5)", "[0.95, 1]")
    assert lo[0].phi == pytest.approx(15) and lo[0].below_reference == (True, False)
    assert hi[0].phi == pytest.approx(40) and hi[0].below_reference == (False, True)
    assert np.isnan(lo[0].phi_ci)  # one image

    md = s.markdown()
    assert "| ftc | 2 | 4 | 27.5 ± 158.8 | 0 | – | 3.50 | 0.33 | 0.50 | 100 | 1.00 | – | – | 6.0 | 1.5 ▾ |" in md
    assert "| [0, 0.5) | ftc | 1 | 2 | 15.0 | 0 | – | 2.00 | 1.00 | 1.00 | 100 | 1.00 | – | – | 2.0 ▾ | 3.0 |" in md
    assert md.count(BELOW) == 3 + 1  # three cells and the legend

    assert s.devices == () and "s/run" not in md.split("\n\n")[-1]  # hand-made records say no device

    md_path, csv_path = s.write(tmp_path)
    assert md_path.read_text() == md
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["section"], r["method"]) for r in rows] == [
        ("overall", "ftc"), ("overall", "occlusion"), ("p_top1 [0, 0.5)", "ftc"), ("p_top1 [0, 0.5)", "occlusion"),
        ("p_top1 [0.95, 1]", "ftc"), ("p_top1 [0.95, 1]", "occlusion")]
    assert float(rows[0]["phi"]) == pytest.approx(27.5) and rows[0]["below_occlusion_at_pct"] == "5"
    assert rows[1]["seed_correlation"] == "" and float(rows[0]["phi_at_5pct"]) == pytest.approx(1.5)


def test_phi_of_an_image_the_model_is_sure_of_is_left_out_and_delta_p_shown():
    """A top-1 at p 0.99999 makes φ = 100 Δp / 1e-5: the mean of such rows read -17879.7 ± 70869.6. φ leaves
    such images out (counted), and Δp (percentage points, every image) says what changed."""
    sure = dict(_rec("c", "random", 0, 0.99999, phi(0.99999, 0.8), 0.0, M1, [-1e5, -2e5], 10), top1_prob_after=0.8)
    plain = dict(_rec("a", "random", 0, 0.3, phi(0.3, 0.37), 0.0, M1, [1, 2], 10), top1_prob_after=0.37)
    row = summarise([sure, plain]).overall[0]
    assert row.unstable == 1 and row.phi == pytest.approx(10.0) and row.phi_at_area == pytest.approx((1, 2))
    assert row.delta_p == pytest.approx(100 * ((0.8 - 0.99999) + 0.07) / 2)
    md = summarise([sure, plain]).markdown()
    assert "| random | 2 | 2 | 10.0 | 1 | -6.50 |" in md and "e+" not in md


def test_cli_prints_the_tables_and_reports_nothing_to_do(world, tmp_path):
    cmd = ["bbx", "evaluate", str(world["model"]), str(world["images"] / "photo*.png"), "--methods", "plain,random",
           "--seeds", "2", "--iterations", "2", "--pairs", "1", "--estimator", "nes", "--limit", "2", "--out", str(tmp_path), "-q"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "8 runs, 0 done before, 8 to do" in first.stderr
    assert "| plain | 2 | 4 |" in first.stdout and "## By confidence" in first.stdout
    assert len(lines(tmp_path / "results.jsonl")) == 8
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert "8 runs, 8 done before, 0 to do" in second.stderr
    assert (tmp_path / "summary.md").read_text() in second.stdout
    assert len(lines(tmp_path / "results.jsonl")) == 8


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("SIGKILL and flock are POSIX")


@pytest.mark.parametrize("devices, line", [(["cpu"] * 6, "s/run measured on cpu."),
                                           (["cpu"] * 3 + ["cuda"] * 3, "s/run mixes runs on cpu and cuda")])
def test_summary_says_where_the_seconds_were_measured(devices, line):
    s = summarise([{**r, "device": d} for r, d in zip(HAND, devices)])
    assert s.devices == tuple(sorted(set(devices)))
    assert line in s.markdown()
