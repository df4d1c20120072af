"""The engine against known answers: operator, regulariser, estimators, planted patches, budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bbx
from bbx.maths.estimate import Estimator
from bbx.model import Scores
from bbx.result.metrics import iou, top_mask
from bbx.maths.objective import Objective, total_variation
from bbx.maths.perturb import Perturber, blur, upsample
from bbx.query.masks import MaskQuery

import planted


@pytest.fixture(scope="module")
def target_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "target.onnx", "target"))


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "other.onnx", "other"))


# -- masking operator -------------------------------------------------------------------------
def test_upsample_matches_half_pixel_bilinear():
    # PyTorch's interpolate(mode="bilinear", align_corners=False) of [[1,2],[3,4]] to 4x4
    expected = np.array([[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5],
                         [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]])
    np.testing.assert_allclose(upsample(np.array([[1.0, 2.0], [3.0, 4.0]]), (4, 4)), expected, atol=1e-6)


def test_blur_has_kernel_11_support_and_keeps_mass():
    img = np.zeros((41, 41, 3), np.float32)
    img[20, 20] = 1.0
    out = blur(img, sigma=5.0, kernel=11)
    ys, xs = np.nonzero(out[..., 0] > 0)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 25, 15, 25)
    assert out[..., 0].sum() == pytest.approx(1.0, abs=1e-5)


def test_q_is_x_at_mask_one_and_blur_at_mask_zero():
    x = planted.photo()
    p = Perturber(x)
    np.testing.assert_allclose(p(np.ones((28, 28))), x, atol=1e-6)
    np.testing.assert_allclose(p(np.zeros((28, 28))), blur(x), atol=1e-6)


@pytest.mark.parametrize("variant", ["imagenet", "nhwc255", "bgr", "float16", "batch4", "uint8"])
def test_query_paths_agree(tmp_path, variant, classifier_on_test_device):
    """The fused NumPy and ONNX-front paths give the reference path's scores, on every convention."""
    import onnx_builders

    model = classifier_on_test_device(onnx_builders.build(variant, tmp_path))
    x = onnx_builders.random_images(1, seed=5)[0]
    pert = Perturber(x)
    masks = np.random.default_rng(0).uniform(-0.2, 1.2, (7, 28, 28))  # probes leave [0, 1] too
    reference = MaskQuery(model, pert, "reference")(masks)
    tol = 3e-3 if variant == "float16" else 1e-4
    for path in ("numpy", "onnx", "fused"):  # fused without a target: front and model composed, scores back
        query = MaskQuery(model, pert, path)
        assert query.query_path == ("reference" if variant == "uint8" else path)
        np.testing.assert_allclose(query(masks).probs, reference.probs, rtol=tol, atol=tol)
    k = int(np.argmax(reference.probs[0]))
    want = reference.target(k)
    for path in ("device", "fused"):
        query = MaskQuery(model, pert, path, target=k)
        assert query.query_path == ("reference" if variant == "uint8" else path)
        terms = query(masks)
        if variant == "uint8":
            terms = terms.target(k)
        for field in ("prob", "rest", "logit", "others_mean"):  # what the losses read, reduced on the device
            np.testing.assert_allclose(getattr(terms, field), getattr(want, field), rtol=tol, atol=tol,
                                       err_msg=f"{path} {field}")
    assert model.queries == 6 * 7
    centre, offsets = masks[0], (masks[1:3] - masks[0]).astype(np.float32)  # 4 antithetic probes, formed on the device
    want = MaskQuery(model, pert, "reference")(np.concatenate([centre + offsets, centre - offsets])).target(k)
    for path in ("onnx", "device", "fused"):
        query = MaskQuery(model, pert, path, target=k)
        assert query.pairs_on_device(2) == (variant != "uint8")
        if query.pairs_on_device(2):
            got = query.antithetic(centre, offsets)
            got = got if path != "onnx" else got.target(k)
            np.testing.assert_allclose(got.prob, want.prob, rtol=tol, atol=tol, err_msg=path)


