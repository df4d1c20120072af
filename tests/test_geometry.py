"""Where each photo pixel lands in the model's input, and the way back: known answers worked by hand.

A model input of 12 x 20 (H x W) and two photos, one wide (30 x 70) and one tall (50 x 20), under the
four resize modes. Every number below is worked out in its comment from the mode's definition (the
centre crop of timm/torchvision with crop_pct 0.8, stretch, ultralytics' letterbox, pad right), not
read from bbx.preprocess.geometry: a test that takes its expectation from the code it checks passes
whatever the code does (issue 36: a wrong crop x-scale passed all eight inverse-map cases).

An axis maps a photo coordinate x (pixel edges at integers) to the model's u = x * scale + offset,
and the photo's content covers [start, stop) of the model's axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from bbx import preprocess as pp
from bbx.preprocess.resize import MAX_RESIZED_PIXELS

SIZE = (12, 20)
PHOTOS = [(30, 70), (50, 20)]

#: (mode, photo) -> resized (h, w), y axis (scale, offset, start, stop), x axis (scale, offset, start, stop)
LANDED = {
    # crop: the short side to 12 / 0.8 = 15 (scale max(12/0.8/30, 20/0.8/70) = 0.5) -> 15 x 35, then
    # the centre 12 x 20: top (15 - 12) // 2 = 1, left (35 - 20) // 2 = 7
    ("crop", (30, 70)): ((15, 35), (0.5, -1, 0, 12), (0.5, -7, 0, 20)),
    # crop: the short side (width 20) to 20 / 0.8 = 25, scale 1.25 -> 62.5 rows, rounded half to even
    # to 62; top (62 - 12) // 2 = 25, left (25 - 20) // 2 = 2; y scale 62 / 50
    ("crop", (50, 20)): ((62, 25), (62 / 50, -25, 0, 12), (1.25, -2, 0, 20)),
    # stretch: each axis to the model's, whatever the aspect
    ("stretch", (30, 70)): ((12, 20), (12 / 30, 0, 0, 12), (20 / 70, 0, 0, 20)),
    ("stretch", (50, 20)): ((12, 20), (12 / 50, 0, 0, 12), (1.0, 0, 0, 20)),
    # letterbox: the whole photo inside, ratio min(12/30, 20/70) = 2/7 -> 8.57 rows, rounded to 9; 20
    # columns; the band centred: top (12 - 9) // 2 = 1, rows 1..9
    ("letterbox", (30, 70)): ((9, 20), (9 / 30, 1, 1, 10), (20 / 70, 0, 0, 20)),
    # letterbox: ratio min(12/50, 20/20) = 0.24 -> 12 rows, 4.8 columns rounded to 5, left (20 - 5) // 2 = 7
    ("letterbox", (50, 20)): ((12, 5), (12 / 50, 0, 0, 12), (5 / 20, 7, 7, 12)),
    # pad: the height to 12, the width in proportion (28, ceil) and at most 20; padding on the right
    ("pad", (30, 70)): ((12, 20), (12 / 30, 0, 0, 12), (20 / 70, 0, 0, 20)),
    ("pad", (50, 20)): ((12, 5), (12 / 50, 0, 0, 12), (5 / 20, 0, 0, 5)),
    # letterbox of a sliver: ratio min(12/1, 20/1000) = 0.02 -> 0.02 rows, kept at 1 (never 0); the row
    # centred: top (12 - 1) // 2 = 5
    ("letterbox", (1, 1000)): ((1, 20), (1.0, 5, 5, 6), (20 / 1000, 0, 0, 20)),
    # and standing: ratio 0.012 -> 12 rows, 0.012 columns kept at 1, left (20 - 1) // 2 = 9
    ("letterbox", (1000, 1)): ((12, 1), (12 / 1000, 0, 0, 12), (1.0, 9, 9, 10)),
}


def _spec(mode: str) -> pp.PreprocessSpec:
    return pp.PreprocessSpec(size=SIZE, crop_pct=0.8, resize_mode=mode)


@pytest.mark.parametrize("mode,shape", list(LANDED))
def test_geometry_is_the_worked_answer(mode, shape):
    resized, y, x = LANDED[(mode, shape)]
    g = pp.geometry(shape, _spec(mode))
    assert (g.photo, g.size, g.resized) == (shape, SIZE, resized)
    for got, want in ((g.y, y), (g.x, x)):
        assert (got.scale, got.offset, got.start, got.stop) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("mode,shape", list(LANDED))
def test_inverse_map_sends_each_photo_pixel_to_where_it_landed(mode, shape):
    """A ramp over the model's input (each pixel holds its own x, then y, coordinate) brought back onto
    the photo must hold, at each photo pixel, the model coordinate its centre was resized to."""
    _, y_axis, x_axis = LANDED[(mode, shape)]
    g = pp.geometry(shape, _spec(mode))
    H, W = SIZE
    for axis, (scale, offset, start, stop), n_model, n_photo in (("x", x_axis, W, shape[1]),
                                                                 ("y", y_axis, H, shape[0])):
        ramp = np.arange(n_model, dtype=np.float32) + 0.5
        model_map = np.tile(ramp, (H, 1)) if axis == "x" else np.tile(ramp[:, None], (1, W))
        back = pp.to_photo(model_map, g, fill=-1.0)
        u = (np.arange(n_photo) + 0.5) * scale + offset  # the worked answer, not g's
        seen = (u >= start) & (u < stop)
        inner = seen & (u >= start + 0.5) & (u <= stop - 0.5)  # between two model pixel centres
        edge = seen & ~inner  # beyond the outermost centre: the outermost pixel's value
        line = back[shape[0] // 2, :] if axis == "x" else back[:, shape[1] // 2]  # the centre is always seen
        np.testing.assert_allclose(line[inner], u[inner], atol=1e-4)
        np.testing.assert_allclose(line[edge], np.where(u[edge] < start + 0.5, start + 0.5, stop - 0.5), atol=1e-4)
        assert (line[~seen] == -1).all()
        assert mode == "crop" or seen.all()  # only a crop loses photo pixels


def test_a_centre_crop_forgets_the_photo_it_cut_away():
    # crop, 30 x 70: u = x/2 - 7 is in [0, 20) for photo columns 14..53; rows u = y/2 - 1: 2..25
    g = pp.geometry((30, 70), _spec("crop"))
    back = pp.to_photo(np.full(SIZE, 0.25, dtype=np.float32), g, fill=1.0)
    assert back.shape == (30, 70) and back.dtype == np.float32
    seen = np.zeros((30, 70), dtype=bool)
    seen[2:26, 14:54] = True
    assert (back[seen] == 0.25).all() and (back[~seen] == 1.0).all()


def test_to_photo_is_bilinear_between_model_pixel_centres():
    # stretch 12 x 20 onto 24 x 40 (scale 1/2): photo pixel x has its centre at model u = (x + 0.5) / 2,
    # a quarter before or after a model pixel centre: 3/4 of the nearer model pixel, 1/4 of the other
    g = pp.geometry((24, 40), _spec("stretch"))
    model = np.zeros(SIZE, dtype=np.float32)
    model[5, 9] = 1.0
    back = pp.to_photo(model, g, fill=-1.0)
    expected_x = np.zeros(40)
    expected_x[[17, 18, 19, 20]] = [0.25, 0.75, 0.75, 0.25]  # model column 9 spans photo 18, 19
    expected_y = np.zeros(24)
    expected_y[[9, 10, 11, 12]] = [0.25, 0.75, 0.75, 0.25]
    np.testing.assert_allclose(back, np.outer(expected_y, expected_x), atol=1e-6)


@pytest.mark.parametrize("mode", ["crop", "stretch", "letterbox", "pad"])
@pytest.mark.parametrize("shape", PHOTOS)
def test_a_photo_ramp_survives_the_way_there_and_back(mode, shape):
    """Independent of geometry's numbers: PIL resizes a linear ramp to a linear ramp, and the way back
    brings it to the photo's own coordinates; a wrong scale or offset on either side breaks it."""
    h, w = shape
    for axis, n in (("x", w), ("y", h)):
        values = (np.arange(n) * 3).astype(np.uint8)  # 3 grey levels a photo pixel
        photo = np.broadcast_to((values[None, :] if axis == "x" else values[:, None])[..., None], (h, w, 3)).copy()
        model_view = pp.prepare(photo, _spec(mode))[..., 0] * 255
        g = pp.geometry(shape, _spec(mode))
        back = pp.to_photo(model_view, g, fill=-1.0)
        a = getattr(g, axis)
        u = (np.arange(n) + 0.5) * a.scale + a.offset
        ok = (u >= a.start + 1.5) & (u <= a.stop - 1.5)  # away from the resampling filter's edge
        line = back[h // 2, :] if axis == "x" else back[:, w // 2]
        assert ok.sum() >= 3
        np.testing.assert_allclose(line[ok], values[ok].astype(float), atol=1.0)  # within a grey level or so


def test_a_huge_photo_is_cropped_from_its_region_alone():
    """Beyond MAX_RESIZED_PIXELS the crop's region is resampled alone: the same pixels as resizing the
    whole photo, within a grey level (the geometry does not change)."""
    spec = _spec("crop")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    tall = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)  # smooth at the scale of the resize; 32 x 48
    g = pp.geometry(tall.shape[:2], spec)
    assert g.resized[0] * g.resized[1] <= MAX_RESIZED_PIXELS
    whole = pp.prepare(tall, spec)
    import bbx.preprocess.resize as resize

    original = resize.MAX_RESIZED_PIXELS
    try:
        resize.MAX_RESIZED_PIXELS = 0  # take the region path for this photo
        region = pp.prepare(tall, spec)
    finally:
        resize.MAX_RESIZED_PIXELS = original
    assert region.shape == whole.shape == (*SIZE, 3)
    assert np.abs(region - whole).max() <= 2 / 255


