"""bbx against a real MLServer on 127.0.0.1 (the ``mlserver`` fixture in conftest.py): the same
answers and explanations as the local file, what an endpoint that reveals less allows, the cache,
the hard cap, and one clear line for every way an endpoint can be wrong."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bbx
import onnx_builders as ob
from bbx.errors import BudgetError, EndpointError, OptionError
from bbx.remote import ClientConfig, EndpointClassifier
from remote_support import FaultProxy, bbx_cli, free_port, one_error_line, self_signed

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0.onnx"
PHOTO = ROOT / "models" / "samples" / "chelsea.png"
TOKEN = "s3cr3t-token-bbx-27"


def test_conventions_from_metadata_and_one_request(mlserver):
    m = EndpointClassifier(mlserver.model_url("tiny"))
    assert (m.input.layout, m.input.height, m.input.width, m.input.dtype) == ("NCHW", ob.SIZE, ob.SIZE, "float32")
    assert (m.output.name, m.output.num_classes, m.output.kind, m.reveals) == ("logits", ob.CLASSES, "logits", "scores")
    assert m.spec_sources["mean"] == "metadata" and m.spec_sources["size"] == "graph"  # the endpoint's parameter
    assert m.device == "remote" and m.queries == 0 and m.traffic["answered"] == 2  # the detection request
    big = EndpointClassifier(mlserver.model_url("efficientnet_lite0"))
    local = bbx.OnnxClassifier(BUNDLED)
    assert big.spec == local.spec and big.spec_sources["scale"] == "preset:efficientnet_lite0"
    assert big.labels == local.labels and big.describe()["reveals"] == "scores"


def test_scores_equal_the_local_model_bit_for_bit(mlserver):
    m = EndpointClassifier(mlserver.model_url("tiny"), max_batch=3)
    local = bbx.OnnxClassifier(mlserver.tiny_onnx)
    images = ob.random_images(7, seed=3)
    remote = m.scores(images).raw
    assert np.array_equal(remote, local.scores(images).raw)
    assert m.queries == 7 and m.traffic["requests"] == 1 + 3  # detection, then 3 + 3 + 1
    np.testing.assert_allclose(remote, ob.reference_logits(images), atol=1e-4)


def test_identical_probes_are_not_sent_twice(mlserver):
    m = EndpointClassifier(mlserver.model_url("tiny"))
    images = ob.random_images(4, seed=5)
    twice = np.concatenate([images, images[:2]])  # two images asked for twice in one batch
    first = m.scores(twice).raw
    sent = m.traffic["answered"]
    again = m.scores(images[::-1]).raw
    assert m.traffic["answered"] == sent == 2 + 4  # detection + 4 distinct images, nothing more
    assert m.traffic["cached"] == 2 + 4 and m.queries == 10  # every image asked for still counts
    assert np.array_equal(again, first[3::-1])


def test_explanation_through_the_endpoint_equals_the_local_one(mlserver):
    m = EndpointClassifier(mlserver.model_url("tiny"))
    local = bbx.OnnxClassifier(mlserver.tiny_onnx)
    image = ob.random_images(1, seed=9)[0]
    for method, options in (("ftc", {"estimator": "nes", "seed": 4, "mask_size": 8}), ("ftc", {"mask_size": 8}),
                            ("greedy", {})):
        a = bbx.explain(m, image, method=method, budget=130, **options)
        b = bbx.explain(local, image, method=method, budget=130, **options)
        assert np.array_equal(a.mask, b.mask) and a.queries == b.queries <= 130, method
        assert a.prob_after == b.prob_after
    assert m.traffic["answered"] + m.traffic["cached"] == 2 + m.queries


def test_bundled_model_cli_endpoint_equals_local_file(mlserver, tmp_path):
    url = mlserver.model_url("efficientnet_lite0")
    remote = bbx_cli("explain", url, PHOTO, "--method", "ftc", "--budget", 50, "--out", tmp_path / "remote", "-q")
    local = bbx_cli("explain", BUNDLED, PHOTO, "--method", "ftc", "--budget", 50, "--out", tmp_path / "local", "-q")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    assert np.array_equal(np.load(tmp_path / "remote" / "mask.npy"), np.load(tmp_path / "local" / "mask.npy"))
    report = json.loads((tmp_path / "remote" / "report.json").read_text())
    assert report["model"] == url and report["device"] == "remote"
    sent = report["traffic"]["answered"]
    assert report["queries"] <= 50 and sent == report["queries"] + 2  # + the detection request; no repeat probe
    assert f"endpoint: {sent} images answered in" in remote.stdout


def test_audit_compares_a_local_model_with_its_endpoint(mlserver, tmp_path):
    """``bbx audit FILE --compare URL``: the same model behind MLServer (its preprocessing and labels in
    its metadata) agrees with its file on every photo, and occlusion, which draws nothing at random,
    explains each photo the same way through both (4 px cells: 16 on the 16 px input)."""
    pytest.importorskip("matplotlib", reason="bbx audit needs the report extra")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(ob.random_images(3, seed=21, levels=255)):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "audit"
    proc = bbx_cli("audit", mlserver.tiny_onnx, photos, "--compare", mlserver.model_url("tiny_named"),
                   "--methods", "occlusion", "--patch", "4", "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "compare.json").read_text())
    assert data["model_b"] == "tiny_named" and data["missing"] == 0  # the endpoint's model, by its name
    assert data["aggregate"]["photos"] == 3 and data["aggregate"]["top1_agreement"] == 1.0
    assert all(p["r"] == pytest.approx(1.0) and p["top5_iou"] == 1.0 and p["confidence_change"] == 0
               for p in data["photos"])
    assert "top-1 agrees on 100 %" in proc.stdout
    remote = [json.loads(line) for line in (out / "compare" / "results.jsonl").read_text().splitlines()]
    local = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["mask"] for r in remote) == sorted(r["mask"] for r in local)
    assert len({json.dumps(r["mask"]) for r in local}) == 3  # three photos, three different explanations


def test_budget_is_a_hard_cap_on_answered_images(mlserver):
    with FaultProxy(mlserver.port) as proxy:
        m = EndpointClassifier(mlserver.model_url("tiny", proxy.url), client=ClientConfig(max_answered=10))
        m.scores(ob.random_images(8, seed=1))  # 2 + 8 = 10: at the cap
        with pytest.raises(BudgetError, match="at most 10 images"):
            m.scores(ob.random_images(1, seed=2))
        assert m.scores(ob.random_images(8, seed=1)).raw.shape == (8, ob.CLASSES)  # from the cache: free
    assert m.traffic["answered"] == 10 and sum(s.images for s in proxy.seen) == 10


def test_top_k_endpoint_runs_greedy_and_refuses_ftc(mlserver, tmp_path):
    url = mlserver.model_url("tiny_topk")
    with pytest.raises(OptionError, match="--labels"):
        EndpointClassifier(url)  # how many classes is not revealed
    m = EndpointClassifier(url, spec_file=mlserver.tiny_sidecar)
    local = bbx.OnnxClassifier(mlserver.tiny_onnx)
    assert (m.reveals, m.revealed, m.num_classes, m.labels_source) == ("topk", 3, ob.CLASSES, "sidecar")
    images = ob.random_images(5, seed=2)
    p, q = m.scores(images).probs, local.scores(images).probs
    top = np.argsort(-q, axis=1)[:, :3]
    np.testing.assert_allclose(np.take_along_axis(p, top, 1), np.take_along_axis(q, top, 1), rtol=1e-6)
    assert (np.argsort(-p, axis=1)[:, :3] == top).all()
    e = bbx.explain(m, images[0], method="greedy", budget=60)
    assert e.queries <= 60 and e.target == int(q[0].argmax())
    with pytest.raises(OptionError, match="ftc needs every class's score.*greedy, rise_lead, occlusion, random"):
        bbx.explain(m, images[0], method="ftc", budget=60)
    proc = bbx_cli("explain", url, PHOTO, "--method", "ftc", "--spec", mlserver.tiny_sidecar, "--out", tmp_path)
    one_error_line(proc, "ftc needs every class's score", "only the top-k classes")
    proc = bbx_cli("explain", url, PHOTO, "--budget", "60", "--spec", mlserver.tiny_sidecar, "--out", tmp_path / "d")
    assert proc.returncode == 0, proc.stderr  # the default method, rise_lead, reads only the target's probability
    assert json.loads((tmp_path / "d" / "report.json").read_text())["config"]["method"] == "rise_lead"


def test_label_only_endpoint_predicts_and_refuses_every_method(mlserver, tmp_path):
    url = mlserver.model_url("tiny_label")
    m = EndpointClassifier(url, spec_file=mlserver.tiny_sidecar)
    local = bbx.OnnxClassifier(mlserver.tiny_onnx)
    images = ob.random_images(4, seed=8)
    assert m.reveals == "label"
    assert (m.scores(images).probs.argmax(1) == local.scores(images).probs.argmax(1)).all()
    for method in ("ftc", "greedy"):
        with pytest.raises(OptionError, match="no method of bbx runs on it"):
            bbx.explain(m, images[0], method=method, budget=40)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray((images[0] * 255).astype(np.uint8)).save(photo)
    proc = bbx_cli("predict", url, photo, "--spec", mlserver.tiny_sidecar)
    top1 = local.predict(np.asarray(Image.open(photo).convert("RGB"))).probs[0].argmax()
    assert proc.returncode == 0 and f"class{top1}" in proc.stdout and "label only" in proc.stdout, proc.stderr
    one_error_line(bbx_cli("evaluate", url, photo, "--methods", "occlusion", "--spec", mlserver.tiny_sidecar,
                           "--out", tmp_path / "ev"), "occlusion needs only the top-k classes")
    one_error_line(bbx_cli("explain", url, photo, "--spec", mlserver.tiny_sidecar, "--out", tmp_path / "ex"),
                   "rise_lead needs only the top-k classes", "no method of bbx runs on it")  # the default, refused
    assert not (tmp_path / "ex").exists()


def test_one_clear_line_for_each_broken_endpoint(mlserver, tmp_path):
    dead = free_port()
    one_error_line(bbx_cli("inspect", f"http://127.0.0.1:{dead}/v2/models/tiny"), "connection refused")
    one_error_line(bbx_cli("inspect", mlserver.model_url("nope")), "not found (HTTP 404)")
    one_error_line(bbx_cli("inspect", mlserver.url + "/v1/models/tiny:predict"), "/v2/models/NAME")
    one_error_line(bbx_cli("inspect", "http://user:pw@127.0.0.1:1/v2/models/tiny"), "--auth-env")
    one_error_line(bbx_cli("inspect", mlserver.model_url("tiny"), "--device", "cuda"), "--device cuda does nothing")
    one_error_line(bbx_cli("inspect", BUNDLED, "--max-rps", 3), "--max-rps is for endpoints")
    one_error_line(bbx_cli("explain", mlserver.model_url("tiny"), PHOTO, "--method", "ftc", "--query-path", "fused",
                           "--out", tmp_path),
                   "the fused query path")
    for fault, said in (("malformed", "malformed body"), ("wrong_shape", "wrong shape")):
        with FaultProxy(mlserver.port, faults=["ok", fault]) as proxy:  # the detection request passes
            m = EndpointClassifier(mlserver.model_url("tiny", proxy.url))
            with pytest.raises(EndpointError, match=said):
                m.scores(ob.random_images(2, seed=0))
    with FaultProxy(mlserver.port, faults=["ok"] + ["status:500"] * 3) as proxy:
        m = EndpointClassifier(mlserver.model_url("tiny", proxy.url), client=ClientConfig(retries=2, backoff=0.01))
        with pytest.raises(EndpointError, match="failed 3 times .*HTTP 500"):
            m.scores(ob.random_images(2, seed=0))
    assert (m.traffic["failures"], m.traffic["retries"], m.traffic["answered"], m.queries) == (3, 2, 2, 0)


def test_a_token_appears_in_no_output_log_or_error(mlserver, tmp_path):
    env_ok = {**os.environ, "BBX_TEST_TOKEN": TOKEN}
    env_bad = {**env_ok, "BBX_TEST_TOKEN": TOKEN + "-wrong"}
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with FaultProxy(mlserver.port, token=TOKEN) as proxy:
        url = mlserver.model_url("tiny", proxy.url)
        ok = bbx_cli("explain", url, PHOTO, "--auth-env", "BBX_TEST_TOKEN", "--budget", 20, "--out", tmp_path / "out",
                     env=env_ok)
        assert ok.returncode == 0, ok.stderr
        inspect = bbx_cli("inspect", url, "--auth-file", token_file, "--json")
        assert inspect.returncode == 0 and json.loads(inspect.stdout)["auth_header"] == "Authorization"
        refused = bbx_cli("inspect", url, "--auth-env", "BBX_TEST_TOKEN", env=env_bad)
        one_error_line(refused, "HTTP 401", "check the credential")
        missing = bbx_cli("inspect", url)
        one_error_line(missing, "HTTP 401", "--auth-env")
        audited = bbx_cli("audit", url, PHOTO, "--methods", "random", "--auth-env", "BBX_TEST_TOKEN",
                          "--out", tmp_path / "audit", "-q", env=env_ok) if importlib.util.find_spec("matplotlib") else None
    runs = [p for p in (ok, inspect, refused, missing, audited) if p is not None]
    assert audited is None or audited.returncode == 0, audited.stderr
    texts = [p.stdout + p.stderr for p in runs]
    texts += [f.read_bytes().decode("latin-1") for d in ("out", "audit") for f in (tmp_path / d).rglob("*") if f.is_file()]
    assert texts and not any(TOKEN in t for t in texts)


def test_tls_is_verified_unless_told_otherwise(mlserver, tmp_path):
    tls = self_signed(tmp_path)
    if tls is None:
        pytest.skip("no openssl command to make a certificate")
    with FaultProxy(mlserver.port, tls=tls) as proxy:
        url = mlserver.model_url("tiny", proxy.url)
        one_error_line(bbx_cli("inspect", url), "TLS certificate", "not trusted", "--ca-file")
        trusted = bbx_cli("inspect", url, "--ca-file", tls[0])
        unchecked = bbx_cli("inspect", url, "--insecure")
    assert trusted.returncode == unchecked.returncode == 0, trusted.stderr + unchecked.stderr
    assert "reveals     scores" in trusted.stdout