def test_device_path_keeps_the_rest_of_f_exact_near_certainty(tmp_path):
    """Σ_{i≠k} f_i is summed on the device, not taken as 1 - f_k: it keeps its digits when f_k ≈ 1."""
    from bbx.query.masks import back_graph
    import onnxruntime as ort
    from onnx import TensorProto

    z = np.zeros((2, 10), np.float32)
    z[:, 3] = [30.0, 12.0]  # f_3 = 1 - 9.4e-13 and 1 - 5.5e-5
    sess = ort.InferenceSession(back_graph(10, TensorProto.FLOAT).SerializeToString())
    terms = sess.run(["terms"], {"scores": z, "k": np.array([3], np.int64)})[0]
    want = bbx.model.Scores(z).target(3)
    np.testing.assert_allclose(terms[:, 1], want.rest, rtol=1e-6)
    assert terms[0, 1] == pytest.approx(9 * np.exp(-30.0), rel=1e-5)
    np.testing.assert_allclose(terms[:, 3], [0.0, 0.0])  # mean of the other logits
    np.testing.assert_allclose(terms[:, 2], [30.0, 12.0])


def test_device_path_needs_a_target_and_reports_nan_scores(tmp_path):
    import onnx_builders as ob
    from bbx.errors import ModelError

    model = bbx.OnnxClassifier(ob.build_nan_on_white(tmp_path))
    pert = Perturber(np.ones((ob.SIZE, ob.SIZE, 3), np.float32))
    with pytest.raises(bbx.OptionError, match="needs the target class"):
        MaskQuery(model, pert, "device")
    with pytest.raises(ModelError, match="NaN or infinite scores"):
        MaskQuery(model, pert, "device", target=0)(np.ones((2, 28, 28)))


@pytest.mark.parametrize("path", ["onnx", "device", "fused"])
def test_explain_on_the_device_paths_follows_the_host_path(target_model, path):
    """Same seed, same steps: forming the probes and the images on the device, reducing the scores
    there, or all of it in one composed graph, changes the masks only at float noise against the
    NumPy path (probes, images and loss terms on the host); the report names the path taken."""
    runs = [bbx.explain(target_model, planted.photo(), method=m, iterations=15, pairs=6, seed=2, query_path=p, estimator="nes")
            for m in ("ftc", "fntc") for p in ("numpy", path)]
    for a, b in (runs[:2], runs[2:]):
        assert a.queries == b.queries == 2 + 2 * 6 * 15
        assert (a.config["query_path"], b.config["query_path"]) == ("numpy", path)
        assert (a.config["probes"], b.config["probes"]) == ("host", "graph")
        np.testing.assert_allclose(a.mask, b.mask, atol=1e-4)
        np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-4, atol=1e-6)


def test_onnx_front_builds_the_reference_images(target_model):
    """The front graph's images themselves, not only the scores, match Q(X; M) normalised: for
    masks given as they are (centre 0), and for antithetic probes M ± c u formed in the graph."""
    import onnxruntime as ort
    from bbx.preprocess import to_model_input
    from bbx.query.masks import front_graph

    x = planted.photo()
    pert = Perturber(x)
    rng = np.random.default_rng(2)
    masks = rng.uniform(0, 1, (3, 28, 28)).astype(np.float32)
    centre, offsets = rng.uniform(0.2, 0.8, (28, 28)).astype(np.float32), rng.normal(0, 0.1, (3, 28, 28)).astype(np.float32)
    sess = ort.InferenceSession(front_graph((56, 56), "NCHW", np.float32).SerializeToString())
    images = {"base": pert.blurred.transpose(2, 0, 1)[None], "delta": pert.delta.transpose(2, 0, 1)[None]}
    given = sess.run(["x"], {"masks": masks[:, None], "centre": np.zeros((1, 1, 28, 28), np.float32),
                             "rows": np.array([3]), **images})[0]
    np.testing.assert_allclose(given, to_model_input(pert(masks), target_model.spec, np.float32), atol=1e-5)
    pairs = sess.run(["x"], {"masks": offsets[:, None], "centre": centre[None, None], "rows": np.array([6]), **images})[0]
    probes = np.concatenate([centre + offsets, centre - offsets])
    np.testing.assert_allclose(pairs, to_model_input(pert(probes), target_model.spec, np.float32), atol=1e-5)


