"""bbx.result.render: every file of Explanation.save, decoded and checked against the arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbx.result.explanation import Explanation
from bbx.result.render import LUT, colorize, figure, to_uint8

N = 32
SQUARE = (slice(8, 16), slice(20, 28))  # rows, cols of the bright heatmap square
FILES = ["heatmap.png", "overlay.png", "perturbed.png", "figure.png", "mask.npy", "report.json"]


@pytest.fixture
def explanation() -> Explanation:
    rng = np.random.default_rng(0)
    heatmap = np.zeros((N, N), dtype=np.float32)
    heatmap[SQUARE] = 1.0
    mask = np.ones((8, 8))
    mask[2:4, 5:7] = 0.0
    return Explanation(
        mask=mask,
        heatmap=heatmap,
        image=rng.random((N, N, 3), dtype=np.float32),
        perturbed=rng.random((N, N, 3), dtype=np.float32),
        target=967,
        target_name="espresso",
        prob_before=0.4321,
        prob_after=0.8765,
        top1=967,
        top1_name="espresso",
        top1_prob_before=0.4321,
        top1_prob_after=0.8765,
        phi=78.2,
        undesirable_ratio=0.0625,
        queries=1234,
        seconds=1.5,
        loss_history=[1.0, 0.5],
        config={"method": "ftc", "iterations": 2},
        model="m.onnx",
        source="coffee.png",
    )


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def test_save_writes_every_file(explanation: Explanation, tmp_path: Path) -> None:
    paths = explanation.save(tmp_path)
    assert sorted(paths) == ["figure", "heatmap", "mask", "overlay", "perturbed", "report"]
    assert sorted(p.name for p in paths.values()) == sorted(FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)  # no '.tmp' leftovers
    for key in ("heatmap", "overlay", "perturbed"):
        assert _png(paths[key]).shape == (N, N, 3)
    fig = _png(paths["figure"])
    assert fig.shape[0] > 256 and fig.shape[1] > 3 * 256
    assert (fig[0, 0] == 255).all(), "white background"


def test_heatmap_png_is_colorized_heatmap(explanation: Explanation, tmp_path: Path) -> None:
    heat = _png(explanation.save(tmp_path)["heatmap"])
    np.testing.assert_array_equal(heat, colorize(explanation.heatmap))
    inside, outside = heat[SQUARE], np.delete(heat, np.s_[8:16], axis=0)
    assert (inside == LUT[255]).all() and (outside == LUT[0]).all()
    assert inside.astype(int).sum(-1).min() > outside.astype(int).sum(-1).max()


def test_colorize_fixed_range_and_perceptual() -> None:
    ramp = colorize(np.linspace(0, 1, 256)[None])[0].astype(int)
    lum = ramp @ np.array([299, 587, 114])
    assert (np.diff(lum) >= 0).all(), "luminance rises monotonically, dark (kept) to bright"
    # not rescaled per image: a flat 0.5 map is mid-colour, not black or yellow
    np.testing.assert_array_equal(colorize(np.full((2, 2), 0.5)), np.broadcast_to(LUT[128], (2, 2, 3)))
    np.testing.assert_array_equal(colorize(np.array([[-3.0, 7.0]])), [[LUT[0], LUT[255]]])


def test_overlay_shows_photo_where_heatmap_is_zero(explanation: Explanation, tmp_path: Path) -> None:
    over = _png(explanation.save(tmp_path)["overlay"]).astype(int)
    photo = to_uint8(explanation.image).astype(int)
    zero = explanation.heatmap == 0
    np.testing.assert_array_equal(over[zero], photo[zero])
    # where the heatmap is 1 the colour dominates: closer to the LUT's top than the photo is
    hot = ~zero
    assert (np.abs(over[hot] - LUT[255]).sum(-1) < np.abs(photo[hot] - LUT[255]).sum(-1)).all()


def test_perturbed_mask_and_report_round_trip(explanation: Explanation, tmp_path: Path) -> None:
    paths = explanation.save(tmp_path)
    np.testing.assert_array_equal(_png(paths["perturbed"]), to_uint8(explanation.perturbed))
    np.testing.assert_array_equal(np.load(paths["mask"]), explanation.mask)
    report = json.loads(paths["report"].read_text())
    assert report["target_name"] == "espresso" and report["queries"] == 1234
    assert report["config"]["method"] == "ftc" and report["mask"] == explanation.mask.tolist()


def test_to_uint8_clips_and_rounds() -> None:
    out = to_uint8(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]))
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 128, 255, 255, 0]


def test_figure_has_three_upscaled_panels(explanation: Explanation) -> None:
    fig = figure(explanation)
    k = 256 // N  # 32 px panels are upscaled 8x (nearest)
    rows = np.where((fig != 255).any(axis=(1, 2)))[0]
    assert rows.size and fig.shape[1] >= 3 * N * k
    # the original photo appears, upscaled by nearest neighbour, somewhere in the figure
    photo = np.kron(to_uint8(explanation.image), np.ones((k, k, 1), dtype=np.uint8))
    top, left = _find(fig, photo[:4, :4])
    np.testing.assert_array_equal(fig[top : top + N * k, left : left + N * k], photo)


def _find(big: np.ndarray, patch: np.ndarray) -> tuple[int, int]:
    ph, pw = patch.shape[:2]
    for y in range(big.shape[0] - ph):
        for x in np.where((big[y] == patch[0, 0]).all(-1))[0]:
            if np.array_equal(big[y : y + ph, x : x + pw], patch):
                return y, int(x)
    raise AssertionError("patch not found")


def test_save_twice_overwrites_cleanly(explanation: Explanation, tmp_path: Path) -> None:
    explanation.save(tmp_path)
    explanation.queries = 99
    explanation.perturbed = np.zeros_like(explanation.perturbed)
    paths = explanation.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert json.loads(paths["report"].read_text())["queries"] == 99
    assert (_png(paths["perturbed"]) == 0).all()


def test_save_creates_missing_folder(explanation: Explanation, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    explanation.save(str(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


def _caption_bands(fig: np.ndarray, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The white bands a figure's text must stay out of (the outer margins, the gaps between panels,
    in the caption rows) and each panel's caption area, for a heatmap of n x n drawn at 256 px panels."""
    from bbx.result.render import MARGIN, PANEL_MIN

    pw = n * max(1, -(-PANEL_MIN // n))
    height, width = fig.shape[:2]
    assert width == 2 * MARGIN + 3 * pw + 2 * MARGIN  # the layout the bands below are read from
    captions = fig[height - MARGIN - 30:, :].min(axis=2)  # below the panels: the caption line
    lefts = [MARGIN + i * (pw + MARGIN) for i in range(3)]
    outside = [fig[:, :MARGIN], fig[:, width - MARGIN:]] + [captions[:, left + pw:left + pw + MARGIN] for left in lefts[:2]]
    return np.concatenate([o.reshape(-1) for o in outside]), [captions[:, left:left + pw] for left in lefts]


def test_figure_survives_long_names_and_bitmap_font(explanation: Explanation, monkeypatch) -> None:
    """A class name far wider than its panel is shortened to fit: no text spills into the margins or the
    gaps between panels, the canvas keeps its size, with the scalable font and Pillow's bitmap one."""
    from PIL import ImageFont

    import bbx.result.render as render

    bitmap = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)
    for font in (None, lambda size: bitmap()):  # the default, then Pillow < 10.1 / no FreeType
        if font is not None:
            monkeypatch.setattr(render, "_font", font)
        explanation.target_name = "espresso"
        short = figure(explanation)
        explanation.target_name = "an extremely long class name " * 6
        fig = figure(explanation)
        assert fig.shape == short.shape  # text is shortened, the canvas does not grow
        outside, captions = _caption_bands(fig, N)
        assert (outside == 255).all(), "a caption or the title spills out of its room"
        assert all((c < 128).any() for c in captions)  # each caption is drawn (shortened, not dropped)
