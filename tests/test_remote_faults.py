"""A real network is not a reliable one: through a loopback proxy that delays, drops, answers 500 and
429 with Retry-After, bbx loses nothing, has nothing answered twice and counts exactly; it keeps to
--max-rps and --concurrency, and `bbx evaluate` resumes without sending answered work again."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

import bbx
import onnx_builders as ob
from bbx.remote import ClientConfig, EndpointClassifier
from remote_support import FaultProxy

FAULTS = ["hang", "drop_before", "drop_after", "status:500", "429:1", "status:503"]


def test_faults_lose_nothing_and_answer_nothing_twice(mlserver):
    # the detection request and X pass; then each fault hits one try and its retry passes
    script = ["ok", "ok"] + [step for fault in FAULTS for step in (fault, "ok")]
    # "hang" never answers, so the timeout is only waited out once: a generous one (a tiny model answers
    # in milliseconds; 10 s holds on a machine under heavy load, where 1.5 s counted a slow answer as a failure)
    config = ClientConfig(timeout=10, retries=3, backoff=0.01)
    image = ob.random_images(1, seed=11)[0]
    settings = {"method": "ftc", "estimator": "nes", "budget": 130, "seed": 2, "mask_size": 8}  # one request per step: 64 of them
    local = bbx.explain(bbx.OnnxClassifier(mlserver.tiny_onnx), image, **settings)
    with FaultProxy(mlserver.port, faults=script) as proxy:
        m = EndpointClassifier(mlserver.model_url("tiny", proxy.url), client=config)
        e = bbx.explain(m, image, **settings)
    assert np.array_equal(e.mask, local.mask) and e.queries == local.queries  # nothing lost, the same answer
    t = m.traffic
    assert t["failures"] == t["retries"] == len(FAULTS)
    delivered = proxy.delivered
    hashes = [h for s in delivered for h in s.hashes]
    assert len(hashes) == len(set(hashes)) == t["answered"] == 2 + e.queries  # nothing answered twice
    assert t["requests"] == len(delivered)
    assert sorted(s.fault for s in proxy.seen if s.fault != "ok") == sorted(FAULTS)
    ordered = sorted(proxy.seen, key=lambda s: s.started)
    after = ordered[[s.fault for s in ordered].index("429:1") + 1]
    slowed = next(s for s in ordered if s.fault == "429:1")
    assert after.started - slowed.ended >= 0.8  # Retry-After: 1 (less scheduling slack) beats a backoff of 0.01 s


def test_concurrency_and_rate_limit_hold(mlserver):
    images = ob.random_images(12, seed=4)
    with FaultProxy(mlserver.port, delay=0.5) as proxy:  # long enough that the 3 overlap on a busy machine
        m = EndpointClassifier(mlserver.model_url("tiny", proxy.url), max_batch=2,
                               client=ClientConfig(concurrency=3))
        m.scores(images)  # 6 requests of 2
        assert proxy.max_in_flight == 3
    with FaultProxy(mlserver.port) as proxy:
        m = EndpointClassifier(mlserver.model_url("tiny", proxy.url), max_batch=2,
                               client=ClientConfig(concurrency=3, max_rps=4))
        m.scores(images)
        starts = sorted(s.started for s in proxy.seen)
    # the client spaces its starts by 1/4 s; the proxy sees them later by a varying delay, so the span
    # (6/4 s at least, less the first one's delay) is what is checked, not each gap
    assert len(starts) == 7 and starts[-1] - starts[0] >= 6 / 4 - 0.1


def test_requests_too_large_are_halved_until_the_endpoint_takes_them(mlserver):
    images = ob.random_images(8, seed=6)
    with FaultProxy(mlserver.port, max_images=3) as proxy:
        m = EndpointClassifier(mlserver.model_url("tiny", proxy.url), max_batch=8)
        first = m.scores(images).raw  # 8 refused, 4 refused, 2 + 2 taken; 4 refused, 2 + 2 taken
        assert m.max_batch == 2
        m.scores(ob.random_images(4, seed=7))  # 2 + 2 at once
    assert np.array_equal(first, bbx.OnnxClassifier(mlserver.tiny_onnx).scores(images).raw)
    assert [s.images for s in proxy.seen] == [2, 8, 4, 2, 2, 4, 2, 2, 2, 2]
    assert m.traffic["answered"] == sum(s.images for s in proxy.delivered) == 2 + 8 + 4
    assert m.traffic["failures"] == 3 and m.traffic["retries"] == 0  # no request was sent twice as it was


def test_evaluate_resumes_after_a_stop_without_resending_answered_work(mlserver, tmp_path):
    photos = []
    for i in range(2):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray((ob.random_images(1, seed=20 + i)[0] * 255).astype(np.uint8)).save(photos[-1])
    url = mlserver.model_url("tiny")

    def evaluate(out, *args):
        cmd = [sys.executable, "-m", "bbx", "evaluate", url, *map(str, args), "--methods", "ftc", "--seeds", "1",
               "--budget", "40", "--out", str(out), "-q"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    stopped = evaluate(tmp_path / "ev", *photos, "--max-answered", 60)  # the cap stops it in the second job
    assert stopped.returncode == 2 and "--max-answered" in stopped.stderr, stopped.stderr
    lines = (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["image"] == str(photos[0])
    resumed = evaluate(tmp_path / "ev", *photos)
    alone = evaluate(tmp_path / "alone", photos[1])
    assert resumed.returncode == alone.returncode == 0, resumed.stderr + alone.stderr
    assert "1 done before, 1 to do" in resumed.stderr
    sent = [int(p.stdout.split("endpoint: ")[1].split()[0]) for p in (resumed, alone)]
    assert sent[0] == sent[1]  # the resumed run sent what the second image alone needs, nothing of the first
    records = [json.loads(ln) for ln in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in photos]
    assert all(r["traffic"]["answered"] + r["traffic"]["cached"] == r["queries"] + r["insertion_queries"]
               for r in records)
