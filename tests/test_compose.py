"""The fused query path: bbx's front and back graphs composed with the untouched model as one graph.

Models in several opsets (each of bbx's operators changed form at some opset), models whose names
clash with bbx's, models with external data and several outputs: the composed graph must give the
reference path's numbers, keep the model's opset, and leave the model's file as it was.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import bbx
import bbx.query.masks
import planted
from bbx.query.graphs import compose
from bbx.maths.perturb import Perturber
from bbx.query.masks import MaskQuery

SPEC = {"size": [planted.SIZE] * 2, "crop_pct": 1.0, "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1],
        "channel_order": "RGB", "layout": "NCHW"}


def energy_model(path: Path, opset: int, prefix: str = "", external: bool = False, ir_version: int = 7) -> Path:
    """Planted's ``target`` model (texture in patch A lowers class 0) in operators whose meaning has not
    changed since opset 10: Laplacian by Conv, squared, summed over A by a second Conv."""
    size = planted.SIZE
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    w_map = planted.patch_mask(planted.A).astype(np.float32)
    inits = {"w_lap": np.repeat(lap[None, None] / 3.0, 3, axis=1), "w_map": (w_map / w_map.sum())[None, None],
             "coef": np.array([[-1.0, 0.0, 0.0]], np.float32), "bias": np.array([2.0, 0.0, 0.0], np.float32)}
    n = lambda s: prefix + s  # noqa: E731
    nodes = [helper.make_node("Conv", [n("x"), n("w_lap")], [n("lap")], pads=[1, 1, 1, 1], name=n("conv1")),
             helper.make_node("Mul", [n("lap"), n("lap")], [n("sq")], name=n("square")),
             helper.make_node("Conv", [n("sq"), n("w_map")], [n("energy4")], name=n("conv2")),
             helper.make_node("Flatten", [n("energy4")], [n("energy")], name=n("flat")),
             helper.make_node("MatMul", [n("energy"), n("coef")], [n("lin")], name=n("matmul")),
             helper.make_node("Add", [n("lin"), n("bias")], [n("logits")], name=n("add"))]
    graph = helper.make_graph(
        nodes, "energy", [helper.make_tensor_value_info(n("x"), TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info(n("logits"), TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, n(k)) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    helper.set_model_props(model, {"bbx.preprocess": json.dumps(SPEC)})
    onnx.checker.check_model(model)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def assert_fused_matches_reference(model: bbx.OnnxClassifier) -> None:
    """Scores (no target) and the target's terms on the fused path, against the NumPy reference."""
    pert = Perturber(planted.photo())
    masks = np.random.default_rng(1).uniform(-0.1, 1.1, (9, 28, 28))
    reference = MaskQuery(model, pert, "reference")(masks)
    scores = MaskQuery(model, pert, "fused")
    assert scores.query_path == "fused"
    np.testing.assert_allclose(scores(masks).probs, reference.probs, atol=1e-5)
    terms = MaskQuery(model, pert, "fused", target=0)
    assert terms.query_path == "fused"
    got, want = terms(masks), reference.target(0)
    for field in ("prob", "rest", "logit", "others_mean"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-5, atol=1e-6, err_msg=field)


@pytest.mark.parametrize("opset", [11, 13, 18, 21])
def test_fused_path_in_each_opset_form(tmp_path, opset, classifier_on_test_device):
    """Resize and the reductions take their axes and sizes differently before and after opsets 13 and 18."""
    path = energy_model(tmp_path / f"energy{opset}.onnx", opset)
    assert_fused_matches_reference(classifier_on_test_device(path))
    composed = compose(onnx.load(str(path)), "x", "logits", (56, 56), "NCHW", np.float32, 3)
    assert [(o.domain, o.version) for o in composed.proto.opset_import] == [("", opset)]  # the model's own
    onnx.checker.check_model(composed.proto)