@pytest.mark.parametrize("path", ["onnx", "device", "fused"])
def test_antithetic_probes_formed_on_the_device_score_as_the_reference(tmp_path, path, classifier_on_test_device):
    """query.antithetic(M, c u): the 2P probes M + c u then M - c u, formed by the front graph, score
    as the reference path scores them built on the host; 2P queries counted."""
    model = classifier_on_test_device(planted.build(tmp_path / "target.onnx", "target"), max_batch=64)
    pert = Perturber(planted.photo())
    rng = np.random.default_rng(11)
    centre, offsets = rng.uniform(0.3, 0.9, (28, 28)), rng.normal(0, 0.1, (12, 28, 28)).astype(np.float32)
    query = MaskQuery(model, pert, path, target=1)
    assert query.pairs_on_device(12) and not query.pairs_on_device(40)  # 80 probes go in two calls
    got = query.antithetic(centre, offsets)
    assert model.queries == 24
    want = MaskQuery(model, pert, "reference")(np.concatenate([centre + offsets, centre - offsets])).probs[:, 1]
    np.testing.assert_allclose(got.prob if path != "onnx" else got.probs[:, 1], want, atol=1e-5)
    with pytest.raises(ValueError, match="one call"):
        query.antithetic(centre, np.zeros((40, 28, 28), np.float32))


def test_host_paths_do_not_form_probes_on_the_device(target_model):
    pert = Perturber(planted.photo())
    assert not any(MaskQuery(target_model, pert, p, target=0).pairs_on_device(2) for p in ("numpy", "reference"))


def test_onnx_path_follows_changing_batch_sizes(tmp_path, classifier_on_test_device):
    """One query object per bound path, reused bindings, batches of 5, 2, then 70 (split 35 + 35): every
    answer is right."""
    model = classifier_on_test_device(planted.build(tmp_path / "target.onnx", "target"), max_batch=64)
    pert = Perturber(planted.photo())
    reference = MaskQuery(model, pert, "reference")
    bound = [MaskQuery(model, pert, "onnx"), MaskQuery(model, pert, "fused")]
    rng = np.random.default_rng(6)
    for n in (5, 2, 70):
        masks = rng.uniform(0, 1, (n, 28, 28))
        for query in bound:
            np.testing.assert_allclose(query(masks).probs, reference(masks).probs, atol=1e-5, err_msg=query.query_path)


@pytest.mark.parametrize("path", ["device", "fused"])
def test_each_calls_terms_outlive_the_next_call(tmp_path, path, classifier_on_test_device):
    """Calls of one probe each (max_batch 1): a call's terms are its own, not a view of the output
    buffer that the next call writes over."""
    model = classifier_on_test_device(planted.build(tmp_path / "target.onnx", "target"), max_batch=1)
    pert = Perturber(planted.photo())
    masks = np.random.default_rng(9).uniform(0, 1, (4, 28, 28))
    got = MaskQuery(model, pert, path, target=1)(masks).prob
    want = MaskQuery(model, pert, "reference")(masks).probs[:, 1]
    assert len(np.unique(want.round(4))) == 4  # four masks, four different answers
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("path", ["onnx", "device", "fused", "numpy", "reference"])
def test_probe_batches_go_to_the_model_in_one_shape(tmp_path, path, classifier_on_test_device):
    """130 probes at max_batch 64: three calls of 44 (the last padded by two), 130 queries counted."""
    import bbx.query.masks

    model = classifier_on_test_device(planted.build(tmp_path / "target.onnx", "target"), max_batch=64)
    pert = Perturber(planted.photo())
    query = MaskQuery(model, pert, path, target=1)
    shapes = []
    runs_the_model = bbx.query.masks.sessions(model) if path == "fused" else [model.session]
    for session in runs_the_model:
        for name in ("run", "run_with_iobinding"):
            real = getattr(session, name)

            def spy(*args, _real=real, **kwargs):
                out = _real(*args, **kwargs)
                shapes.append(out[0].shape[0] if isinstance(out, list) else
                              args[0].get_outputs()[0].shape()[0])
                return out

            setattr(session, name, spy)
    masks = np.random.default_rng(8).uniform(0, 1, (130, 28, 28))
    out = query(masks)
    probs = out.prob if path in ("device", "fused") else out.probs[:, 1]
    assert shapes == [44, 44, 44]
    assert model.queries == 130 and probs.shape[0] == 130
    single = MaskQuery(model, pert, "reference")(masks[-2:]).probs[:, 1]  # the padded chunk's real rows
    np.testing.assert_allclose(probs[-2:], single, atol=1e-5)


