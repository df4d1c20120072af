"""No silent guess and no empty result shown as one: default notes, numeric labels, notes on
explanations that found nothing, readable φ, provenance in report.json, predict --json, --overwrite,
the progress callback and the ``bbx`` logger."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import bbx
import onnx_builders as ob
from bbx.errors import OptionError
from bbx.result.findings import notes, phi_text
from bbx.model import OnnxClassifier


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bbx", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


# -- numeric labels -------------------------------------------------------------------------------

def _two_class(tmp_path, labels):
    return ob.build_plain(tmp_path, "orient", classes=2, labels=labels)


def test_target_180_is_the_label_not_an_index(tmp_path, photo):
    """A text-direction classifier with labels "0" and "180": --target 180 is the second class."""
    path = _two_class(tmp_path, ["0", "180"])
    m = OnnxClassifier(path)
    assert m.class_index("180") == 1 and m.class_index("0") == 0 and m.class_index(1) == 1
    proc = _run("explain", str(path), str(photo), "--target", "180", "--method", "ftc", "--iterations", "1", "--pairs", "1",
                "--estimator", "nes", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text())["target_name"] == "180"
    with pytest.raises(OptionError, match="no class is named that"):
        m.class_index("90")


def test_a_number_that_names_one_class_and_indexes_another_is_refused(tmp_path):
    m = OnnxClassifier(_two_class(tmp_path, ["1", "0"]))
    with pytest.raises(OptionError, match="ambiguous: class 0 is named '1' and class 1"):
        m.class_index("1")
    assert m.class_index("name:1") == 0 and m.class_index("index:1") == 1


# -- no silent default -----------------------------------------------------------------------------

def test_predict_says_when_the_values_are_defaults(tmp_path, photo):
    bare = ob.build_plain(tmp_path, "bare", metadata=None)
    said = _run("predict", str(bare), str(photo))
    assert said.returncode == 0 and said.stderr.count("\n") == 1
    assert said.stderr.startswith("bbx: note: scale, mean, std, channel order are bbx's defaults")
    told = _run("predict", str(ob.build_plain(tmp_path, "told")), str(photo))
    assert told.returncode == 0 and told.stderr == ""


def test_predict_json(tmp_path, photo):
    path = ob.build_plain(tmp_path, "m")
    proc = _run("predict", str(path), str(photo), str(photo), "--top", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    m = OnnxClassifier(path)
    from bbx.preprocess.image import load_rgb

    p = m.predict(load_rgb(photo)).probs[0]
    assert len(d["predictions"]) == 2 and [t["class"] for t in d["predictions"][0]["top"]] == list(p.argsort()[::-1][:3])
    assert d["predictions"][0]["top"][0]["probability"] == pytest.approx(p.max())
    assert d["preprocess_sources"]["scale"] == "metadata" and d["defaults_used"] == []


# -- what an explanation did not find -----------------------------------------------------------------

def test_notes_are_pure_and_name_each_failure():
    keep = np.ones((4, 4))
    moved = keep.copy()
    moved[0, 0] = 0.2
    assert notes(moved, 0.3, 0.5, False) == []
    assert notes(keep, 0.3, 0.3, None)[0].startswith("found nothing: the mask never left 1")
    assert notes(moved, 0.0003, 0.0002, False)[0].startswith("made the target worse: its probability went down, "
                                                             "0.0003 -> 0.0002")
    assert notes(keep, 0.3, 0.3, True)[0].startswith("constant model")


def test_phi_is_readable_or_shows_the_raw_probabilities():
    assert phi_text(0.3, 0.65) == "50.0"
    text = phi_text(0.9999996, 0.6)
    assert text.startswith("not meaningful (top-1 p 0.9999996 -> 0.6; 1 - p was 4.0e-07")
    assert "e+" in text  # the huge value is shown as such, not as a result


def test_constant_model_is_said(tmp_path, photo):
    e = bbx.explain(ob.build_constant(tmp_path), photo, method="ftc", iterations=2, pairs=1, estimator="nes")
    assert e.notes and e.notes[0].startswith("constant model") and e.summary()["notes"] == e.notes
    e = bbx.explain(ob.build_constant(tmp_path), photo)  # the default method, a search, says it too
    assert e.config["method"] == "rise_lead" and e.notes and e.notes[0].startswith("constant model")


def test_explain_reports_provenance_and_refuses_to_overwrite(tmp_path, photo):
    path = ob.build_plain(tmp_path, "m")
    out = tmp_path / "out"
    args = ("explain", str(path), str(photo), "--out", str(out))  # the default method, rise_lead
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    r = json.loads((out / "report.json").read_text())
    import hashlib

    import numpy
    import onnxruntime

    assert r["schema_version"] == 2 and r["command"].startswith("bbx explain ") and str(photo) in r["command"]
    assert r["model_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert r["versions"]["onnxruntime"] == onnxruntime.__version__ and r["versions"]["numpy"] == numpy.__version__
    assert r["preprocess"]["resize_mode"] == "crop" and r["preprocess_sources"]["mean"] == "metadata"
    assert r["created"].endswith("+00:00") and r["photo_size"] == [20, 24]
    assert r["config"]["method"] == "rise_lead" and r["queries"] <= 2000 and r["convergence"] == {}
    before = (out / "report.json").read_bytes()
    again = _run(*args)
    assert again.returncode == 2 and "already holds bbx outputs" in again.stderr and "--overwrite" in again.stderr
    assert (out / "report.json").read_bytes() == before
    forced = _run(*args, "--overwrite")
    assert forced.returncode == 0, forced.stderr


def test_progress_callback_and_logger(tmp_path, photo, caplog):
    steps = []
    with caplog.at_level(logging.DEBUG, logger="bbx"):
        e = bbx.explain(ob.build_plain(tmp_path), photo, method="ftc", iterations=3, pairs=1, estimator="nes",
                        progress=lambda step, total, loss: steps.append((step, total)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name == "bbx"]
    assert len(debug) == 3 and "step 3/3" in debug[-1].getMessage()
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == [f"ftc on {photo}: target {e.target_name} {e.prob_before:.4f} -> {e.prob_after:.4f}, "
                    f"{e.queries} queries in {e.seconds:.1f} s"]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux's script for a terminal")
def test_progress_bar_on_a_terminal_shows_elapsed_and_time_left(tmp_path, photo):
    """On a terminal (util-linux ``script`` gives one), the bar reads steps, elapsed time and time left."""
    import re
    import shlex

    cmd = shlex.join(["bbx", "explain", str(ob.build_plain(tmp_path)), str(photo), "--method", "ftc", "--iterations", "3",
                      "--pairs", "1", "--estimator", "nes", "--out", str(tmp_path / "out")])
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", proc.stdout.replace("\r", "\n"))
    assert re.search(r"ftc photo\.png .* 3/3 elapsed \d:\d\d:\d\d left \d:\d\d:\d\d J [+-]\d\.\d{4}", screen), screen
