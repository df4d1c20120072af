"""Lockstep: K explanations' probes in shared batches give each the numbers it gets alone (bit for bit on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bbx
import planted
from bbx.config import ExplainConfig
from bbx.errors import OptionError
from bbx.evaluate import EvalConfig, evaluate, record_key
from bbx.lockstep import Tally, explain_many, lockstep_width
from bbx.methods import Context, get
from bbx.model import Scores

BUNDLED = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "target.onnx", "target"))


def same(a: bbx.Explanation, b: bbx.Explanation) -> None:
    """Two explanations are the same numbers, bit for bit (the clock and who formed the probes aside)."""
    assert np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.heatmap, b.heatmap)
    assert a.loss_history == b.loss_history
    assert (a.target, a.prob_before, a.prob_after, a.queries) == (b.target, b.prob_before, b.prob_after, b.queries)
    assert np.array_equal(a.perturbed, b.perturbed)


def test_lockstep_gives_each_explanation_its_numbers_alone(target_model):
    # three methods, two seeds, unequal lengths (runs finish in different rounds), and a round of
    # 5 x 16 probes: over the model's batch ceiling of 64, so split into two calls of 40
    requests = [(i, method, planted.photo(seed=i % 3), ExplainConfig(method=method, seed=i, iterations=6 + 3 * (i % 4), estimator="nes"))
                for i, method in enumerate(["ftc", "fntc", "plain", "ftc", "fntc", "plain", "ftc"])]
    before = target_model.queries
    together = dict(explain_many(target_model, requests, k=5))
    shared = target_model.queries - before
    assert sorted(together) == list(range(len(requests)))
    alone = {key: bbx.explain(target_model, image, config=cfg) for key, _, image, cfg in requests}
    for key in alone:
        same(together[key], alone[key])
        assert together[key].queries == 2 + 2 * 8 * requests[key][3].iterations  # counted per explanation
        assert together[key].config["query_path"] == "numpy" == alone[key].config["query_path"]
    assert shared == sum(e.queries for e in together.values())  # and none lost or counted twice
    assert len({e.mask.tobytes() for e in together.values()}) == len(requests)  # they differ from each other


def test_methods_without_a_stepper_run_alone_in_order(target_model):
    requests = [("f0", "ftc", planted.photo(0), ExplainConfig(method="ftc", iterations=4, seed=0, estimator="nes")),
                ("occ", "occlusion", planted.photo(1), ExplainConfig(method="occlusion")),
                ("f1", "ftc", planted.photo(2), ExplainConfig(method="ftc", iterations=4, seed=1, estimator="nes"))]
    got = list(explain_many(target_model, requests, k=2))
    assert [key for key, _ in got] == ["occ", "f0", "f1"]  # occlusion done while the soft masks wait their round
    occ = dict(got)["occ"]
    same(occ, bbx.explain(target_model, planted.photo(1), method="occlusion"))


@pytest.mark.skipif(not (BUNDLED / "efficientnet_lite0.onnx").is_file(), reason="bundled model missing")
def test_bundled_model_in_lockstep_is_bit_identical_to_alone():
    lite0 = bbx.OnnxClassifier(BUNDLED / "efficientnet_lite0.onnx")
    photos = [BUNDLED / "samples" / "chelsea.png", BUNDLED / "samples" / "coffee.png"]
    requests = [((p.name, seed), "ftc", p, ExplainConfig(method="ftc", iterations=12, seed=seed, estimator="nes"))
                for p in photos for seed in (11, 12)]
    together = dict(explain_many(lite0, requests, k=4))  # 64 probes a round: one call at the CPU's ceiling
    for key, _, photo, cfg in requests:
        same(together[key], bbx.explain(lite0, photo, config=cfg))
    assert together[("chelsea.png", 11)].mask.min() < 1.0


def test_tally_counts_one_explanations_queries(target_model):
    tally = Tally(target_model)
    before = target_model.queries
    tally.scores(planted.photo()[None].repeat(3, axis=0))
    tally.charge(5)
    assert tally.queries == 8 and target_model.queries - before == 3
    assert tally.input_size == target_model.input_size and isinstance(tally, bbx.BlackBox)


def test_a_device_query_path_is_refused_in_lockstep(target_model, tmp_path):
    ctx = Context(Tally(target_model), planted.photo(), None, "ftc", None)
    with pytest.raises(OptionError, match="one explanation per call"):
        get("ftc").stepper(ctx, ExplainConfig(method="ftc", query_path="onnx", estimator="nes"))
    cfg = EvalConfig(methods=("ftc",), seeds=1, explain=ExplainConfig(iterations=2, query_path="onnx", estimator="nes"))
    with pytest.raises(OptionError, match="lockstep 1"):
        evaluate(target_model, [], cfg, tmp_path / "out", lockstep=2)
    with pytest.raises(OptionError, match="at least 1"):
        evaluate(target_model, [], cfg, tmp_path / "out", lockstep=0)
    assert not (tmp_path / "out").exists()


def test_evaluate_in_lockstep_writes_the_lines_of_one_at_a_time(target_model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.rint(planted.photo(seed=i) * 255).astype(np.uint8)).save(images / f"p{i}.png")
    cfg = EvalConfig(methods=("ftc", "plain", "random"), seeds=2, explain=ExplainConfig(iterations=5, estimator="nes"))
    assert lockstep_width(target_model, cfg.explain) == 64 // 16
    paths = sorted(images.glob("*.png"))
    runs = {}
    for k in (1, None, 3):
        model = bbx.OnnxClassifier(target_model.path)
        outcome = evaluate(model, paths, cfg, tmp_path / f"k{k}", lockstep=k)
        lines = [json.loads(line) for line in (tmp_path / f"k{k}" / "results.jsonl").read_text().splitlines()]
        assert len(lines) == len({record_key(r) for r in lines}) == outcome.ran == 3 * 6
        assert outcome.queries == model.queries
        runs[k] = {record_key(r): {f: v for f, v in r.items() if f != "seconds"} for r in lines}
    assert runs[1] == runs[None] == runs[3]


def test_probes_built_on_the_device_score_as_on_the_host(target_model):
    from bbx.lockstep import SharedBatches
    from bbx.lockstep_graph import DeviceImages

    runs = []
    for seed in range(3):
        ctx = Context(Tally(target_model), planted.photo(seed), None, "ftc", None)
        runs.append(get("ftc").stepper(ctx, ExplainConfig(method="ftc", seed=seed, iterations=3, pairs=20, estimator="nes")))
    probes = [run.probes() for run in runs]  # 3 x 40: two calls of 60 at the ceiling of 64
    host = target_model.score_tensor(np.concatenate([r.query.model_input(p) for r, p in zip(runs, probes)]))
    before = target_model.queries
    device = DeviceImages(target_model).score([r.query.parts for r in runs], probes, changed=True)
    assert target_model.queries - before == 120
    np.testing.assert_allclose(device.raw, host.raw, rtol=1e-5, atol=1e-5)
    assert not np.allclose(device.raw[:40], device.raw[40:80])  # each run's own image, not the first's

    shared = SharedBatches(target_model, "device")
    for run, p in zip(runs, probes):  # finish the round the scorer did not start
        run.ctx.model.charge(len(p))
        run.feed(Scores(host.raw[:len(p)], host.kind))
    while not runs[0].done:
        shared.step(runs)
    explanations = [run.finish() for run in runs]
    assert all(e.queries == 2 + 2 * 20 * 3 and e.config["lockstep_images"] == "device" for e in explanations)


def test_device_images_need_a_float_onnx_model(target_model):
    from bbx.lockstep import SharedBatches

    with pytest.raises(OptionError, match="host or the device"):
        SharedBatches(target_model, "gpu")
    assert SharedBatches(target_model).where == "host"  # auto, on the CPU


def test_cli_lockstep_flag(target_model, tmp_path):
    import subprocess

    photo = tmp_path / "p.png"
    Image.fromarray(np.rint(planted.photo() * 255).astype(np.uint8)).save(photo)
    base = ["bbx", "evaluate", str(target_model.path), str(photo), "--methods", "ftc", "--seeds", "2",
            "--iterations", "3", "--estimator", "nes", "--quiet"]
    bad = subprocess.run([*base, "--lockstep", "0", "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("bbx: error: lockstep needs at least 1")
    assert len(bad.stderr.splitlines()) == 1
    for k in ("1", "2"):
        ok = subprocess.run([*base, "--lockstep", k, "--out", str(tmp_path / k)], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
    one, two = ({record_key(r): r["mask"] for r in map(json.loads, (tmp_path / k / "results.jsonl").read_text().splitlines())}
                for k in ("1", "2"))
    assert one == two and len(one) == 2


def test_the_active_estimator_runs_alone_even_with_room_in_flight(target_model):
    requests = [(s, "ftc", planted.photo(s), ExplainConfig(method="ftc", budget=900)) for s in range(2)]
    got = dict(explain_many(target_model, requests, k=4))
    for key, _, photo, cfg in requests:
        assert got[key].config["estimator"] == "active" and "lockstep_images" not in got[key].config
        same(got[key], bbx.explain(target_model, photo, config=cfg))
