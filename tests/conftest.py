"""Shared test settings.

``BBX_TEST_DEVICE=cuda`` runs the query-path tests (fused paths against the reference) on the GPU;
``tools/gpu_session.sh`` does so on the device machine. The default, ``cpu``, is what CI runs.
"""

from __future__ import annotations

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
