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
from bbx.evaluation.runner import EvalConfig, evaluate, record_key
from bbx.evaluation.lockstep import Tally, default_width, explain_many, lockstep_width
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


@pytest.mark.slow  # the bundled 224 px model through whole explanations
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


def same_answer(rec: dict) -> dict:
    """What a record answers, without how it ran: the time, and whether its images were shared in lockstep."""
    config = {k: v for k, v in rec["config"].items() if k != "lockstep_images"}
    return {**{f: v for f, v in rec.items() if f != "seconds"}, "config": config}


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
        assert {r["config"].get("lockstep_images") for r in lines if r["method"] != "random"} == (
            {"host"} if k == 3 else {None})  # each line says whether its images were shared
        runs[k] = {record_key(r): same_answer(r) for r in lines}
    assert runs[1] == runs[None] == runs[3]


def test_the_default_width_is_one_on_the_cpu_and_fills_the_ceiling_elsewhere(target_model, tmp_path):
    from types import SimpleNamespace

    nes, active = ExplainConfig(iterations=5, estimator="nes"), ExplainConfig()
    assert target_model.device == "cpu" and default_width(target_model, nes) == default_width(target_model, active) == 1
    for device in ("cuda", "remote"):
        other = SimpleNamespace(device=device, max_batch=256)
        assert default_width(other, nes) == lockstep_width(other, nes) == 256 // 16
        assert default_width(other, active) == 5  # ceil(256 / 52)
    # evaluate without --lockstep on the CPU calls the model as one at a time does, not in shared rounds
    photos = []
    for i in range(2):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(np.rint(planted.photo(seed=i) * 255).astype(np.uint8)).save(photos[-1])
    cfg = EvalConfig(methods=("ftc",), seeds=1, explain=nes)
    calls = {}
    for k in (None, 1, 4):
        model, calls[k] = counting_calls(target_model.path)
        evaluate(model, photos, cfg, tmp_path / f"k{k}", lockstep=k)
    assert calls[None] == calls[1] != calls[4]


def test_probes_built_on_the_device_score_as_on_the_host(target_model):
    from bbx.evaluation.lockstep import Flight, SharedBatches
    from bbx.evaluation.lockstep_graph import DeviceImages

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
    flights = [Flight(i, run, run.ctx.model) for i, run in enumerate(runs)]  # the tally each Context holds
    while not runs[0].done:
        shared.step(flights)
    explanations = [run.finish() for run in runs]
    assert all(e.queries == 2 + 2 * 20 * 3 and e.config["lockstep_images"] == "device" for e in explanations)


def test_device_images_need_a_float_onnx_model(target_model):
    from bbx.evaluation.lockstep import Flight, SharedBatches

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


def faint(seed: int, patch: tuple[slice, slice], keep: float) -> np.ndarray:
    """A planted photo with ``patch``'s texture at ``keep`` of its contrast: its model's top-1 is then
    class 0, which blurring the patch helps (ftc on the target model, fntc on the other)."""
    p = planted.photo(seed)
    p[patch] = p[patch].mean() + keep * (p[patch] - p[patch].mean())
    return p


def counting_calls(path: Path) -> tuple[bbx.OnnxClassifier, list[int]]:
    """A fresh copy of a model and the sizes of the calls it runs."""
    model, sizes = bbx.OnnxClassifier(path), []
    run = model.run_batch
    model.run_batch = lambda x: (sizes.append(len(x)), run(x))[1]
    return model, sizes


def test_active_in_lockstep_gives_each_explanation_its_numbers_alone(tmp_path):
    # budgets: 60 (a screen in 4x4 blocks, the budget spent with it), 300 (a screen in 2x2 blocks
    # and a few steps), 1500 (the budget ends the descent, after local re-screens) and 3000
    # (converges with room left); ftc (finds patch A) and fntc (nothing pays on this model: it
    # converges after one screen), requests of unequal sizes in one round
    path = planted.build(tmp_path / "target.onnx", "target")
    requests = [(i, method, faint(i % 2, planted.A, 0.5), ExplainConfig(method=method, budget=budget))
                for i, (method, budget) in enumerate((m, b) for b in (60, 300, 1500, 3000) for m in ("ftc", "fntc"))]
    shared_model, shared_calls = counting_calls(path)
    together = dict(explain_many(shared_model, requests, k=3))
    alone_model, alone_calls = counting_calls(path)
    alone = {key: bbx.explain(alone_model, image, config=cfg) for key, _, image, cfg in requests}
    read = ("estimator", "budget", "iterations", "screens", "active", "query_path")
    for key, method, _, cfg in requests:
        a, b = together[key], alone[key]
        same(a, b)
        assert a.convergence == b.convergence
        assert {f: a.config[f] for f in read} == {f: b.config[f] for f in read}
        assert a.config["estimator"] == "active" and a.config["lockstep_images"] == "host"
        assert a.queries <= cfg.budget
    assert shared_model.queries == sum(e.queries for e in together.values()) == alone_model.queries
    assert len(shared_calls) < len(alone_calls) and max(shared_calls) <= 64  # rounds shared, split at the ceiling
    ftc = {requests[k][3].budget: e for k, e in together.items() if requests[k][1] == "ftc"}
    assert ftc[60].config["screens"] == 1 and len(ftc[60].loss_history) == 1
    assert ftc[1500].config["screens"] > 1 and ftc[1500].queries > 1400  # re-screened, then the budget ended it
    assert ftc[3000].config["screens"] > ftc[1500].config["screens"] and ftc[3000].queries < 2700  # ended with room left
    assert ftc[3000].convergence["converged"]
    assert len({e.mask.tobytes() for e in ftc.values()}) == 4 and min(e.mask.min() for e in ftc.values()) < 0.5
    fntc = [e for k, e in together.items() if requests[k][1] == "fntc" and requests[k][3].budget >= 1500]
    assert all(e.convergence["converged"] and e.queries == fntc[0].queries < 1500 for e in fntc)


