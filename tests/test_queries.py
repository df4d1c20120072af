"""Query counting: every image the model is asked to score counts once, nothing else counts."""

from __future__ import annotations

import numpy as np
import pytest

import onnx_builders as ob
from bbx.errors import OptionError
from bbx.model import OnnxClassifier


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("queries")
    return {v: ob.build(v, folder) for v in ("plain", "batch1", "batch4")}


class RunSpy:
    """Wraps ``session.run`` to record the batch size of every call that reaches onnxruntime."""

    def __init__(self, model: OnnxClassifier):
        self.batches: list[int] = []
        real = model.session.run
        name = model.input.name

        def run(names, feed, *args, **kwargs):
            self.batches.append(len(feed[name]))
            return real(names, feed, *args, **kwargs)

        model.session.run = run


SIZES = (1, 5, 70)


@pytest.mark.parametrize("variant", ["plain", "batch1", "batch4"])
def test_detection_pass_is_not_counted(paths, variant):
    m = OnnxClassifier(paths[variant])
    assert m.queries == 0


def test_dynamic_batch_counts_images_and_splits_evenly_at_max_batch(paths):
    m = OnnxClassifier(paths["plain"])
    assert m.max_batch == 64
    spy = RunSpy(m)
    total = 0
    for i, n in enumerate(SIZES):
        s = m.scores(ob.random_images(n, seed=i))
        assert s.probs.shape == (n, ob.CLASSES)
        total += n
        assert m.queries == total
    assert m.queries == 76
    assert spy.batches == [1, 5, 35, 35]  # 70 > 64: two calls of one shape, not 64 + 6


def test_split_batches_give_the_same_scores(paths):
    images = ob.random_images(70, seed=2)
    big = OnnxClassifier(paths["plain"], max_batch=100)
    small = OnnxClassifier(paths["plain"], max_batch=3)
    spy = RunSpy(small)
    np.testing.assert_allclose(small.scores(images).logits, big.scores(images).logits, atol=1e-5)
    np.testing.assert_allclose(small.scores(images).logits, ob.reference_logits(images), atol=1e-4)
    assert spy.batches == [3] * 24 * 2  # 23 x 3 + 1 padded to 3: every call has one shape
    assert small.queries == big.queries + 70 == 140


def test_fixed_batch_1_counts_images_not_runs(paths):
    m = OnnxClassifier(paths["batch1"])
    assert m.queries == 0 and m.max_batch == 1
    spy = RunSpy(m)
    images = [ob.random_images(n, seed=i) for i, n in enumerate(SIZES)]
    for imgs in images:
        m.scores(imgs)
    assert m.queries == 76
    assert spy.batches == [1] * 76
    ref = OnnxClassifier(paths["plain"])
    np.testing.assert_allclose(m.scores(images[1]).logits, ref.scores(images[1]).logits, atol=1e-5)
    assert m.queries == 81


def test_fixed_batch_4_padding_is_not_counted(paths):
    m = OnnxClassifier(paths["batch4"])
    assert m.queries == 0 and m.max_batch == 4
    spy = RunSpy(m)
    images = ob.random_images(5, seed=4)
    s = m.scores(images)
    assert m.queries == 5
    assert spy.batches == [4, 4]  # 4, then 1 padded to 4
    assert s.logits.shape == (5, ob.CLASSES)
    np.testing.assert_allclose(s.logits, ob.reference_logits(images), atol=1e-4)
    m.scores(images[:1])
    assert m.queries == 6
    m.scores(ob.random_images(70, seed=5))
    assert m.queries == 76
    assert len(spy.batches) == 2 + 1 + 18


def test_single_image_and_predict_count_one(paths):
    m = OnnxClassifier(paths["plain"])
    m.scores(ob.random_images(1)[0])  # (H, W, 3): one image
    assert m.queries == 1
    m.predict(np.zeros((30, 20, 3), np.uint8))
    assert m.queries == 2


def test_rejected_batch_is_not_counted(paths):
    m = OnnxClassifier(paths["plain"])
    with pytest.raises(OptionError, match="do not match"):
        m.scores(np.zeros((3, 8, 8, 3), np.float32))
    assert m.queries == 0


def test_max_batch_must_be_positive(paths):
    with pytest.raises(OptionError):
        OnnxClassifier(paths["plain"], max_batch=0)


def test_empty_batch_counts_nothing_and_fails_cleanly(paths):
    from bbx.errors import BbxError

    m = OnnxClassifier(paths["plain"])
    try:
        s = m.scores(np.zeros((0, ob.SIZE, ob.SIZE, 3), np.float32))
    except BbxError:
        pass
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(
            "BUG bbx/model.py OnnxClassifier._raw_scores: an empty batch (N = 0) crashes with "
            f"{type(exc).__name__}: {exc} (np.concatenate of no parts); return empty (0, C) scores "
            "(or raise OptionError) when len(images) == 0") from None
    else:
        assert s.logits.shape == s.probs.shape == (0, ob.CLASSES)
    assert m.queries == 0