def test_bbx_graphs_beside_the_model_take_one_thread_that_does_not_spin(tmp_path):
    """The front and back graphs hold next to no CPU work; their own spinning pools took a fifth of
    the loop from the model's on a 2-core CPU (docs/gpu.md). The composed graph shares the model's."""
    import bbx.query.masks

    model = bbx.OnnxClassifier(planted.build(tmp_path / "target.onnx", "target"))
    MaskQuery(model, Perturber(planted.photo()), "device", target=0)
    small = bbx.query.masks.sessions(model)
    MaskQuery(model, Perturber(planted.photo()), "fused", target=0)
    fused = [s for s in bbx.query.masks.sessions(model) if s not in small]
    assert len(small) == 2 and len(fused) == 1
    for session in small:
        opts = session.get_session_options()
        assert opts.intra_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert fused[0].get_session_options().intra_op_num_threads == model.runtime.options.intra_op_num_threads


def test_large_probe_batches_are_split(target_model):
    pert = Perturber(planted.photo())
    before = target_model.queries
    scores = MaskQuery(target_model, pert)(np.ones((150, 28, 28)))
    assert scores.probs.shape == (150, 3)
    assert target_model.queries - before == 150


# -- regulariser ------------------------------------------------------------------------------
def test_regulariser_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    mask = rng.uniform(0.1, 0.9, (28, 28))
    obj = Objective("ftc")
    _, grad = obj.regularizer(mask)
    h = 1e-6
    for i, j in [(0, 0), (5, 7), (27, 27), (13, 0), (0, 20)]:
        e = np.zeros_like(mask)
        e[i, j] = h
        fd = (obj.regularizer(mask + e)[0] - obj.regularizer(mask - e)[0]) / (2 * h)
        assert grad[i, j] == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_regulariser_is_averaged_over_elements():
    mask = np.ones((28, 28))
    mask[:14] = 0.0  # half the mask blurred, one straight edge
    tv, _ = total_variation(mask)
    assert tv == pytest.approx(28 / 784, rel=1e-3)
    value, _ = Objective(lambda1=0.0, lambda2=3.0).regularizer(mask)
    assert value == pytest.approx(1.5)


def _terms_from_full(s, k):
    """The loss terms by definition, from the float64 softmax and logits of the whole batch."""
    f, z = s.probs, s.logits
    others = np.delete(np.arange(z.shape[1]), k)
    return f[:, k], f[:, others].sum(axis=1), z[:, k], z[:, others].mean(axis=1)


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_target_terms_match_the_full_softmax(kind, dtype):
    rng = np.random.default_rng(4)
    z = rng.normal(0, 3, (64, 1000))
    z[:8, 17] += 40.0  # near-certain rows: sum_{i!=k} f_i must not come out as 1 - f_k
    raw = bbx.model.softmax(z) if kind == "probabilities" else z
    s = Scores(raw.astype(dtype), kind)
    for k in (17, 0, 999):
        got, want = s.target(k), _terms_from_full(s, k)
        for a, b in zip((got.prob, got.rest, got.logit, got.others_mean), want):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-12)
    if kind == "logits" or dtype != np.float16:  # (float16 probabilities of e^-40 are 0)
        rest, want = s.target(17).rest[:8], _terms_from_full(s, 17)[1][:8]
        assert (rest > 0).all() and (rest < 1e-9).all()  # far below 1 - f_k's resolution (1e-16)
        np.testing.assert_allclose(rest, want, rtol=2e-5, atol=0)