def test_a_model_before_opset_11_is_chained_with_a_warning(tmp_path, monkeypatch):
    model = bbx.OnnxClassifier(energy_model(tmp_path / "old.onnx", 10, ir_version=5))
    pert = Perturber(planted.photo())
    masks = np.random.default_rng(2).uniform(0, 1, (4, 28, 28))
    with pytest.warns(RuntimeWarning, match=r"cannot compose old\.onnx \(its opset 10 predates .*running the device path"):
        query = MaskQuery(model, pert, "fused", target=0)
    assert query.query_path == "device"
    np.testing.assert_allclose(query(masks).prob, MaskQuery(model, pert, "reference")(masks).probs[:, 0], atol=1e-6)
    with pytest.warns(RuntimeWarning, match="cannot compose"):
        e = bbx.explain(model, planted.photo(), method="ftc", iterations=2, pairs=2, query_path="fused", estimator="nes")
    assert e.config["query_path"] == "device"
    monkeypatch.setattr(onnx, "load", lambda *a, **k: pytest.fail("composition was tried again"))
    with pytest.warns(RuntimeWarning, match="cannot compose"):  # every explanation of an evaluation asks
        assert MaskQuery(model, pert, "fused", target=0).query_path == "device"


def test_auto_on_cuda_chains_quietly_where_the_model_cannot_be_composed(tmp_path, monkeypatch):
    """On CUDA, auto is the fused path; where the model cannot be composed it chains without a
    warning (nobody asked for the composed graph), while an explicit fused says why."""
    model = bbx.OnnxClassifier(energy_model(tmp_path / "old.onnx", 10, ir_version=5))
    monkeypatch.setattr(model, "device", "cuda")  # what auto reads
    monkeypatch.setattr(bbx.query.masks, "_OnnxFront", lambda *args, **kwargs: object())  # nothing opened on "cuda"
    pert = Perturber(planted.photo())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MaskQuery(model, pert, "auto", target=0).query_path == "device"
    with pytest.warns(RuntimeWarning, match="cannot compose"):
        assert MaskQuery(model, pert, "fused", target=0).query_path == "device"


def test_names_that_clash_with_bbx_names_are_stepped_around(tmp_path):
    """A model whose every name starts with ``bbx_``: bbx's own take a longer prefix."""
    path = energy_model(tmp_path / "clash.onnx", 17, prefix="bbx_")
    assert_fused_matches_reference(bbx.OnnxClassifier(path))
    composed = compose(onnx.load(str(path)), "bbx_x", "bbx_logits", (56, 56), "NCHW", np.float32, 3)
    assert composed.front.masks == "bbx__masks" and composed.out == "bbx__terms"


def test_external_data_model_is_composed_and_left_untouched(tmp_path):
    folder = tmp_path / "ext"
    folder.mkdir()
    path = energy_model(folder / "ext.onnx", 17, external=True)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert sorted(before) == ["ext.onnx", "ext.onnx.data"]
    assert_fused_matches_reference(bbx.OnnxClassifier(path))
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert after == before  # nothing written beside the model, nothing changed


@pytest.mark.parametrize("variant", ["features_logits", "softmax"])
def test_fused_path_reads_the_scores_output(tmp_path, variant):
    """With several outputs only the class scores are kept; with probabilities no back graph is composed
    (the losses read centred log-probabilities: Scores.target's own case) and the scores come back."""
    import onnx_builders

    model = bbx.OnnxClassifier(onnx_builders.build(variant, tmp_path))
    x = onnx_builders.random_images(1, seed=3)[0]
    pert = Perturber(x)
    masks = np.random.default_rng(4).uniform(0, 1, (5, 28, 28))
    query = MaskQuery(model, pert, "fused", target=1)
    out = query(masks)
    reference = MaskQuery(model, pert, "reference")(masks)
    if variant == "softmax":
        assert isinstance(out, bbx.model.Scores)
        np.testing.assert_allclose(out.probs, reference.probs, atol=1e-5)
    else:
        np.testing.assert_allclose(out.prob, reference.probs[:, 1], atol=1e-5)
    assert len(bbx.query.masks.sessions(model)) == 1  # the composed graph alone ran the model


def test_fused_path_reports_nan_scores(tmp_path):
    """The model's NaN reaches the terms in the composed graph too: refused, not optimised on."""
    import onnx_builders as ob
    from bbx.errors import ModelError

    model = bbx.OnnxClassifier(ob.build_nan_on_white(tmp_path))
    pert = Perturber(np.ones((ob.SIZE, ob.SIZE, 3), np.float32))
    for target in (None, 0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # composed, not chained
            query = MaskQuery(model, pert, "fused", target=target)
        with pytest.raises(ModelError, match="NaN or infinite scores"):
            query(np.ones((2, 28, 28)))
