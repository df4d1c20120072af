"""bbx over the Open Inference Protocol's gRPC form, against MLServer's real gRPC port (the
``mlserver`` fixture) and a loopback gRPC proxy that injects faults (tests/grpc_proxy.py): the same
answers and masks as the local file, raw tensors (fewer bytes than JSON), a message above the
server's limit halved, faults retried without losing or repeating an image, the hard cap, TLS, and
no credential in any output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import bbx
import onnx_builders as ob
from bbx.errors import BudgetError, EndpointError, OptionError
from bbx.remote import ClientConfig, EndpointClassifier
from remote_support import bbx_cli, free_port, one_error_line, self_signed

pytest.importorskip("grpc", reason="the remote extra (grpcio, protobuf) is not installed")
from grpc_proxy import GrpcFaultProxy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0.onnx"
PHOTO = ROOT / "models" / "samples" / "chelsea.png"
TOKEN = "s3cr3t-grpc-token-bbx-35"


def test_grpc_scores_equal_the_local_file_and_http_bit_for_bit(mlserver):
    m = EndpointClassifier(mlserver.grpc_url("tiny"), max_batch=3)
    http = EndpointClassifier(mlserver.model_url("tiny"), max_batch=3)
    local = bbx.OnnxClassifier(mlserver.tiny_onnx)
    assert (m.spec, m.labels, m.output, m.reveals) == (http.spec, http.labels, http.output, http.reveals)
    assert m.spec_sources["mean"] == "metadata"  # the bbx.preprocess parameter, read from gRPC metadata
    images = ob.random_images(7, seed=3)
    assert np.array_equal(m.scores(images).raw, local.scores(images).raw)
    assert m.queries == 7 and m.traffic["requests"] == 1 + 3 and m.traffic["answered"] == 2 + 7
    assert m.name == mlserver.grpc_url("tiny") and m.describe()["reveals"] == "scores"


def test_grpc_masks_equal_the_local_files_for_greedy_and_ftc(mlserver, tmp_path):
    url = mlserver.grpc_url("efficientnet_lite0")
    for method in ("greedy", "ftc"):
        out = {}
        for where, model in (("remote", url), ("local", BUNDLED)):
            out[where] = tmp_path / f"{method}-{where}"
            proc = bbx_cli("explain", model, PHOTO, "--method", method, "--budget", 60, "--out", out[where], "-q")
            assert proc.returncode == 0, proc.stderr
        assert np.array_equal(np.load(out["remote"] / "mask.npy"), np.load(out["local"] / "mask.npy")), method
        report = json.loads((out["remote"] / "report.json").read_text())
        assert report["model"] == url and report["device"] == "remote" and report["queries"] <= 60
        assert report["traffic"]["answered"] + report["traffic"]["cached"] == report["queries"] + 2


def test_raw_tensors_send_fewer_bytes_per_image_than_json(mlserver):
    images = np.random.default_rng(0).random((8, 224, 224, 3), dtype=np.float32)
    sent = {}
    urls = {"grpc": mlserver.grpc_url("efficientnet_lite0"), "json": mlserver.model_url("efficientnet_lite0")}
    for kind, url in urls.items():
        m = EndpointClassifier(url, max_batch=4)  # 4 images of 224x224 float32: within gRPC's 4 MB
        before = m.traffic["bytes_sent"]
        m.scores(images)
        sent[kind] = (m.traffic["bytes_sent"] - before) / 8
    assert sent["grpc"] < 3 * 224 * 224 * 4 * 1.01  # the float32 values and little more
    assert sent["json"] / sent["grpc"] >= 2.5, sent


def test_a_message_above_the_servers_limit_is_split_to_the_size_it_states(mlserver):
    """MLServer keeps gRPC's 4 MB limit on a message: 20 images of 224x224 float32 (12 MB) are
    refused with RESOURCE_EXHAUSTED "larger than max (12042... vs. 4194304)"; bbx splits the request
    at once into the 6 images that fit (3.6 MB; halving would have tried 10, then sent 5), and later
    requests stay at 6."""
    m = EndpointClassifier(mlserver.grpc_url("efficientnet_lite0"))
    images = np.random.default_rng(1).random((20, 224, 224, 3), dtype=np.float32)
    assert np.array_equal(m.scores(images).raw, bbx.OnnxClassifier(BUNDLED).scores(images).raw)
    assert m.max_batch == 6
    t = m.traffic
    assert (t["answered"], t["requests"], t["failures"], t["retries"]) == (2 + 20, 1 + 4, 1, 0)  # 6 + 6 + 6 + 2


FAULTS = ["delay:3.0", "unavailable", "drop_after", "status:INTERNAL", "exhausted:1", "status:ABORTED"]


def test_faults_lose_nothing_and_answer_nothing_twice(mlserver):
    script = ["ok", "ok"] + [step for fault in FAULTS for step in (fault, "ok")]  # detection and X pass
    config = ClientConfig(timeout=1.5, retries=3, backoff=0.01)
    image = ob.random_images(1, seed=11)[0]
    settings = {"method": "ftc", "estimator": "nes", "budget": 130, "seed": 2, "mask_size": 8}
    local = bbx.explain(bbx.OnnxClassifier(mlserver.tiny_onnx), image, **settings)
    with GrpcFaultProxy(mlserver.grpc_port, faults=script) as proxy:
        m = EndpointClassifier(mlserver.grpc_url("tiny", proxy.url), client=config)
        e = bbx.explain(m, image, **settings)
    assert np.array_equal(e.mask, local.mask) and e.queries == local.queries
    t = m.traffic
    assert t["failures"] == t["retries"] == len(FAULTS)
    hashes = [h for s in proxy.delivered for h in s.hashes]
    assert len(hashes) == len(set(hashes)) == t["answered"] == 2 + e.queries  # nothing answered twice
    assert t["requests"] == len(proxy.delivered)
    assert sorted(s.fault for s in proxy.seen if s.fault != "ok") == sorted(FAULTS)
    ordered = sorted(proxy.seen, key=lambda s: s.started)
    slowed = next(s for s in ordered if s.fault == "exhausted:1")
    after = ordered[ordered.index(slowed) + 1]
    assert after.started - slowed.ended >= 0.8  # RetryInfo's 1 s (less scheduling slack) beats a backoff of 0.01 s


def test_statuses_no_retry_changes_end_with_one_line(mlserver):
    for fault, said in (("malformed", "malformed message"), ("wrong_shape", "wrong shape"),
                        ("status:INVALID_ARGUMENT", "gRPC INVALID_ARGUMENT")):
        with GrpcFaultProxy(mlserver.grpc_port, faults=["ok", fault]) as proxy:
            m = EndpointClassifier(mlserver.grpc_url("tiny", proxy.url), client=ClientConfig(backoff=0.01))
            with pytest.raises(EndpointError, match=said):
                m.scores(ob.random_images(2, seed=0))
        assert len(proxy.seen) == 2, fault  # not retried
    with GrpcFaultProxy(mlserver.grpc_port, faults=["ok"] + ["unavailable"] * 3) as proxy:
        m = EndpointClassifier(mlserver.grpc_url("tiny", proxy.url), client=ClientConfig(retries=2, backoff=0.01))
        with pytest.raises(EndpointError, match="failed 3 times .*UNAVAILABLE"):
            m.scores(ob.random_images(2, seed=0))
    assert (m.traffic["failures"], m.traffic["retries"], m.traffic["answered"], m.queries) == (3, 2, 2, 0)


def test_budget_is_a_hard_cap_and_a_stated_limit_splits_a_request(mlserver):
    with GrpcFaultProxy(mlserver.grpc_port, max_images=3) as proxy:  # states its limit in bytes: 3 images
        m = EndpointClassifier(mlserver.grpc_url("tiny", proxy.url), max_batch=8,
                               client=ClientConfig(max_answered=12, concurrency=1))  # one at a time: a fixed order
        m.scores(ob.random_images(8, seed=6))  # 8 refused, then 3 + 3 + 2
        assert m.max_batch == 3
        m.scores(ob.random_images(2, seed=7))  # 12 answered: at the cap
        with pytest.raises(BudgetError, match="at most 12 images"):
            m.scores(ob.random_images(1, seed=8))  # not sent
    assert [s.images for s in proxy.seen] == [2, 8, 3, 3, 2, 2]
    assert m.traffic["answered"] == sum(s.images for s in proxy.delivered) == 12
    assert (m.traffic["failures"], m.traffic["retries"]) == (1, 0)


def test_concurrency_and_rate_limit_hold(mlserver):
    images = ob.random_images(12, seed=4)
    with GrpcFaultProxy(mlserver.grpc_port, delay=0.5) as proxy:  # long enough that the 3 overlap on a busy machine
        m = EndpointClassifier(mlserver.grpc_url("tiny", proxy.url), max_batch=2, client=ClientConfig(concurrency=3))
        m.scores(images)  # 6 calls of 2
        assert proxy.max_in_flight == 3
    with GrpcFaultProxy(mlserver.grpc_port) as proxy:
        m = EndpointClassifier(mlserver.grpc_url("tiny", proxy.url), max_batch=2,
                               client=ClientConfig(concurrency=3, max_rps=4))
        m.scores(images)
        starts = sorted(s.started for s in proxy.seen)
    assert len(starts) == 7 and starts[-1] - starts[0] >= 6 / 4 - 0.1  # spaced by 1/4 s (the span, as over HTTP)


def test_one_clear_line_for_each_broken_grpc_endpoint(mlserver):
    one_error_line(bbx_cli("inspect", f"grpc://127.0.0.1:{free_port()}/tiny"), "connection refused")
    one_error_line(bbx_cli("inspect", mlserver.grpc_url("nope")), "not found", "check the model name")
    one_error_line(bbx_cli("inspect", "grpc://127.0.0.1/tiny"), "has no port")
    one_error_line(bbx_cli("inspect", "grpc://127.0.0.1:1/a/b"), "must name one model")
    one_error_line(bbx_cli("inspect", "grpc://user:pw@127.0.0.1:1/tiny"), "--auth-env")
    one_error_line(bbx_cli("inspect", f"grpc://127.0.0.1:{mlserver.port}/tiny"), "gRPC")  # the HTTP port
    with pytest.raises(OptionError, match="not a valid endpoint URL"):
        EndpointClassifier("grpcx://127.0.0.1:1/tiny")


def test_a_token_appears_in_no_output_and_travels_as_metadata(mlserver, tmp_path):
    env_ok = {**os.environ, "BBX_TEST_TOKEN": TOKEN}
    env_bad = {**env_ok, "BBX_TEST_TOKEN": TOKEN + "-wrong"}
    with GrpcFaultProxy(mlserver.grpc_port, token=TOKEN) as proxy:
        url = mlserver.grpc_url("tiny", proxy.url)
        ok = bbx_cli("explain", url, PHOTO, "--auth-env", "BBX_TEST_TOKEN", "--budget", 20, "--out", tmp_path / "out",
                     env=env_ok)
        assert ok.returncode == 0, ok.stderr
        refused = bbx_cli("inspect", url, "--auth-env", "BBX_TEST_TOKEN", env=env_bad)
        one_error_line(refused, "UNAUTHENTICATED", "check the credential")
        missing = bbx_cli("inspect", url)
        one_error_line(missing, "UNAUTHENTICATED", "--auth-env")
    texts = [p.stdout + p.stderr for p in (ok, refused, missing)]
    texts += [f.read_bytes().decode("latin-1") for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert texts and not any(TOKEN in t for t in texts)


def test_grpcs_is_verified_against_the_ca_file(mlserver, tmp_path):
    tls = self_signed(tmp_path)
    if tls is None:
        pytest.skip("no openssl command to make a certificate")
    with GrpcFaultProxy(mlserver.grpc_port, tls=tls) as proxy:
        url = mlserver.grpc_url("tiny", proxy.url)
        one_error_line(bbx_cli("inspect", url), "TLS certificate", "not trusted", "--ca-file")
        trusted = bbx_cli("inspect", url, "--ca-file", tls[0])
        one_error_line(bbx_cli("inspect", url, "--insecure"), "--insecure is not available with grpcs", "--ca-file")
    assert trusted.returncode == 0, trusted.stderr
    assert "reveals     scores" in trusted.stdout and "per request at most, as grpc" in trusted.stdout
