"""Triton's binary tensor data extension of the REST form, against a loopback server that implements
it from its specification (tests/triton_like.py): images go in binary where the server's metadata
lists the extension, as JSON where it does not, with the same answers as the local file."""

from __future__ import annotations

import numpy as np
import pytest

import bbx
import onnx_builders as ob
from bbx.remote import EndpointClassifier
from triton_like import TritonLike


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton_like")
    labels = [f"class{i}" for i in range(ob.CLASSES)]
    onnx = ob.build_plain(folder, "tiny", metadata=None, sidecar={"preprocess": ob.spec(), "labels": labels})
    return onnx, onnx.with_name("tiny.bbx.json")


def test_images_travel_in_binary_where_the_server_speaks_it(tiny):
    onnx, sidecar = tiny
    local = bbx.OnnxClassifier(onnx)
    images = ob.random_images(7, seed=3)
    sent = {}
    for binary in (True, False):
        with TritonLike(onnx, binary=binary) as server:
            m = EndpointClassifier(server.url, spec_file=sidecar, max_batch=3)
            assert m.describe()["wire"] == ("json+binary" if binary else "json")
            before = m.traffic["bytes_sent"]
            assert np.array_equal(m.scores(images).raw, local.scores(images).raw)
            sent[binary] = (m.traffic["bytes_sent"] - before) / len(images)
        forms = {form for form, _, _ in server.seen}
        assert forms == {"binary" if binary else "json"}
        counts = [n for _, _, n in server.seen]  # the detection request, then 3 + 3 + 1 in any order (sent at once)
        assert counts[0] == 2 and sorted(counts[1:]) == [1, 3, 3], counts
        assert m.traffic["bytes_sent"] == sum(size for _, size, _ in server.seen)
    raw = 3 * ob.SIZE * ob.SIZE * 4
    assert raw < sent[True] < 1.2 * raw  # the float32 bytes and a JSON header shared by the request's images
    assert sent[False] / sent[True] >= 2.5, sent


def test_explanations_through_the_binary_form_equal_the_local_ones(tiny):
    onnx, sidecar = tiny
    local = bbx.OnnxClassifier(onnx)
    image = ob.random_images(1, seed=9)[0]
    with TritonLike(onnx) as server:
        m = EndpointClassifier(server.url, spec_file=sidecar)
        for method, options in (("ftc", {"estimator": "nes", "seed": 4, "mask_size": 8}), ("greedy", {})):
            a = bbx.explain(m, image, method=method, budget=130, **options)
            b = bbx.explain(local, image, method=method, budget=130, **options)
            assert np.array_equal(a.mask, b.mask) and a.queries == b.queries <= 130, method
    assert {form for form, _, _ in server.seen} == {"binary"}