def test_target_terms_fail_on_a_wrong_softmax():
    """The check above can fail: terms of a shifted class do not match."""
    s = Scores(np.random.default_rng(5).normal(0, 3, (16, 10)).astype(np.float32))
    assert not np.allclose(s.target(3).prob, _terms_from_full(s, 4)[0], rtol=2e-5)


def test_direction_stream_draws_what_drawing_in_turn_draws():
    est = Estimator("nes", pairs=8)
    ahead = list(est.stream(np.random.default_rng(7), (28, 28), 5))
    rng = np.random.default_rng(7)
    in_turn = [est.directions(rng, (28, 28)) for _ in range(5)]
    assert len(ahead) == 5
    for a, b in zip(ahead, in_turn):
        np.testing.assert_array_equal(a.u, b)
        assert a.offsets.dtype == np.float64
        np.testing.assert_array_equal(a.offsets, est.step * b)
    drawn = next(iter(Estimator("nes", pairs=8, step=0.05, dtype="float32").stream(np.random.default_rng(7), (28, 28), 1)))
    assert drawn.offsets.dtype == np.float32
    np.testing.assert_allclose(drawn.offsets, 0.05 * in_turn[0], rtol=1e-6)


def test_direction_stream_draws_the_first_step_before_it_is_asked():
    """The first draw overlaps the explanation's set-up: it starts when the stream is made."""
    import threading

    from bbx.maths.estimate import DirectionStream

    drawn = threading.Event()

    def draw():
        drawn.set()
        return np.zeros((1, 2, 2))

    stream = DirectionStream(draw, 3)
    assert drawn.wait(5.0)  # no next() yet
    assert len(list(stream)) == 3 and list(stream) == []
    never = threading.Event()
    assert list(DirectionStream(never.set, 0)) == [] and not never.wait(0.2)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_background_work_runs_in_a_forked_child():
    """A child forked after the worker started inherits the executor but not its thread: bbx makes
    the child its own, or the child's first explanation would wait forever."""
    import os
    import warnings

    from bbx.maths.estimate import background

    assert background(sum, [1, 2]).result(timeout=5) == 3  # the parent's worker exists
    with warnings.catch_warnings():  # Python 3.12 warns that forking a threaded process is risky: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: exit 0 only if background work runs there
        try:
            ok = background(sum, [3, 4]).result(timeout=5) == 7
        except Exception:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- estimators -------------------------------------------------------------------------------
def _loss_at(model, x, method="ftc"):
    pert = Perturber(x)
    query = MaskQuery(model, pert)
    s0 = model.scores(x[None])
    obj = Objective(method)
    k = int(s0.probs[0].argmax())
    return lambda masks: obj.model_loss(query(masks), k, s0.logits[0])


def _central_fd(loss, mask, h=0.05):
    eye = np.eye(mask.size).reshape(mask.size, *mask.shape)
    values = loss(np.concatenate([mask + h * eye, mask - h * eye]))
    return ((values[: mask.size] - values[mask.size:]) / (2 * h)).reshape(mask.shape)


