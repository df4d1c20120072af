"""Asking for CUDA where it cannot run: bbx runs on the CPU and says why in one line, with the fix.

CI has the CPU onnxruntime only, so the CUDA provider is absent here. The two diagnoses that need
onnxruntime-gpu (the CPU package shadowing it; a CUDA library missing) are checked through the
functions that make them, with the package metadata and the loader's error put in place.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import onnx_builders as ob
from bbx.model import providers as bm
from bbx.errors import OptionError
from bbx.model import OnnxClassifier

def test_cli_cuda_runs_or_warns_once_and_still_explains(tmp_path):
    """On a CPU build, or a GPU build that cannot start CUDA, one warning line; the run completes."""
    path = ob.build_plain(tmp_path)
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "x.png")
    proc = subprocess.run(["bbx", "explain", str(path), str(tmp_path / "x.png"), "--device", "cuda",
                           "--cuda-option", "prefer_nhwc=1",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "report.json").is_file()
    on_cpu = json.loads((tmp_path / "out" / "report.json").read_text())["device"] == "cpu"
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("bbx: note: ")]  # a flat photo: nothing found
    if not on_cpu:
        assert lines == [], proc.stderr
        return
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bbx: warning: "), lines[0]
    assert lines[0].endswith("running on the CPU"), lines[0]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "CUDA was asked for but onnxruntime has no CUDAExecutionProvider" in lines[0]
    else:
        assert "the CUDA provider could not start (" in lines[0]


def test_library_cuda_runs_or_warns(tmp_path):
    path = ob.build_plain(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = OnnxClassifier(path, device="cuda")
    if m.device == "cuda":
        assert not caught
    else:
        assert [type(w.message) for w in caught] == [RuntimeWarning], [str(w.message) for w in caught]
        assert str(caught[0].message).endswith("running on the CPU")
        assert m.providers == ["CPUExecutionProvider"]


def test_cuda_options_go_over_bbx_own():
    name, options = bm.provider_list("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                  {"prefer_nhwc": 1, "use_tf32": "0"})[0]
    assert name == "CUDAExecutionProvider"
    assert options["prefer_nhwc"] == "1" and options["use_tf32"] == "0"  # as strings, the user's over bbx's
    assert options["cudnn_conv_algo_search"] == "EXHAUSTIVE"  # bbx's own, kept


def test_cuda_options_on_the_cpu_say_they_do_nothing(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"CUDA options \(prefer_nhwc=1\) do nothing on the CPU"):
        assert OnnxClassifier(ob.build_plain(tmp_path), cuda_options={"prefer_nhwc": "1"}).device == "cpu"


def _cuda_that_refuses_options(monkeypatch) -> None:
    """onnxruntime-gpu refusing any CUDA option, as an older build refuses one it does not know."""
    monkeypatch.setattr(bm, "provider_list", lambda device, available, options=None: [
        ("CUDAExecutionProvider", {"use_tf32": "1", **(options or {})}), "CPUExecutionProvider"])
    real = ort.InferenceSession

    def session(path, sess_options=None, providers=None):
        if isinstance(providers[0], tuple):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : unknown provider option")
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", session)


def test_refused_user_cuda_options_are_one_clear_error(tmp_path, monkeypatch):
    _cuda_that_refuses_options(monkeypatch)
    with pytest.raises(OptionError, match="refused the options prefer_nhwc=1: .*unknown provider option"):
        OnnxClassifier(ob.build_plain(tmp_path), device="cuda", cuda_options={"prefer_nhwc": "1"})


def test_refused_bbx_cuda_options_fall_back_to_the_providers_defaults(tmp_path, monkeypatch):
    _cuda_that_refuses_options(monkeypatch)
    model = OnnxClassifier(ob.build_plain(tmp_path), device="cuda")
    assert model.runtime.provider_config == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # names, no options


def test_bbx_sessions_beside_the_model_open_with_its_providers_and_options(tmp_path, monkeypatch):
    """The front, back and composed graphs run as the model's session does (on CUDA: TF32, cuDNN's
    search, prefer_nhwc, device_id), not on the providers' defaults."""
    from bbx.maths.perturb import Perturber
    from bbx.query.masks import MaskQuery

    config = [("CPUExecutionProvider", {"bbx_test_marker": "1"})]
    monkeypatch.setattr(bm, "provider_list", lambda *args, **kwargs: list(config))
    seen, real = [], ort.InferenceSession

    def session(*args, providers=None, **kwargs):
        seen.append(providers)
        return real(*args, providers=providers, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    model = OnnxClassifier(ob.build_plain(tmp_path))
    pert = Perturber(np.ones((ob.SIZE, ob.SIZE, 3), np.float32))
    for path in ("device", "fused"):
        MaskQuery(model, pert, path, target=0)
    assert len(seen) == 4 and all(p == config for p in seen), seen  # model, front, back, composed


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="auto may then start CUDA or fall back quietly")
def test_auto_on_a_cpu_build_is_quiet(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert OnnxClassifier(ob.build_plain(tmp_path), device="auto").device == "cpu"


def test_without_onnxruntime_gpu_the_fix_is_the_extra(monkeypatch):
    def version(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", version)
    assert bm.no_cuda_provider() == "onnxruntime has no CUDAExecutionProvider here (install bbx[gpu])"


def test_hint_when_the_cpu_package_shadows_onnxruntime_gpu_names_the_fix(monkeypatch):
    # pip install bbx[gpu] installs both packages; they share the `onnxruntime` module
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "1.31.1" if name == "onnxruntime-gpu" else real(name))
    hint = bm.no_cuda_provider()
    assert "onnxruntime-gpu 1.31.1 is installed" in hint
    assert "pip install --force-reinstall --no-deps onnxruntime-gpu==1.31.1" in hint


def _fake_ort(monkeypatch, tmp_path: Path, with_library: bool) -> None:
    (tmp_path / "capi").mkdir()
    if with_library:
        (tmp_path / "capi" / "libonnxruntime_providers_cuda.so").write_bytes(b"\x7fELF")
    monkeypatch.setattr(ort, "__file__", str(tmp_path / "__init__.py"))


def test_failure_reason_names_the_missing_cuda_library(monkeypatch, tmp_path):
    _fake_ort(monkeypatch, tmp_path, with_library=True)

    def cdll(path):  # what the loader says when cuBLAS is not on the library path
        raise OSError("libcublasLt.so.13: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    reason = bm.cuda_failure_reason()
    assert reason.startswith("libcublasLt.so.13 not found: install the CUDA and cuDNN"), reason


def test_failure_reason_when_libraries_load_is_the_gpu_or_driver(monkeypatch, tmp_path):
    _fake_ort(monkeypatch, tmp_path, with_library=True)
    monkeypatch.setattr(ctypes, "CDLL", lambda path: object())
    assert bm.cuda_failure_reason() == "no usable NVIDIA GPU or driver"


def test_failure_reason_of_a_build_without_the_cuda_provider(monkeypatch, tmp_path):
    _fake_ort(monkeypatch, tmp_path, with_library=False)
    assert bm.cuda_failure_reason() == "its library is not in this onnxruntime build"


def test_failure_reason_reports_other_loader_errors_as_they_are(monkeypatch, tmp_path):
    _fake_ort(monkeypatch, tmp_path, with_library=True)  # four bytes: not a loadable library
    reason = bm.cuda_failure_reason()
    assert reason.startswith("its library does not load: "), reason
    assert "libonnxruntime_providers_cuda.so" in reason, reason


def test_devices_says_whether_cuda_starts_and_why_not():
    proc = subprocess.run(["bbx", "devices", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    d = json.loads(proc.stdout)
    assert d["onnxruntime"] == ort.__version__ and d["providers"] == ort.get_available_providers()
    if "CUDAExecutionProvider" not in d["providers"]:
        assert d["cuda"].startswith("onnxruntime has no CUDAExecutionProvider here ("), d["cuda"]
    else:
        assert d["cuda"] == "ready" or d["cuda"].startswith("the CUDA provider could not start ("), d["cuda"]
    text = subprocess.run(["bbx", "devices"], capture_output=True, text=True, timeout=120).stdout
    assert text.splitlines()[1] == f"providers   {', '.join(d['providers'])}"


def test_cuda_status_of_a_listed_provider_that_does_not_start(monkeypatch):
    """A CUDA provider that is listed but not there (a CPU build told otherwise) is found out by the probe."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    status = bm.cuda_status()
    assert status == "the CUDA provider could not start (its library is not in this onnxruntime build)", status