@pytest.mark.slow  # the bundled 224 px model through whole explanations
@pytest.mark.skipif(not (BUNDLED / "efficientnet_lite0.onnx").is_file(), reason="bundled model missing")
def test_bundled_model_with_the_active_estimator_in_lockstep_is_bit_identical_to_alone():
    lite0 = bbx.OnnxClassifier(BUNDLED / "efficientnet_lite0.onnx")
    requests = [("chelsea", "ftc", BUNDLED / "samples" / "chelsea.png", ExplainConfig(method="ftc", budget=900)),
                ("coffee", "fntc", BUNDLED / "samples" / "coffee.png", ExplainConfig(method="fntc", budget=300))]
    together = dict(explain_many(lite0, requests, k=2))
    for key, _, photo, cfg in requests:
        alone = bbx.explain(lite0, photo, config=cfg)
        same(together[key], alone)
        assert together[key].convergence == alone.convergence
    assert together["chelsea"].mask.min() < 1.0 and together["chelsea"].config["screens"] == 1  # a screen, then steps


def test_active_runs_stepped_by_hand_and_the_device_front(target_model):
    from bbx.evaluation.lockstep import Flight, SharedBatches

    ctx = Context(Tally(target_model), faint(0, planted.A, 0.5), None, "ftc", 300)
    run = get("ftc").stepper(ctx, ExplainConfig(method="ftc", budget=300))
    with pytest.raises(RuntimeError, match="no probes are out"):
        run.feed(Scores(np.zeros((1, 3)), "logits"))
    first = run.probes()
    assert first.shape == (1, 28, 28) and (first == 1).all()  # M = 1 first, through the probes' path
    with pytest.raises(RuntimeError, match="out already"):
        run.probes()
    run.ctx.model.charge(1)
    run.feed(target_model.score_tensor(run.query.model_input(first)))
    assert len(run.probes()) > 1  # then the screen
    with pytest.raises(RuntimeError, match="not done"):
        run.finish()
    # images built on the device (here onnxruntime's CPU): each run gets its own, within rounding
    runs = [get(m).stepper(Context(Tally(target_model), faint(s, planted.A, 0.5), None, m, 300),
                           ExplainConfig(method=m, budget=300)) for s, m in ((0, "ftc"), (1, "fntc"))]
    shared = SharedBatches(target_model, "device")
    while any(not r.done for r in runs):
        shared.step([Flight(i, r, r.ctx.model) for i, r in enumerate(runs) if not r.done])
    for r, e in zip(runs, (r.finish() for r in runs)):
        assert e.config["lockstep_images"] == "device" and e.queries <= 300


def test_evaluate_with_the_active_estimator_in_lockstep_writes_the_lines_of_one_at_a_time(tmp_path):
    path = planted.build(tmp_path / "target.onnx", "target")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.rint(faint(i, planted.A, 0.5 + 0.1 * i) * 255).astype(np.uint8)).save(images / f"p{i}.png")
    cfg = EvalConfig(methods=("ftc", "fntc"), seeds=1, explain=ExplainConfig(budget=400))
    assert cfg.explain.estimator == "active" and lockstep_width(bbx.OnnxClassifier(path), cfg.explain) == 2  # ceil(64 / 52)
    paths = sorted(images.glob("*.png"))
    runs = {}
    for k in (1, None, 4):
        model = bbx.OnnxClassifier(path)
        outcome = evaluate(model, paths, cfg, tmp_path / f"k{k}", lockstep=k)
        lines = [json.loads(line) for line in (tmp_path / f"k{k}" / "results.jsonl").read_text().splitlines()]
        assert len(lines) == outcome.ran == 3 * 2 and outcome.queries == model.queries
        runs[k] = {record_key(r): same_answer(r) for r in lines}
    assert runs[1] == runs[None] == runs[4]
    assert any(min(map(min, r["mask"])) < 1.0 for r in runs[4].values())  # something was found