def _cos(a, b):
    return float(np.ravel(a) @ np.ravel(b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("kind", ["nes", "spsa"])
def test_mean_estimate_agrees_with_central_differences(target_model, kind):
    loss = _loss_at(target_model, planted.photo())
    mask = np.full((28, 28), 0.7)
    reference = _central_fd(loss, mask)
    est = Estimator(kind, pairs=100, step=0.05)
    rng = np.random.default_rng(0)
    mean = np.mean([est.estimate(loss, mask, rng)[0] for _ in range(100)], axis=0)
    assert _cos(mean, reference) >= 0.95


def test_single_estimate_improves_with_pairs(target_model):
    loss = _loss_at(target_model, planted.photo())
    mask = np.full((28, 28), 0.7)
    reference = _central_fd(loss, mask)
    rng = np.random.default_rng(1)
    cos = {p: np.mean([_cos(Estimator("nes", p, 0.05).estimate(loss, mask, rng)[0], reference)
                       for _ in range(20)]) for p in (2, 16, 128)}
    assert cos[2] < cos[16] < cos[128]


# -- planted ground truth ---------------------------------------------------------------------
def _top_iou(e, patch):
    truth = planted.patch_mask(patch)
    return iou(top_mask(e.heatmap, truth.mean()), truth)


@pytest.mark.parametrize("method", ["ftc", "plain"])
def test_finds_the_patch_that_hurts_the_target(target_model, method):
    e = bbx.explain(target_model, planted.photo(), target=0, method=method)
    assert _top_iou(e, planted.A) >= 0.5
    assert _top_iou(e, planted.C) == 0.0  # the decoy texture is read by no class
    assert e.prob_after > e.prob_before + 0.3


def test_fntc_finds_the_patch_that_feeds_another_class(other_model):
    e = bbx.explain(other_model, planted.photo(), target="target", method="fntc")
    assert e.target == 0
    assert _top_iou(e, planted.B) >= 0.5
    assert e.prob_after > e.prob_before + 0.2


def test_ftc_leaves_alone_what_only_feeds_other_classes(other_model):
    """F-TC's term keeps the other logits where they were: blurring B (which drives class 1) is penalised."""
    e = bbx.explain(other_model, planted.photo(), target=0, method="ftc")
    assert (e.heatmap[planted.B] > 0.6).mean() < 0.1
    assert e.prob_after < e.prob_before + 0.05
    fntc = bbx.explain(other_model, planted.photo(), target=0, method="fntc")
    assert (fntc.heatmap[planted.B] > 0.6).mean() > 0.5  # the same settings do blur B under F-NTC


# -- reproducibility, budget, targets ---------------------------------------------------------
def test_same_seed_same_mask_bit_for_bit(target_model):
    a = bbx.explain(target_model, planted.photo(), method="ftc", iterations=20, seed=7, estimator="nes")
    b = bbx.explain(target_model, planted.photo(), method="ftc", iterations=20, seed=7, estimator="nes")
    c = bbx.explain(target_model, planted.photo(), method="ftc", iterations=20, seed=8, estimator="nes")
    assert np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


# odd and even budgets: an off-by-one in the plan spends one query too many only where budget - 2
# is odd (51 -> 52 queries), or where it lets one more step of 4 pairs in (49: 5 steps, not 6)
@pytest.mark.parametrize("budget,iterations,pairs", [(1000, 200, None), (50, 200, None), (51, 200, None),
                                                     (500, 30, 4), (49, 30, 4), (53, 7, None)])
def test_budget_is_never_exceeded_and_queries_are_exact(target_model, budget, iterations, pairs):
    before = target_model.queries
    e = bbx.explain(target_model, planted.photo(), method="ftc", budget=budget, iterations=iterations, pairs=pairs, estimator="nes")
    assert e.queries == target_model.queries - before
    assert e.queries <= budget
    assert e.queries == 2 + 2 * e.config["pairs"] * e.config["iterations"]
    if pairs is None:  # the budget is spent, not wasted
        assert e.queries > budget - 2 * e.config["pairs"]
    else:  # iterations and pairs given: the budget only caps them
        assert e.config["pairs"] == pairs and e.config["iterations"] <= iterations
        assert e.config["iterations"] == iterations or e.queries + 2 * pairs > budget  # cut only as the budget needs


def test_target_by_index_and_name(target_model):
    by_name = bbx.explain(target_model, planted.photo(), method="ftc", target="rival", iterations=2, estimator="nes")
    by_index = bbx.explain(target_model, planted.photo(), method="ftc", target=1, iterations=2, estimator="nes")
    assert by_name.target == by_index.target == 1
    assert by_name.target_name == "rival"
    with pytest.raises(bbx.BbxError, match="unknown target class"):
        bbx.explain(target_model, planted.photo(), method="ftc", target="zebra", iterations=2, estimator="nes")
    with pytest.raises(bbx.BbxError, match="out of range"):
        bbx.explain(target_model, planted.photo(), method="ftc", target=3, iterations=2, estimator="nes")


# -- the bundled model ------------------------------------------------------------------------
BUNDLED = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def lite0():
    return bbx.OnnxClassifier(BUNDLED / "efficientnet_lite0.onnx")


@pytest.mark.slow  # the bundled 224 px model through whole explanations
@pytest.mark.parametrize("method", ["ftc", "fntc"])
def test_bundled_model_target_probability_rises(lite0, method):
    e = bbx.explain(lite0, BUNDLED / "samples" / "chelsea.png", method=method, iterations=60, seed=0, estimator="nes")
    assert e.target_name == "tiger cat"
    assert e.prob_after > e.prob_before + 0.02
    assert e.queries == 2 + 2 * 8 * 60


@pytest.mark.slow  # the bundled 224 px model through whole explanations
def test_bundled_model_seed_reproduces_the_mask_bit_for_bit(lite0):
    a = bbx.explain(lite0, BUNDLED / "samples" / "chelsea.png", method="ftc", iterations=15, seed=11, estimator="nes")
    b = bbx.explain(lite0, BUNDLED / "samples" / "chelsea.png", method="ftc", iterations=15, seed=11, estimator="nes")
    assert np.array_equal(a.mask, b.mask) and a.mask.min() < 1.0


README = Path(__file__).resolve().parent.parent / "README.md"


def _printed(e) -> str:
    """The first line bbx explain prints (bbx/cli/explain.py), up to the query count."""
    return (f"chelsea.png: target {e.target_name!r} (class {e.target}) {e.prob_before:.4f} -> {e.prob_after:.4f}; "
            f"phi {e.phi_text}; undesirable pixels {100 * e.undesirable_ratio:.2f}%; {e.queries} queries")


def _readme_block(marker: str) -> str:
    """The ```text block that follows ``<!-- marker: ... -->`` in the README."""
    return README.read_text(encoding="utf-8").split(f"<!-- {marker}:", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow  # the bundled 224 px model through whole explanations
def test_the_readme_default_explanation_gives_the_readme_figures(lite0):
    """`bbx explain` with no arguments, as the README shows it: rise_lead, the default method, at most its
    2,000 queries; a search, so no convergence verdict."""
    e = bbx.explain(lite0, BUNDLED / "samples" / "chelsea.png")
    assert (e.config["method"], e.target_name, e.queries) == ("rise_lead", "tiger cat", 2000)
    assert (round(e.prob_before, 4), round(e.prob_after, 4)) == (0.3834, 0.7865)
    assert (round(e.phi, 1), round(100 * e.undesirable_ratio, 2)) == (65.4, 10.33)
    assert e.convergence == {}
    assert _printed(e) + "\n" in _readme_block("readme-cpu-run")  # the line the README quotes, figure for figure


@pytest.mark.slow  # the bundled 224 px model through whole explanations
def test_the_readme_soft_mask_explanation_gives_the_readme_figures(lite0):
    """`bbx explain --method ftc`, as the README shows it (CPU, the active estimator, at most 3,202
    queries): it converges, and the objective ends below its value at M = 1."""
    e = bbx.explain(lite0, BUNDLED / "samples" / "chelsea.png", method="ftc")
    assert (e.target_name, e.queries) == ("tiger cat", 3100)
    assert (round(e.prob_before, 4), round(e.prob_after, 4)) == (0.3834, 0.4412)
    assert (round(e.phi, 1), round(100 * e.undesirable_ratio, 2)) == (9.4, 0.07)
    c = e.convergence
    assert c["converged"] and (round(c["objective_at_ones"], 4), round(c["objective_final"], 4)) == (-0.3834, -0.4034)
    block = _readme_block("readme-ftc-run")  # the lines the README quotes, figure for figure
    assert _printed(e) + " in " in block  # then the seconds it took there
    from bbx.maths.convergence import Convergence

    assert Convergence(**c).line() + "\n" in block  # the last line bbx explain prints