def test_a_geometry_is_a_frozen_value():
    import dataclasses

    g = pp.geometry((30, 70), _spec("crop"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.resized = (1, 1)  # a geometry is computed once per photo and shared: nobody may change it
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.x.scale = 1.0
    assert g == pp.geometry((30, 70), _spec("crop")) and hash(g) == hash(pp.geometry((30, 70), _spec("crop")))


def test_the_whole_photo_is_resized_up_to_max_resized_pixels_and_no_further(monkeypatch):
    """Which path runs, read from PIL's resize: the whole photo while the resized photo holds at most
    MAX_RESIZED_PIXELS pixels, only the crop's region (a box) from one pixel more."""
    import bbx.preprocess.resize as resize
    from PIL import Image

    boxes = []
    original = Image.Image.resize

    def spy(self, size, *args, box=None, **kwargs):
        boxes.append(box)
        return original(self, size, *args, box=box, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    photo = np.zeros((30, 70, 3), dtype=np.uint8)
    for limit, region in ((15 * 35, False), (15 * 35 - 1, True)):  # crop resizes this photo to 15 x 35
        monkeypatch.setattr(resize, "MAX_RESIZED_PIXELS", limit)
        boxes.clear()
        pp.prepare(photo, _spec("crop"))
        assert len(boxes) == 1 and (boxes[0] is not None) == region, (limit, boxes)
    # the region of a 30 x 70 photo under the 12 x 20 crop: columns 14..54, rows 2..26 (to the photo's scale)
    assert boxes[0] == pytest.approx((14.0, 2.0, 54.0, 26.0))


def test_an_unknown_resize_mode_is_refused():
    import dataclasses

    spec = dataclasses.replace(_spec("crop"), resize_mode="squash")  # past the spec's own check
    with pytest.raises(ValueError, match="^unknown resize mode 'squash'$"):
        pp.geometry((30, 70), spec)


def test_a_pixel_centred_on_the_crop_edge_is_seen_on_the_near_edge_only():
    # crop_pct 1, photo 6 x 31 into 12 x 20: scale max(12/6, 20/31) = 2 -> 12 x 62, left (62 - 20) // 2 = 21;
    # photo column x has its centre at u = 2x + 1 - 21: column 10 exactly on the crop's left edge (u = 0),
    # column 20 exactly on its right edge (u = 20). The content is [0, 20): 10 is seen, 20 is not.
    spec = pp.PreprocessSpec(size=SIZE, crop_pct=1.0, resize_mode="crop")
    g = pp.geometry((6, 31), spec)
    assert (g.resized, g.x.scale, g.x.offset) == ((12, 62), 2.0, -21)
    back = pp.to_photo(np.zeros(SIZE, dtype=np.float32), g, fill=1.0)
    seen = np.flatnonzero(back[3] == 0.0)
    assert seen.tolist() == list(range(10, 20))
