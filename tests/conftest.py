"""Shared test settings.

``BBX_TEST_DEVICE=cuda`` runs the query-path tests (fused paths against the reference) on the GPU;
``tools/gpu_session.sh`` does so on the device machine. The default, ``cpu``, is what CI runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import bbx


@pytest.fixture(scope="session")
def classifier_on_test_device():
    """``make(path, **kw)``: an OnnxClassifier on BBX_TEST_DEVICE, refusing to fall back silently."""
    device = os.environ.get("BBX_TEST_DEVICE", "cpu")

    def make(path: str | Path, **kwargs) -> bbx.OnnxClassifier:
        model = bbx.OnnxClassifier(path, device=device, **kwargs)
        assert model.device == device, f"asked for {device}, running on {model.device}"
        return model

    return make


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory):
    """A real MLServer on 127.0.0.1 (free port) serving tiny ONNX classifiers and the bundled model
    through tests/mlserver_onnx.py; stopped after the session (tests/remote_support.py)."""
    pytest.importorskip("mlserver", reason="the remote extra (pip install -e '.[test,remote]') is not installed")
    import onnx_builders as ob
    from remote_support import MLServer, Served

    folder = tmp_path_factory.mktemp("mlserver")
    labels = [f"class{i}" for i in range(ob.CLASSES)]
    # the local model reads its conventions from the sidecar beside it; the endpoints get them from
    # their metadata (tiny) or from the same file given with --sidecar (tiny_topk, tiny_label)
    tiny = ob.build_plain(folder / "onnx", "tiny", metadata=None, sidecar={"preprocess": ob.spec(), "labels": labels})
    bundled = Path(__file__).resolve().parent.parent / "models" / "efficientnet_lite0.onnx"
    preprocess = {"bbx.preprocess": json.dumps(ob.spec())}
    models = {
        "tiny": Served(tiny, parameters=preprocess),
        "tiny_named": Served(tiny, parameters={**preprocess, "bbx.labels": json.dumps(labels)}),
        "tiny_topk": Served(tiny, reveal="topk", k=3),
        "tiny_label": Served(tiny, reveal="label"),
        "efficientnet_lite0": Served(bundled),
    }
    with MLServer(folder, models) as server:
        server.tiny_onnx = tiny
        server.tiny_sidecar = tiny.with_name("tiny.bbx.json")
        yield server


#: files whose tests start servers (MLServer), browsers (chromium), clusters (Ray) or a corpus of
#: subprocesses: the whole suite runs them on the default Python, the other Pythons skip them
#: (tools/test_pythons.sh: ``-m "not slow"``), as they skip the tests marked slow one by one
#: (whole explanations of the bundled model)
SLOW_FILES = {"test_hardening.py", "test_remote.py", "test_remote_faults.py", "test_remote_grpc.py", "test_remote_binary.py",
              "test_ray.py", "test_audit.py", "test_compare.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
