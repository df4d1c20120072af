"""The black-box protocol is the contract: every implementation offers every member, statically.

Python 3.12 checks a runtime protocol with ``inspect.getattr_static``, so a wrapper that forwards
with ``__getattr__`` passes ``isinstance`` on 3.11 and fails on 3.12. These tests read each
implementation as 3.12 does, on every Python: a member is a class attribute, a property or
method somewhere in the class's MRO, or assigned to ``self`` in an ``__init__`` of that MRO.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np
import pytest

import onnx_builders
from bbx.evaluation.lockstep import Tally
from bbx.model import BlackBox, Classifier, OnnxBackend, OnnxClassifier, Scores, open_model
from bbx.remote import EndpointClassifier


class Double(Classifier):
    """A test double: a fixed linear model of three classes over the image's channel means."""

    def __init__(self, template: OnnxClassifier):
        self.name, self.device, self.max_batch = "double", "cpu", 8
        self.input, self.spec, self.spec_sources = template.input, template.spec, template.spec_sources
        self.output = template.output
        self.labels, self.labels_source = template.labels, "test"
        self.queries = 0

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        return np.resize(x.reshape(len(x), -1).mean(axis=1, keepdims=True), (len(x), self.num_classes))

    def identity(self) -> dict:
        return {"model": "double"}


def members(protocol: type) -> set[str]:
    """Everything a protocol lists: its annotated attributes, properties and methods."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items()
              if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return names


def offered(cls: type) -> set[str]:
    """What ``cls`` offers without running anything: class-level names along its MRO and every
    ``self.X = ...`` (tuple targets included) in an ``__init__`` of that MRO."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        names |= set(vars(klass)) | set(getattr(klass, "__annotations__", {}))
        init = vars(klass).get("__init__")
        if init is None:
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return names


IMPLEMENTATIONS = [OnnxClassifier, EndpointClassifier, Tally, Double]


@pytest.mark.parametrize("cls", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_every_implementation_offers_every_member_of_the_protocol(cls):
    missing = members(BlackBox) - offered(cls)
    assert not missing, f"{cls.__name__} lacks {sorted(missing)}"


@pytest.mark.parametrize("cls", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_methods_take_the_protocols_parameters(cls):
    for name in sorted(members(BlackBox)):
        declared = inspect.getattr_static(BlackBox, name, None)
        given = inspect.getattr_static(cls, name, None)
        if not inspect.isfunction(declared) or not inspect.isfunction(given):
            continue
        want = list(inspect.signature(declared).parameters)
        have = list(inspect.signature(given).parameters)
        assert have[: len(want)] == want, f"{cls.__name__}.{name}{have} differs from the protocol's {want}"


def test_the_onnx_classifier_offers_every_member_of_its_backend_protocol():
    missing = members(OnnxBackend) - offered(OnnxClassifier)
    assert not missing, f"OnnxClassifier lacks {sorted(missing)}"


def test_the_check_reads_what_it_claims():
    """A class that forwards through ``__getattr__`` offers nothing statically: the check fails it."""

    class Forwarder:
        def __init__(self, model):
            self.shared = model

        def __getattr__(self, name):
            return getattr(self.shared, name)

    assert members(BlackBox) - offered(Forwarder) >= {"scores", "score_tensor", "input", "queries"}


def test_runtime_isinstance_holds_for_every_implementation_built_here(tmp_path):
    model = OnnxClassifier(onnx_builders.build_plain(tmp_path))
    for box in (model, Tally(model), Double(model)):
        assert isinstance(box, BlackBox), type(box).__name__
        assert open_model(box) is box


def test_a_tally_counts_its_own_queries_and_offers_no_graph(tmp_path):
    model = OnnxClassifier(onnx_builders.build_plain(tmp_path))
    tally = Tally(model)
    images = onnx_builders.random_images(3)
    direct = model.scores(images).raw
    assert isinstance(tally.scores(images), Scores)
    np.testing.assert_array_equal(tally.scores(images).raw, direct)
    assert tally.queries == 6 and model.queries == 9
    assert tally.onnx() is None and model.onnx() is model
    assert tally.traffic is None and tally.reveals == "scores" and tally.revealed == model.num_classes


def test_open_model_opens_a_file_and_refuses_options_for_an_open_model(tmp_path):
    path = onnx_builders.build_plain(tmp_path)
    model = open_model(path, max_batch=4)
    assert model.max_batch == 4 and model.name == str(path)
    with pytest.raises(TypeError, match="open already"):
        open_model(model, max_batch=4)
