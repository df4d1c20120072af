"""Model conventions: bbx detects them, undoes them, and scores every variant the same.

Each variant in :mod:`onnx_builders` computes the same function of the 0-1 RGB image behind a
different convention (layout, value range, dtype, channel order, batch, outputs ...), so once
bbx has undone the convention the scores must agree with the plain model's.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

import onnx_builders as ob
from bbx.cli import app
from bbx.errors import OptionError
from bbx.model.labels import imagenet_labels
from bbx.model import OnnxClassifier

VARIANTS = list(ob.VARIANTS)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every variant, built once, plus the plain reference with 1000 classes (for ``background``)."""
    folder = tmp_path_factory.mktemp("zoo")
    paths = {v: ob.build(v, folder) for v in VARIANTS}
    paths["plain1000"] = ob.build("plain", folder, name="plain1000", classes=1000)
    return paths


@pytest.fixture(scope="module")
def models(zoo):
    return {k: OnnxClassifier(p) for k, p in zoo.items()}


# -- detection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_detected_conventions(models, variant):
    m, want = models[variant], ob.VARIANTS[variant]
    assert m.input.layout == want["layout"]
    assert m.spec.layout == want["layout"]
    assert m.input.dtype == want["dtype"]
    assert m.input.batch == want["batch"]
    assert m.output.kind == want["kind"]
    assert m.num_classes == want["classes"]
    assert m.output.background is want["background"]
    assert m.spec.channel_order == want["channel_order"]
    assert m.input_size == (ob.SIZE, ob.SIZE)
    assert m.output.name == ob.SCORE_OUTPUT.get(variant, "logits")
    assert len(m.labels) == want["classes"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_inspect_json_in_process(zoo, variant):
    result = CliRunner().invoke(app, ["inspect", str(zoo[variant]), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    want = ob.VARIANTS[variant]
    assert d["input"]["layout"] == want["layout"]
    assert d["input"]["dtype"] == want["dtype"]
    assert d["input"]["batch"] == want["batch"]
    assert d["output"]["kind"] == want["kind"]
    assert d["output"]["num_classes"] == d["num_classes"] == want["classes"]
    assert d["output"]["background"] is want["background"]
    assert d["preprocess"]["channel_order"] == want["channel_order"]
    assert d["output"]["name"] == ob.SCORE_OUTPUT.get(variant, "logits")
    where = "sidecar" if variant.endswith("_sidecar") else "metadata"
    assert d["preprocess_sources"]["scale"] == where
    assert d["preprocess_sources"]["size"] == "graph"


@pytest.mark.parametrize("variant", ["uint8", "softmax", "background", "bgr"])
def test_inspect_json_console_script(zoo, variant):
    proc = subprocess.run(["bbx", "inspect", str(zoo[variant]), "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    d = json.loads(proc.stdout)
    want = ob.VARIANTS[variant]
    assert (d["input"]["layout"], d["input"]["dtype"], d["input"]["batch"]) == \
        (want["layout"], want["dtype"], want["batch"])
    assert (d["output"]["kind"], d["num_classes"], d["output"]["background"]) == \
        (want["kind"], want["classes"], want["background"])
    assert d["preprocess"]["channel_order"] == want["channel_order"]


def test_inspect_text_mentions_conventions(zoo):
    out = CliRunner().invoke(app, ["inspect", str(zoo["softmax"])])
    assert out.exit_code == 0, out.output
    assert "probabilities" in out.stdout and "softmax already applied" in out.stdout
    out = CliRunner().invoke(app, ["inspect", str(zoo["background"])])
    assert "1001 classes" in out.stdout and "index 0 = background" in out.stdout
    out = CliRunner().invoke(app, ["inspect", str(zoo["batch1"])])
    assert "batch fixed 1" in out.stdout
    out = CliRunner().invoke(app, ["inspect", str(zoo["uint8"])])
    assert "layout NHWC" in out.stdout and "uint8" in out.stdout


# -- the same function behind every convention -------------------------------------------------

def _tolerances(variant):
    # float16 input rounds each pixel to 11 significant bits
    return (2e-3, 5e-3) if variant == "float16" else (1e-5, 1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_scores_equal_plain(models, variant):
    # multiples of 1/255, so that the uint8 model sees exactly the same pixels
    images = ob.random_images(6, levels=255, seed=3)
    if variant == "float16":
        images = ob.random_images(6, seed=3)
    p_tol, z_tol = _tolerances(variant)
    m = models[variant]
    s = m.scores(images)
    assert s.logits.dtype == np.float64 and s.probs.dtype == np.float64
    if variant == "background":
        plain = models["plain1000"].scores(images)
        ref = ob.reference_logits(images, classes=1000)
        assert s.logits.shape == s.probs.shape == (6, 1001)
        np.testing.assert_allclose(s.logits[:, 0], ob.BACKGROUND_LOGIT, atol=1e-5)
        np.testing.assert_allclose(s.logits[:, 1:], plain.logits, atol=z_tol)
        np.testing.assert_allclose(s.logits[:, 1:], ref, atol=z_tol)
        fg = s.probs[:, 1:] / s.probs[:, 1:].sum(axis=1, keepdims=True)
        np.testing.assert_allclose(fg, plain.probs, atol=p_tol)
        np.testing.assert_allclose(s.probs.sum(axis=1), 1.0, atol=1e-9)
        return
    plain = models["plain"].scores(images)
    ref = ob.reference_logits(images)
    assert s.probs.shape == (6, ob.CLASSES)
    np.testing.assert_allclose(s.probs, plain.probs, atol=p_tol)
    np.testing.assert_allclose(s.probs.sum(axis=1), 1.0, atol=1e-9)
    if ob.VARIANTS[variant]["kind"] == "probabilities":
        # logits are the centred log-probabilities: the plain logits up to a per-row shift
        np.testing.assert_allclose(s.logits.mean(axis=1), 0.0, atol=1e-9)
        centred = ref - ref.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(s.logits, centred, atol=1e-4)
        np.testing.assert_allclose(s.logits, np.log(s.probs) - np.log(s.probs).mean(axis=1, keepdims=True),
                                   atol=1e-6)
    else:
        np.testing.assert_allclose(s.logits, plain.logits, atol=z_tol)
        np.testing.assert_allclose(s.logits, ref, atol=z_tol)
    # the images really give different, non-trivial scores (the comparison is not vacuous)
    assert np.ptp(ref, axis=1).min() > 1.0
    assert len(set(ref.argmax(axis=1))) > 1


def test_reference_is_sensitive_to_each_convention(models):
    """Scoring with the wrong convention changes the scores: the equality above means something."""
    from dataclasses import replace

    images = ob.random_images(4, levels=255, seed=5)
    ref = ob.reference_logits(images)
    for variant, wrong in [("imagenet", {"mean": (0.0,) * 3, "std": (1.0,) * 3}),
                           ("nhwc255", {"scale": 1.0}),
                           ("bgr", {"channel_order": "RGB"})]:
        m = models[variant]
        good = m.scores(images).logits
        saved = m.spec
        try:
            m.spec = replace(m.spec, **wrong)
            bad = m.scores(images).logits
        finally:
            m.spec = saved
        np.testing.assert_allclose(good, ref, atol=1e-4)
        assert np.abs(bad - ref).max() > 0.05, variant


def test_uint8_rounds_to_nearest_level(models):
    m = models["uint8"]
    images = ob.random_images(3, levels=255, seed=9)
    want = m.scores(images).logits
    for shift in (0.3, -0.3):  # still rounds to the same level (rounding, not truncation)
        nudged = np.clip(images + np.float32(shift / 255), 0, 1)
        np.testing.assert_allclose(m.scores(nudged).logits, want, atol=1e-6)
    np.testing.assert_allclose(want, ob.reference_logits(images), atol=1e-4)


def test_output_option_picks_another_output(zoo):
    m = OnnxClassifier(zoo["probs_logits"], output="probabilities")
    assert m.output.name == "probabilities" and m.output.kind == "probabilities"
    images = ob.random_images(2, levels=255)
    plain = OnnxClassifier(zoo["plain"]).scores(images)
    np.testing.assert_allclose(m.scores(images).probs, plain.probs, atol=1e-6)
    with pytest.raises(OptionError, match="no output named 'nope'"):
        OnnxClassifier(zoo["probs_logits"], output="nope")


# -- labels of a 1001-class model --------------------------------------------------------------

def test_background_labels_from_a_1000_name_list(zoo, tmp_path):
    names = [f"thing {i}" for i in range(1000)]
    lab = tmp_path / "names.txt"
    lab.write_text("\n".join(names) + "\n", encoding="utf-8")
    for given in (lab, names):
        m = OnnxClassifier(zoo["background"], labels=given)
        assert len(m.labels) == 1001
        assert m.labels[0] == "background"
        assert m.labels[1:] == names
        assert m.labels_source == "cli+background"
        assert m.class_index("thing 0") == 1
        assert m.class_index("thing 999") == 1000
        assert m.class_index("THING 7") == 8
        assert m.class_index("background") == 0
        assert m.class_index(8) == 8 and m.class_index("8") == 8
    # the name lines up with the score: the plain model's top class k is index k + 1 here
    images = ob.random_images(3, levels=255, seed=11)
    top_plain = OnnxClassifier(zoo["plain1000"], labels=names).scores(images).probs.argmax(axis=1)
    top_bg = m.scores(images).probs.argmax(axis=1)
    np.testing.assert_array_equal(top_bg, top_plain + 1)
    assert [m.labels[k] for k in top_bg] == [names[k] for k in top_plain]


def test_background_labels_default_to_imagenet(tmp_path):
    path = ob.build("background", tmp_path)
    m = OnnxClassifier(path)
    names = imagenet_labels()
    assert len(names) == 1000
    assert m.labels_source == "imagenet+background"
    assert m.labels[0] == "background" and m.labels[1:] == names
    assert m.class_index("tabby") == 282 and m.labels[282] == "tabby"
    assert m.class_index("espresso") == 968
    with pytest.raises(OptionError, match="out of range"):
        m.class_index(1001)


def test_background_labels_from_metadata(tmp_path):
    names = [f"m{i}" for i in range(1000)]
    m = OnnxClassifier(ob.build("background", tmp_path, labels=names))
    assert m.labels_source == "metadata+background"
    assert m.labels[:3] == ["background", "m0", "m1"]
    assert m.class_index("m41") == 42


def test_1000_class_model_labels_unshifted(zoo):
    m = OnnxClassifier(zoo["plain1000"])
    assert m.output.background is False
    assert m.labels_source == "imagenet"
    assert m.class_index("tabby") == 281


def test_wrong_number_of_labels_is_an_option_error(zoo):
    with pytest.raises(OptionError, match="3 names but the model has 10 classes"):
        OnnxClassifier(zoo["plain"], labels=["a", "b", "c"])


# -- where the preprocessing comes from --------------------------------------------------------

CLI_MEAN, SIDECAR_MEAN, META_MEAN = (0.1, 0.1, 0.1), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)
RESNET_MEAN = (0.485, 0.456, 0.406)


def _layered_model(folder, layers):
    """A model named like the resnet preset (or not) with the given layers describing ``mean``."""
    stem = "resnet_tiny" if "preset" in layers else "tiny"
    meta = {"mean": list(META_MEAN), "crop_pct": 0.5, "std": [0.5] * 3} if "metadata" in layers else None
    side = {"preprocess": {"mean": list(SIDECAR_MEAN), "std": [0.25] * 3}} if "sidecar" in layers else None
    return ob.build_plain(folder, stem, metadata=meta, sidecar=side)


@pytest.mark.parametrize("layers, mean_source, mean", [
    (("cli", "sidecar", "metadata", "preset"), "cli", CLI_MEAN),
    (("sidecar", "metadata", "preset"), "sidecar", SIDECAR_MEAN),
    (("metadata", "preset"), "metadata", META_MEAN),
    (("preset",), "preset:resnet", RESNET_MEAN),
    ((), "default", RESNET_MEAN),
])
def test_spec_source_precedence(tmp_path, layers, mean_source, mean):
    path = _layered_model(tmp_path, layers)
    cli = {"mean": list(CLI_MEAN), "scale": None} if "cli" in layers else None
    m = OnnxClassifier(path, preprocess_overrides=cli)
    assert m.spec_sources["mean"] == mean_source
    assert m.spec.mean == pytest.approx(mean)
    assert m.spec_sources["size"] == "graph" and m.spec_sources["layout"] == "graph"
    assert m.spec_sources["interpolation"] == "default"


def test_spec_sources_field_by_field(tmp_path):
    path = _layered_model(tmp_path, ("cli", "sidecar", "metadata", "preset"))
    m = OnnxClassifier(path, preprocess_overrides={"mean": list(CLI_MEAN), "channel_order": "bgr", "std": None})
    src = m.spec_sources
    assert src["mean"] == "cli" and m.spec.mean == pytest.approx(CLI_MEAN)
    assert src["channel_order"] == "cli" and m.spec.channel_order == "BGR"
    assert src["std"] == "sidecar" and m.spec.std == pytest.approx((0.25,) * 3)  # None means "not given"
    assert src["crop_pct"] == "metadata" and m.spec.crop_pct == pytest.approx(0.5)
    assert src["scale"] == "preset:resnet" and m.spec.scale == 1.0
    assert src["interpolation"] == "default" and m.spec.interpolation == "bilinear"
    assert m.describe()["preprocess_sources"] == src


def test_preset_option_overrides_file_name(tmp_path):
    path = ob.build_plain(tmp_path, "resnet_tiny", metadata=None)
    m = OnnxClassifier(path, preset="inception")
    assert m.spec_sources["mean"] == "preset:inception"
    assert m.spec.mean == pytest.approx((0.5, 0.5, 0.5))


def test_graph_fixes_size_and_cli_cannot_contradict_it(tmp_path):
    path = ob.build_plain(tmp_path, "tiny", metadata={"size": [224, 224]})
    m = OnnxClassifier(path)
    assert m.spec.size == (ob.SIZE, ob.SIZE) and m.spec_sources["size"] == "graph"
    with pytest.raises(OptionError, match="contradicts the model"):
        OnnxClassifier(path, preprocess_overrides={"size": 32})
    with pytest.raises(OptionError, match="contradicts the model"):
        OnnxClassifier(path, preprocess_overrides={"layout": "NHWC"})


def test_symbolic_size_follows_precedence(tmp_path):
    path = ob.build_symbolic_size(tmp_path, metadata={"size": [40, 40]}, sidecar={"preprocess": {"size": 24}})
    assert OnnxClassifier(path).input_size == (24, 24)
    assert OnnxClassifier(path).spec_sources["size"] == "sidecar"
    m = OnnxClassifier(path, preprocess_overrides={"size": 12})
    assert m.input_size == (12, 12) and m.spec_sources["size"] == "cli"
    assert m.scores(np.full((2, 12, 12, 3), 0.5, np.float32)).probs.shape == (2, ob.CLASSES)
    path.with_name("anysize.bbx.json").unlink()
    m = OnnxClassifier(path)
    assert m.input_size == (40, 40) and m.spec_sources["size"] == "metadata"


def test_inspect_prints_sources(tmp_path):
    path = _layered_model(tmp_path, ("sidecar", "metadata", "preset"))
    out = subprocess.run(["bbx", "inspect", str(path), "--mean", "0.1,0.1,0.1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.startswith("  ")}
    assert lines["mean"].rstrip().endswith("from cli") and "0.1" in lines["mean"]
    assert lines["std"].rstrip().endswith("from sidecar")
    assert lines["crop_pct"].rstrip().endswith("from metadata")
    assert lines["scale"].rstrip().endswith("from preset:resnet")
    assert lines["interpolation"].rstrip().endswith("from default")
    assert lines["size"].rstrip().endswith("from graph")


# -- prepare: resize and centre crop ---------------------------------------------------------

def _coords_photo(h, w):
    """A photo whose red channel is the column and green the row (so crops can be located)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy, np.full_like(xx, 77)], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crop")
    return ob.build_plain(folder, "crop", metadata=ob.spec(crop_pct=1.0, interpolation="nearest"))


def test_prepare_without_resize_is_an_exact_centre_crop(crop_model):
    m = OnnxClassifier(crop_model)
    wide = _coords_photo(16, 40)  # already 16 high: no resize at crop_pct 1
    out = m.prepare(wide)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), wide[:, 12:28])
    tall = _coords_photo(41, 16)
    out = m.prepare(tall)
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), tall[12:28, :])


def test_prepare_resizes_the_short_side_then_crops_the_centre(tmp_path):
    path = ob.build_plain(tmp_path, "crop875", metadata=ob.spec(crop_pct=0.5, interpolation="bilinear"))
    m = OnnxClassifier(path)
    photo = _coords_photo(48, 200)  # short side 48 -> 32 (= 16 / 0.5), long side 200 -> 133
    out = m.prepare(photo)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    cols = out[..., 0] * 255  # the original column of each pixel, about
    rows = out[..., 1] * 255
    # the crop is the central half of the resized photo, in both directions
    assert cols.mean() == pytest.approx(99.5, abs=2.0)
    assert rows.mean() == pytest.approx(23.5, abs=1.5)
    # 16 output pixels span 16 resized pixels = 24 original rows (scale 2/3)
    assert rows[-1].mean() - rows[0].mean() == pytest.approx(15 * 1.5, abs=1.5)
    assert np.allclose(out[..., 2], 77 / 255, atol=1e-6)


def test_prepare_upscales_a_small_photo(crop_model):
    m = OnnxClassifier(crop_model)
    out = m.prepare(_coords_photo(4, 8))
    assert out.shape == (16, 16, 3)
    assert set(np.unique(np.rint(out[..., 0] * 255))) <= {2, 3, 4, 5}  # the central columns, enlarged
    scores = m.predict(_coords_photo(30, 50))
    assert scores.probs.shape == (1, ob.CLASSES)
    assert m.queries == 1


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalise_maps_each_channel_in_either_layout(order):
    """Channels first, the map runs in place per plane after the copy: the same float32 numbers as
    the plain per-pixel formula, in the model's channel order."""
    from dataclasses import replace

    from bbx.preprocess import PreprocessSpec, affine, normalise

    spec = replace(PreprocessSpec(), channel_order=order, scale=255.0, mean=(120.0, 110.0, 100.0), std=(50.0, 60.0, 70.0))
    x = np.random.default_rng(3).uniform(0, 1, (2, 5, 7, 3)).astype(np.float32)
    gain, shift = affine(spec)
    ordered = x[..., ::-1] if order == "BGR" else x
    plain = ordered * gain + shift
    last = normalise(x, spec, channels_first=False)
    first = normalise(x, spec, channels_first=True)
    assert first.shape == (2, 3, 5, 7) and first.flags.c_contiguous and first.dtype == np.float32
    np.testing.assert_array_equal(last, plain)
    np.testing.assert_array_equal(first, plain.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(normalise(x, spec, channels_first=True, offset=False), (ordered * gain).transpose(0, 3, 1, 2))
    assert not np.array_equal(first[:, 0], first[:, 2])  # the channels differ: a swapped order would show
