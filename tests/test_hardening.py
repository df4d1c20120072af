"""Hardening: untrusted models and bad inputs never crash bbx, leak files or lose results.

The corpus below is a table of bad inputs. Each case builds its input (a model, an image, a
folder) in a fresh case folder, runs the real ``bbx`` console script in a fresh working
directory (with HOME and TMPDIR inside the case folder as well) and checks that

* stderr holds exactly one line, ``bbx: error: ...``, naming the problem, and no traceback;
* the exit code is the expected one (2 for bad input);
* nothing in the case folder was created, changed or removed outside the ``--out`` folder,
  and no temporary file is left inside it.

A few cases are awkward inputs that bbx must simply handle (CMYK, 16-bit, palette, alpha,
EXIF-rotated, 1x1 images, an output folder that already holds files): those must succeed with
an empty stderr and a complete output folder. The cases run a few at a time (they are mostly
interpreter start-up); ``test_corpus`` then checks each one on its own.

After the corpus: proofs that a model whose external data escapes its folder is refused before
anything outside is opened, and that outputs are written atomically (a killed writer leaves
the old file or none, never half of one).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import onnx_builders as ob
from hostile_endpoint import TOKEN, HostileEndpoint
from bbx.errors import BbxError, ModelError, OutputError
from bbx.preprocess.image import MAX_PIXELS

_EXE = Path(sys.executable).with_name("bbx")
BBX = [str(_EXE)] if _EXE.is_file() else ["bbx"]  # the console script installed for this Python
OUTPUTS = {"heatmap.png", "overlay.png", "perturbed.png", "figure.png", "mask.npy", "report.json",
           "photo_heatmap.png", "photo_overlay.png", "photo_mask.npy"}
SECRET = "outside: never to be read or changed\n"


def _chattr(flag: str, path: Path) -> str:
    """``chattr flag path``; what went wrong, or "" when it worked."""
    try:
        proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"chattr cannot run ({exc.strerror})"
    return "" if proc.returncode == 0 else (proc.stderr.strip() or f"chattr exited {proc.returncode}")


def _read_only_folder_how() -> tuple[str, str]:
    """How a folder is made read-only for this process: ("chmod", "") where a 0555 folder keeps it out;
    as root (CAP_DAC_OVERRIDE writes into 0555), ("chattr", "") where an immutable folder (chattr +i,
    which needs CAP_LINUX_IMMUTABLE and a file system with the flag, as ext4 here and in CI) keeps even
    root out; else ("", why neither does), the one reason to skip the read-only case."""
    with tempfile.TemporaryDirectory() as d:
        ro = Path(d, "ro")
        ro.mkdir()
        ro.chmod(0o555)
        try:
            (ro / "probe").touch()
        except PermissionError:
            return "chmod", ""
        finally:
            ro.chmod(0o755)
        (ro / "probe").unlink()
        failed = _chattr("+i", ro)
        if failed:
            return "", f"this user (root) writes into 0555 folders and chattr +i failed: {failed}"
        try:
            (ro / "probe").touch()
        except PermissionError:
            return "chattr", ""
        finally:
            _chattr("-i", ro)
        return "", "this user (root) writes into 0555 and immutable (chattr +i) folders alike"


READ_ONLY_HOW, READ_ONLY_WHY_NOT = _read_only_folder_how()


def make_read_only(folder: Path) -> None:
    folder.chmod(0o555)
    if READ_ONLY_HOW == "chattr":
        failed = _chattr("+i", folder)
        assert not failed, failed


def make_writable(folder: Path) -> None:
    """Undo :func:`make_read_only`, so that pytest can clean up."""
    if READ_ONLY_HOW == "chattr":
        _chattr("-i", folder)
    folder.chmod(0o755)


# -- inputs ------------------------------------------------------------------------------------

def model(d: Path, name: str = "model") -> Path:
    """The tiny plain classifier (16x16 NCHW, 10 classes) as ``d/<name>.onnx``."""
    return ob.build("plain", d, name=name)


def photo(d: Path, name: str = "image.png", size: tuple[int, int] = (40, 50)) -> Path:
    rng = np.random.default_rng(0)
    path = d / name
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def model_and_photo(d: Path) -> None:
    model(d)
    photo(d)


def _png(width: int, height: int, *, bit_depth: int = 1, colour: int = 0) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels, compressed row by row: a few kB even
    when decoding it would take gigabytes (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\0" * (1 + -(-width * channels * bit_depth // 8))
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def image_bytes(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        model(d)
        (d / name).write_bytes(data() if callable(data) else data)
    return build


def pil_image(name: str, make: Callable[[], Image.Image], mode: str, **save: Any) -> Callable[[Path], None]:
    """Save ``make()`` as ``d/name`` and check that Pillow reads it back in ``mode``."""
    def build(d: Path) -> None:
        model(d)
        make().save(d / name, **save)
        with Image.open(d / name) as im:
            assert im.mode == mode, (name, im.mode)
    return build


def truncated(name: str, fmt: str) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        model(d)
        buf = io.BytesIO()
        rng = np.random.default_rng(3)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
        raw = buf.getvalue()
        (d / name).write_bytes(raw[: len(raw) // 2])
    return build


def _cmyk() -> Image.Image:
    im = Image.new("CMYK", (24, 16), (0, 0, 0, 0))
    im.paste((0, 255, 255, 0), (0, 0, 12, 16))
    return im


def _palette() -> Image.Image:
    im = Image.new("P", (20, 12), 0)
    im.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    im.paste(1, (0, 0, 10, 12))
    return im


def _rgba() -> Image.Image:
    a = np.random.default_rng(4).integers(0, 256, (18, 22, 4), dtype=np.uint8)
    return Image.fromarray(a, "RGBA")


def _grey16() -> Image.Image:
    return Image.fromarray(np.random.default_rng(5).integers(0, 65536, (20, 30), dtype=np.uint16))


def _float_nan_inf() -> Image.Image:
    a = np.random.default_rng(6).random((12, 12)).astype(np.float32)
    a[0, 0], a[1, 1], a[2, 2] = np.nan, np.inf, -np.inf
    return Image.fromarray(a, "F")


def exif_jpeg(orientation: int) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        model(d)
        exif = Image.Exif()
        exif[0x0112] = orientation
        a = np.random.default_rng(7).integers(0, 256, (20, 40, 3), dtype=np.uint8)
        Image.fromarray(a).save(d / "image.jpg", exif=exif, quality=90)
    return build


def external(location: str | Callable[[Path], str], where: str = "initializer",
             extra: Optional[Callable[[Path], None]] = None) -> Callable[[Path], None]:
    """The plain model with one tensor's data "stored" at ``location`` (not embedded).

    ``where``: the bias ``initializer``, a ``constant`` node's value attribute, or an
    initializer of an ``If`` node's ``subgraph``. ``location`` may depend on the input folder.
    """
    def point(t: TensorProto, loc: str) -> None:
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", loc

    def build(d: Path) -> None:
        photo(d)
        outside = d.parent / "outside"
        # what the model would read: ten float32 zeros, a perfectly good bias
        (outside / "weights.bin").write_bytes(np.zeros(ob.CLASSES, np.float32).tobytes())
        if extra:
            extra(d)
        loc = location(d) if callable(location) else location
        if where == "initializer":
            m = onnx.load(str(model(d)))
            point(next(t for t in m.graph.initializer if t.name.startswith("bias")), loc)
            onnx.save(m, str(d / "model.onnx"))
            return
        g = ob._Graph()
        z = g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED)
        t = numpy_helper.from_array(np.zeros(ob.CLASSES, np.float32), "hidden")
        point(t, loc)
        if where == "constant":
            g.nodes.append(helper.make_node("Constant", [], ["hidden_out"], value=t))
            g.op("Add", [z, "hidden_out"], out="logits")
        elif where == "subgraph":
            then = helper.make_graph([helper.make_node("Add", [z, "hidden"], ["then_out"])], "then", [],
                                     [ob._vi("then_out", TensorProto.FLOAT, ["N", ob.CLASSES])], initializer=[t])
            other = helper.make_graph([helper.make_node("Identity", [z], ["else_out"])], "else", [],
                                      [ob._vi("else_out", TensorProto.FLOAT, ["N", ob.CLASSES])])
            cond = g.const(True, "cond", np.bool_)
            g.nodes.append(helper.make_node("If", [cond], ["logits"], then_branch=then, else_branch=other))
        else:
            raise ValueError(where)
        _save(g, d, ["N", 3, ob.SIZE, ob.SIZE], ["N", ob.CLASSES], check=False)
    return build


def _link_outside(d: Path) -> None:
    os.symlink(d.parent / "outside" / "weights.bin", d / "weights.bin")


def _save(g: "ob._Graph", d: Path, in_dims: list, out_dims: list, *, in_type: int = TensorProto.FLOAT,
          out_type: int = TensorProto.FLOAT, out_vi: Any = None, opsets: tuple = (), check: bool = True,
          metadata: Any = "plain") -> Path:
    """``d/model.onnx`` from a graph whose input is ``image`` and whose output is ``logits``."""
    ins = [ob._vi("image", in_type, in_dims)]
    outs = [out_vi or ob._vi("logits", out_type, out_dims)]
    meta = ob.spec() if metadata == "plain" else metadata
    if not opsets:
        return ob.save(g, ins, outs, d / "model.onnx", metadata=meta, check=check)
    gr = helper.make_graph(g.nodes, "model", ins, outs, initializer=g.inits)
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", ob.OPSET), *opsets])
    m.ir_version = ob.IR_VERSION
    helper.set_model_props(m, {"bbx.preprocess": json.dumps(meta)})
    onnx.save(m, str(d / "model.onnx"))
    return d / "model.onnx"


def scores_then(tail: Callable[["ob._Graph", str], None], out_dims: list = ("N", ob.CLASSES), **kw: Any):
    """A model computing the reference logits ``z`` and then ``tail(g, z)``, which makes ``logits``."""
    def build(d: Path) -> None:
        photo(d)
        Image.new("RGB", (20, 20), "white").save(d / "white.png")
        g = ob._Graph()
        tail(g, g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED))
        _save(g, d, ["N", 3, ob.SIZE, ob.SIZE], list(out_dims), **kw)
    return build


def graph_model(make: Callable[["ob._Graph"], None], in_dims: list, out_dims: list = ("N", ob.CLASSES), **kw: Any):
    def build(d: Path) -> None:
        photo(d)
        g = ob._Graph()
        make(g)
        _save(g, d, list(in_dims), list(out_dims), **kw)
    return build


def _rows(start: int, end: int):
    def tail(g: "ob._Graph", z: str) -> None:
        g.op("Slice", [z, g.const([start], "s", np.int64), g.const([end], "e", np.int64),
                       g.const([0], "a", np.int64)], out="logits")
    return tail


def _mean_logits(g: "ob._Graph", channels: int = 3) -> None:
    """Logits from channel means only (works for any spatial size)."""
    m = g.op("ReduceMean", ["image"], axes=[2, 3], keepdims=0)
    g.op("MatMul", [m, g.const(np.ones((channels, ob.CLASSES)), "A")], out="logits")


def with_files(*files: tuple[str, str | bytes], base: Callable[[Path], None] = model_and_photo):
    def build(d: Path) -> None:
        base(d)
        for name, content in files:
            (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return build


def plain_with(**kw: Any) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        photo(d)
        ob.build_plain(d, "model", **kw)
    return build


def _onnx_bytes_half(d: Path) -> None:
    raw = model(d).read_bytes()
    (d / "model.onnx").write_bytes(raw[: len(raw) // 2])
    photo(d)


def existing_out(d: Path) -> None:
    model_and_photo(d)
    out = d.parent / "work" / "out"
    (out / "notes").mkdir(parents=True)
    (out / "keep.txt").write_text("mine\n")
    (out / "notes" / "todo.md").write_text("- read the heatmap\n")
    (out / "report.json").write_text("OLD")


EARLIER = {"target": 3, "prob_before": 0.25, "prob_after": 0.5, "queries": 6}


def earlier_run_out(d: Path) -> None:
    """An output folder with an earlier explanation's report in it."""
    model_and_photo(d)
    out = d.parent / "work" / "out"
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(EARLIER))


def earlier_report_kept(out: Path) -> None:
    assert json.loads((out / "report.json").read_text()) == EARLIER
    assert {p.name for p in out.iterdir()} == {"report.json"}


def report_is_a_folder(d: Path) -> None:
    model_and_photo(d)
    (d.parent / "work" / "out" / "report.json").mkdir(parents=True)


def heatmap_links_outside(d: Path) -> None:
    model_and_photo(d)
    out = d.parent / "work" / "out"
    out.mkdir(parents=True)
    (d.parent / "work" / "victim.txt").write_text("a file outside --out\n")
    os.symlink("../victim.txt", out / "heatmap.png")


def read_only_out(d: Path) -> None:
    model_and_photo(d)
    out = d.parent / "work" / "out"
    out.mkdir(parents=True)
    make_read_only(out)  # as root too: an immutable folder (READ_ONLY_HOW)


# -- checks after a run (besides the common ones) ----------------------------------------------

def complete(path: Path) -> None:
    """``path`` is a whole output file, readable by others (not mkstemp's 0600)."""
    assert path.stat().st_mode & 0o044 == 0o044, f"{path.name}: mode {oct(path.stat().st_mode)}"
    if path.suffix == ".png":
        with Image.open(path) as im:
            im.load()
    elif path.suffix == ".json":
        assert {"target", "prob_before", "prob_after", "queries"} <= json.loads(path.read_text()).keys()
    elif path.name == "photo_mask.npy":  # M' on the photo, at the photo's size (the report says which)
        mask = np.load(path)
        if (path.parent / "report.json").is_file():
            assert list(mask.shape) == json.loads((path.parent / "report.json").read_text())["photo_size"]
    elif path.suffix == ".npy":
        assert np.load(path).shape == (28, 28)


def outputs_complete(out: Path) -> None:
    names = {p.name for p in out.iterdir()}
    assert OUTPUTS <= names, names
    for name in OUTPUTS:
        complete(out / name)


def kept_what_was_there(out: Path) -> None:
    outputs_complete(out)
    assert (out / "keep.txt").read_text() == "mine\n"
    assert (out / "notes" / "todo.md").read_text() == "- read the heatmap\n"
    assert {p.name for p in out.iterdir()} == OUTPUTS | {"keep.txt", "notes"}


def link_replaced_not_followed(out: Path) -> None:
    outputs_complete(out)
    assert not (out / "heatmap.png").is_symlink()
    assert (out.parent / "victim.txt").read_text() == "a file outside --out\n"


def contrast_on(flat: bool) -> Callable[[Path], None]:
    """The two-class contrast model (class 0 rises with the pixels' variance) and a flat or noisy photo."""
    def build(d: Path) -> None:
        ob.build_contrast(d, "model")
        if flat:
            Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(d / "image.png")
        else:
            photo(d)
    return build


def noted(text: str) -> Callable[[Path], None]:
    """The report holds the note too (besides the one line on stderr), and the whole output set."""
    def check(out: Path) -> None:
        outputs_complete(out)
        assert any(text in n for n in json.loads((out / "report.json").read_text())["notes"])
    return check


def _future_opset(d: Path) -> None:
    photo(d)
    g = ob._Graph()
    g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED, out="logits")
    gr = helper.make_graph(g.nodes, "model", [ob._vi("image", TensorProto.FLOAT, ["N", 3, ob.SIZE, ob.SIZE])],
                           [ob._vi("logits", TensorProto.FLOAT, ["N", ob.CLASSES])], initializer=g.inits)
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 999)])
    m.ir_version = ob.IR_VERSION
    onnx.save(m, str(d / "model.onnx"))


def _no_input(d: Path) -> None:
    photo(d)
    g = ob._Graph()
    g.op("Constant", [], out="logits", value=numpy_helper.from_array(np.zeros((2, ob.CLASSES), np.float32)))
    ob.save(g, [], [ob._vi("logits", TensorProto.FLOAT, [2, ob.CLASSES])], d / "model.onnx", metadata=ob.spec())


def _ragged_sequence(g: "ob._Graph", z: str) -> None:
    """A sequence of the [N, C] logits and their first row: no array at all."""
    first = g.op("Slice", [z, g.const([0], "s", np.int64), g.const([1], "e", np.int64), g.const([0], "a", np.int64)])
    g.nodes.append(helper.make_node("SequenceConstruct", [z, first], ["logits"]))


# -- round 2 (issue 24): builders --------------------------------------------------------------

def slow_tail(g: "ob._Graph", z: str, trips: int = 10**12) -> None:
    """``logits`` = z + 0 * (a Loop counting to ``trips``): right answers, after hours."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body", [ob._vi("i", TensorProto.INT64, []), ob._vi("cond_in", TensorProto.BOOL, []),
                 ob._vi("v_in", TensorProto.FLOAT, [])],
        [ob._vi("cond_out", TensorProto.BOOL, []), ob._vi("v_out", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    trips_, cond, v0 = g.const(trips, "trips", np.int64), g.const(True, "cond", np.bool_), g.const(0.0, "v0")
    g.nodes.append(helper.make_node("Loop", [trips_, cond, v0], ["v_final"], body=body))
    g.op("Add", [z, g.op("Mul", ["v_final", g.const(0.0, "zero")])], out="logits")


def _anysize_and(photo_size: tuple[int, int]) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        ob.build_symbolic_size(d, "model")
        (d / "image.png").write_bytes(_png(photo_size[1], photo_size[0], bit_depth=8, colour=2))
    return build


def labelled(names: list[str], **kw: Any) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        photo(d)
        ob.build_plain(d, "model", labels=names, **kw)
    return build


def _softmax_then(g: "ob._Graph", z: str, bad: str) -> None:
    """Probabilities on grey and random images; on a bright one (mean > 0.8) negative or all zero."""
    p = g.op("Softmax", [z], axis=1)
    mean = g.op("ReduceMean", ["image"], axes=[1, 2, 3], keepdims=1)
    bright = g.op("Cast", [g.op("Greater", [g.op("Reshape", [mean, g.const([-1, 1], "sh", np.int64)]),
                                            g.const(0.8, "t")])], to=TensorProto.FLOAT)
    if bad == "negative":
        g.op("Sub", [p, g.op("Mul", [bright, g.const(0.05, "k")])], out="logits")
    else:
        g.op("Mul", [p, g.op("Sub", [g.const(1.0, "one"), bright])], out="logits")


def _batch_dependent(g: "ob._Graph", z: str) -> None:
    """Each image's logits plus the batch's mean logits: an image scores differently in company."""
    g.op("Add", [z, g.op("ReduceMean", [z], axes=[0], keepdims=1)], out="logits")


def _declared_classes(d: Path) -> None:
    photo(d)
    g = ob._Graph()
    g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED, out="logits")
    _save(g, d, ["N", 3, ob.SIZE, ob.SIZE], ["N", 200_000_000], check=False)


def _out_with(*entries: tuple[str, str]) -> Callable[[Path], None]:
    """The model and photo, and ``work/out`` holding ``entries``: (name, kind) with kind one of
    ``link-outside`` (a link to outside/secret.txt), ``fifo``, ``folder``, or file contents."""
    def build(d: Path) -> None:
        model_and_photo(d)
        out = d.parent / "work" / "out"
        out.mkdir(parents=True, exist_ok=True)
        for name, kind in entries:
            if kind == "link-outside":
                os.symlink(d.parent / "outside" / "secret.txt", out / name)
            elif kind == "fifo":
                os.mkfifo(out / name)
            elif kind == "folder":
                (out / name).mkdir()
            else:
                (out / name).write_text(kind)
    return build


def _evaluated_then(change: Callable[[Path], None], base: Callable[[Path], None] = model_and_photo):
    """``base``, a first ``bbx evaluate`` into work/out (random, 1 seed), then ``change``."""
    def build(d: Path) -> None:
        base(d)
        subprocess.run([*BBX, "evaluate", str(d / "model.onnx"), str(d), "--methods", "random", "--seeds", "1",
                        "--out", str(d.parent / "work" / "out"), "--quiet"], check=True, capture_output=True,
                       timeout=120)
        change(d)
    return build


def _two_photos_one_truncated(d: Path) -> None:
    model_and_photo(d)
    truncated("broken.png", "PNG")(d)


def _external_inside(d: Path) -> None:
    external("weights.bin", extra=lambda d: (d / "weights.bin").write_bytes(bytes(4 * ob.CLASSES)))(d)


def evaluate_args(*extra: str, images: str = "{in}") -> tuple[str, ...]:
    return ("evaluate", "{in}/model.onnx", images, "--methods", "random", "--seeds", "1", "--out", "out", "--quiet",
            *extra)


# -- round 2: checks ---------------------------------------------------------------------------

def no_out(out: Path) -> None:
    assert not out.exists(), f"a refused run left {out}"


def report_names_its_files(out: Path) -> None:
    """The report, written last, names a run id and the hash of each file of its run."""
    outputs_complete(out)
    report = json.loads((out / "report.json").read_text())
    assert len(report["run_id"]) == 32
    for name, digest in report["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name


def old_report_gone(out: Path) -> None:
    """A save that failed half-way leaves no report: the folder says it holds no finished run."""
    assert not (out / "report.json").exists()
    assert (out / "heatmap.png").is_file()  # written before overlay.png failed


def escaped(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert not [ln for ln in text.splitlines() if ln.startswith("FORGED")], text


def lines_kept(out: Path) -> None:
    text = (out / "results.jsonl").read_text()
    assert text.splitlines()[0] == '{"image": "x", "method": "random", "seed": 0}'
    assert len(text.splitlines()) == 2


def error_recorded(out: Path) -> None:
    recs = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert [r["image"].endswith("broken.png") for r in recs if "error" in r] == [True]
    assert [r["image"].endswith("image.png") for r in recs if "error" not in r] == [True]


def secret_unchanged(out: Path) -> None:
    assert (out.parent.parent / "outside" / "secret.txt").read_text() == SECRET


def _replace_photo(d: Path) -> None:
    photo(d, size=(41, 50))  # another photo under the same name


def _change_weights(d: Path) -> None:
    (d / "weights.bin").write_bytes(np.ones(ob.CLASSES, np.float32).tobytes())


def _corrupt_settings(d: Path) -> None:
    (d.parent / "work" / "out" / "settings.json").write_text('{"model": "x"')


# -- the corpus --------------------------------------------------------------------------------

def explain(*extra: str, image: str = "{in}/image.png", out: str = "out") -> tuple[str, ...]:
    """``bbx explain`` of the case's model, short: the soft mask (ftc), 2 steps of 1 pair (later options win)."""
    return ("explain", "{in}/model.onnx", image, "--method", "ftc", "--iterations", "2", "--pairs", "1",
            "--estimator", "nes", "--out", out, *extra)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], None]  # makes the inputs in the case's "in" folder
    args: tuple[str, ...]  # "{in}" is replaced by the case's input folder; cwd is its "work" folder
    expect: str  # a part of the single error line; "" for a case that must succeed
    code: int = 2
    check: Optional[Callable[[Path], None]] = None  # called with the --out folder after the run
    skip: Optional[str] = None  # a reason to skip here
    note: str = ""  # a case that succeeds: a part of its one "bbx: note:" line on stderr ("" = no stderr)
    output: Optional[Callable[[str], None]] = None  # called with stdout + stderr
    interrupt: Optional[float] = None  # send SIGINT (Ctrl-C) this many seconds after the start
    memory: Optional[int] = None  # the address-space limit of the bbx process, bytes
    endpoint: Optional[str] = None  # a hostile endpoint's behaviour (tests/hostile_endpoint.py); "{url}" in args
    env: tuple[tuple[str, str], ...] = ()  # more environment; "{mpl}" is a matplotlib cache outside the case folder

    def argv(self, root: Path, url: str = "") -> list[str]:
        return [a.replace("{in}", str(root / "in")).replace("{url}", url) for a in self.args]


OK = ""  # the case must succeed

CASES = [
    # -- files that are not ONNX models
    Case("onnx-truncated", _onnx_bytes_half, ("inspect", "{in}/model.onnx"), "not a readable ONNX model"),
    Case("onnx-text-file", with_files(("model.onnx", "hello, I am not a model\n"), base=photo),
         explain(), "not a readable ONNX model"),
    Case("onnx-is-a-png", lambda d: (photo(d), (d / "model.onnx").write_bytes((d / "image.png").read_bytes())),
         explain(), "not a readable ONNX model"),
    # -- external data outside the model's folder (refused before anything is opened)
    Case("external-dotdot", external("../outside/weights.bin"), explain(),
         "reads external data from '../outside/weights.bin'"),
    Case("external-etc-passwd", external("../../../../../../../../etc/passwd"), explain(),
         "outside the model's folder"),
    Case("external-absolute", external(lambda d: str(d.parent / "outside" / "weights.bin")),
         ("inspect", "{in}/model.onnx"), "outside the model's folder"),
    Case("external-symlink-out", external("weights.bin", extra=_link_outside), explain(), "outside the model's folder"),
    Case("external-nul-byte", external("weights\0.bin"), ("inspect", "{in}/model.onnx"), "refusing model"),
    Case("external-in-constant", external("../outside/weights.bin", where="constant"), explain(),
         "tensor 'hidden' reads external data"),
    Case("external-in-subgraph", external("/etc/passwd", where="subgraph"), explain(),
         "tensor 'hidden' reads external data"),
    Case("external-missing-inside", external("nothere.bin"), ("inspect", "{in}/model.onnx"), "onnxruntime cannot load"),
    Case("external-inside-is-fine", external("weights.bin", where="subgraph",
                                             extra=lambda d: (d / "weights.bin").write_bytes(bytes(4 * ob.CLASSES))),
         explain(), OK, 0, outputs_complete),
    # -- operators onnxruntime does not know
    Case("custom-op-domain", scores_then(lambda g, z: g.nodes.append(
        helper.make_node("Frobnicate", [z], ["logits"], domain="com.evil")),
        opsets=(helper.make_opsetid("com.evil", 1),)),
        explain(), "com.evil:Frobnicate"),
    Case("opset-from-the-future", _future_opset, ("inspect", "{in}/model.onnx"), "onnxruntime cannot load"),
    # -- inputs that are not one RGB image
    Case("no-input", _no_input, explain(), "the model has no input"),
    Case("int64-input", graph_model(lambda g: g.reference(g.op("Cast", ["image"], to=TensorProto.FLOAT), ob.SIZE,
                                                          ob.CLASSES, ob.SEED, out="logits"),
                                    ["N", 3, ob.SIZE, ob.SIZE], in_type=TensorProto.INT64),
         explain(), "element type INT64"),
    Case("one-channel-input", graph_model(lambda g: _mean_logits(g, 1), ["N", 1, ob.SIZE, ob.SIZE]),
         ("inspect", "{in}/model.onnx"), "not an RGB image input"),
    Case("huge-declared-input", graph_model(_mean_logits, ["N", 3, 100000, 100000], metadata=None),
         explain(), "above bbx's limit of 8192 per side"),
    # -- outputs that are not class scores
    Case("output-one-column", scores_then(lambda g, z: g.op("ReduceSum", [z, g.const([1], "ax", np.int64)],
                                                             out="logits", keepdims=1), ["N", 1]),
         explain(), "logits [2, 1] float32"),
    Case("output-scalar", scores_then(lambda g, z: g.op("ReduceSum", [z], out="logits", keepdims=0), []),
         ("inspect", "{in}/model.onnx"), "logits [] float32"),
    Case("output-strings", scores_then(lambda g, z: g.op("Cast", [z], out="logits", to=TensorProto.STRING),
                                       out_type=TensorProto.STRING), explain(), "logits [2, 10] strings"),
    Case("output-ragged-sequence", scores_then(_ragged_sequence, out_vi=helper.make_tensor_sequence_value_info(
        "logits", TensorProto.FLOAT, None)), explain(), "logits a sequence of 2"),
    Case("scores-nan", scores_then(lambda g, z: g.op("Add", [z, g.op("Mul", [z, g.const(np.nan, "nan")])],
                                                    out="logits")),
         explain(), "NaN or infinite scores on a plain grey image"),
    Case("scores-infinite", scores_then(lambda g, z: g.op("Mul", [z, g.const(1e38, "big")], out="logits")),
         ("inspect", "{in}/model.onnx"), "NaN or infinite scores"),
    Case("scores-nan-on-bright-images", scores_then(ob.nan_when_bright), explain(image="{in}/white.png"),
         "the model returned NaN or infinite scores"),
    Case("rows-always-one", scores_then(_rows(0, 1), ["M", ob.CLASSES]), explain(), "logits [1, 10] float32"),
    Case("rows-doubled", scores_then(lambda g, z: g.op("Concat", [z, z], axis=0, out="logits"), ["M", ob.CLASSES]),
         ("inspect", "{in}/model.onnx"), "logits [4, 10] float32"),
    Case("rows-at-most-two", scores_then(_rows(0, 2), ["M", ob.CLASSES]),
         explain("--pairs", "2"), "the model returned 2 rows for a batch of 4 images"),
    # -- preprocessing and labels that come with the model
    Case("sidecar-infinite-size", plain_with(metadata=None, sidecar={"preprocess": {"size": float("inf")}}),
         explain(), "bad preprocessing value"),
    Case("metadata-infinite-std", plain_with(metadata=ob.spec(std=[float("inf"), 1.0, 1.0])),
         ("inspect", "{in}/model.onnx"), "finite"),
    Case("sidecar-not-json", with_files(("model.bbx.json", "{size: 16"),), explain(), "cannot read sidecar"),
    Case("labels-wrong-count", with_files(("labels.txt", "cat\ndog\nfish\n")),
         ("inspect", "{in}/model.onnx", "--labels", "{in}/labels.txt"),
         "labels give 3 names but the model has 10 classes"),
    Case("labels-json-not-a-list", with_files(("labels.json", '{"0": "cat"}')),
         explain("--labels", "{in}/labels.json"), "must be a list of strings"),
    # -- images bbx refuses
    Case("image-zero-size", image_bytes("image.png", _png(0, 0)), explain(), "cannot read image"),
    Case("image-is-text", image_bytes("image.jpg", b"not a picture\n"), explain(image="{in}/image.jpg"),
         "cannot read image"),
    Case("image-truncated-jpeg", truncated("image.jpg", "JPEG"), explain(image="{in}/image.jpg"), "cannot read image"),
    Case("image-bomb-own-limit", image_bytes("image.png", lambda: _png(9000, 9000)), explain(),
         f"above bbx's limit of {MAX_PIXELS:,}"),
    Case("image-bomb-pillow-warning", image_bytes("image.png", lambda: _png(10000, 10000)), explain(),
         "image too large"),
    Case("image-bomb-20000", image_bytes("image.png", lambda: _png(20000, 20000)), explain(), "image too large"),
    Case("image-missing", model, explain(), "image not found"),
    Case("image-name-with-newline", image_bytes("bad\nname.png", b"garbage"), explain(image="{in}/bad\nname.png"),
         "cannot read image", skip=None if os.name == "posix" else "file names with a newline need POSIX"),
    # -- images bbx must handle
    Case("image-1x1", lambda d: (model(d), photo(d, size=(1, 1))), explain(), OK, 0, outputs_complete),
    Case("image-cmyk-jpeg", pil_image("image.jpg", _cmyk, "CMYK", quality=90), explain(image="{in}/image.jpg"),
         OK, 0, outputs_complete),
    Case("image-16-bit-png", pil_image("image.png", _grey16, "I;16"), explain(), OK, 0, outputs_complete),
    Case("image-palette", pil_image("image.png", _palette, "P"), explain(), OK, 0, outputs_complete),
    Case("image-alpha", pil_image("image.png", _rgba, "RGBA"), explain(), OK, 0, outputs_complete),
    Case("image-float-nan-inf", pil_image("image.tif", _float_nan_inf, "F"), explain(image="{in}/image.tif"),
         OK, 0, outputs_complete),
    Case("image-exif-rotated", exif_jpeg(6), explain(image="{in}/image.jpg"), OK, 0, outputs_complete),
    Case("image-exif-bad-orientation", exif_jpeg(9), explain(image="{in}/image.jpg"), OK, 0, outputs_complete),
    # -- targets
    Case("target-unknown-name", model_and_photo, explain("--target", "unicorn"), "unknown target class 'unicorn'"),
    Case("target-index-too-big", model_and_photo, explain("--target", "10"), "target 10 is out of range"),
    Case("target-negative", model_and_photo, explain("--target", "-1"), "target -1 is out of range"),
    Case("target-superscript-digit", model_and_photo, explain("--target", "\u00b2"), "unknown target class"),
    Case("target-empty", model_and_photo, explain("--target", ""), "the target class is empty"),
    # -- budgets, iterations, pairs
    Case("iterations-negative", model_and_photo, explain("--iterations", "-5"),
         "iterations must be in 1..1,000,000, not -5"),
    Case("iterations-absurd", model_and_photo, explain("--iterations", "10" * 12),
         "iterations must be in 1..1,000,000"),
    Case("iterations-not-a-number", model_and_photo, explain("--iterations", "many"),
         "Invalid value for '--iterations'"),
    Case("budget-too-small", model_and_photo, explain("--budget", "3"), "budget must be in 4..10^9 queries, not 3"),
    Case("budget-absurd", model_and_photo, explain("--budget", "100000000000"), "budget must be in 4..10^9"),
    Case("budget-below-one-step", model_and_photo, explain("--budget", "5", "--pairs", "2"), "budget 5 is too small"),
    Case("pairs-zero", model_and_photo, explain("--pairs", "0"), "pairs must be in 1..100,000"),
    Case("pairs-absurd", model_and_photo, explain("--pairs", "1000000"), "pairs must be in 1..100,000"),
    Case("seed-negative", model_and_photo, explain("--seed", "-1"), "seed must be a non-negative integer"),
    Case("estimator-unknown", model_and_photo, explain("--estimator", "magic"), "estimator must be one of"),
    # -- output folders
    Case("out-is-a-file", model_and_photo, explain(out="{in}/image.png"), "exists and is not a folder"),
    Case("out-under-a-file", model_and_photo, explain(out="{in}/image.png/sub"), "cannot create output folder"),
    Case("out-report-is-a-folder", report_is_a_folder, explain(), "cannot write out/report.json"),
    Case("out-read-only", read_only_out, explain(), "is not writable", skip=READ_ONLY_WHY_NOT or None),
    Case("out-holds-bbx-outputs", earlier_run_out, explain(), "already holds bbx outputs (report.json): give --overwrite",
         check=earlier_report_kept),
    Case("out-exists-with-files", existing_out, explain("--overwrite"), OK, 0, kept_what_was_there),
    Case("out-file-is-a-link-outside", heatmap_links_outside, explain(), OK, 0, link_replaced_not_followed),
    # -- explanations that found nothing: a result, said in one line and in the report
    Case("explanation-empty", contrast_on(flat=True), explain(), OK, 0, noted("found nothing"),
         note="found nothing: the mask never left 1"),
    Case("explanation-worse-target", contrast_on(flat=False),
         ("explain", "{in}/model.onnx", "{in}/image.png", "--method", "random", "--target", "0", "--out", "out"),
         OK, 0, noted("made the target worse"), note="made the target worse: its probability went down"),
    Case("constant-model", lambda d: (photo(d), ob.build_constant(d, "model")), explain(), OK, 0,
         noted("constant model"), note="constant model: it gave the same scores to every image"),
    # -- round 2 (issue 24), worst first; the number is the issue's
    # 1: a 1 x 50,000 photo is resampled only where the crop is (it was a 9.8 GB image at 224 x 224)
    Case("r2-01-aspect-1x50000", _anysize_and((1, 50_000)), explain("--size", "224"), OK, 0, outputs_complete,
         memory=1_500_000_000),
    # 2, 3: Ctrl-C ends even a model call that would run for hours; --timeout and --run-timeout end it too
    # the model never answers, so Ctrl-C may come late: 20 s, well past bbx's start-up even on a loaded
    # machine (at 3 s, under a load of 18 on 2 cores, it came during the imports: a traceback, not bbx's line)
    Case("r2-02-ctrl-c-in-a-model-call", scores_then(slow_tail), explain(), "interrupted", 130, no_out, interrupt=20.0),
    Case("r2-03-timeout-per-call", scores_then(slow_tail), explain("--timeout", "1"),
         "a model call took longer than --timeout 1 s", 2, no_out),
    Case("r2-03-run-timeout", scores_then(slow_tail), ("inspect", "{in}/model.onnx", "--run-timeout", "1.5"),
         "the run took longer than --run-timeout 1.5 s"),
    Case("r2-03-timeout-not-a-time", model_and_photo, explain("--timeout", "nan"), "timeout must be a number of seconds"),
    # 4: names from the model, the labels and the file system reach the terminal escaped
    Case("r2-04-escapes-in-class-names", labelled([f"c{i}" for i in range(9)] + ["\x1b]0;owned\x07\x1b[2J\nFORGED 1.0"]),
         explain("--target", "9"), OK, 0, outputs_complete, output=escaped),
    Case("r2-04-escapes-in-a-file-name", model, explain(image="{in}/\x1b[2J\nFORGED.png"), "image not found",
         output=escaped, skip=None if os.name == "posix" else "needs POSIX file names"),
    Case("r2-04-escapes-in-predict", labelled([f"c{i}" for i in range(9)] + ["\x1b[31mred\nFORGED"]),
         ("predict", "{in}/model.onnx", "{in}/image.png", "--top", "10"), "FORGED", 0, output=escaped),
    # 5: a 5,000-character class name is cut by bisection in the caption
    Case("r2-05-long-class-name", labelled([f"c{i}" for i in range(9)] + ["x" * 5000]), explain("--target", "9"),
         OK, 0, report_names_its_files),
    # 6: labels are never shifted to fit (only 1000 names on a 1001-class model get "background")
    Case("r2-06-labels-one-short", with_files(("labels.txt", "".join(f"n{i}\n" for i in range(9)))),
         explain("--labels", "{in}/labels.txt"), "labels give 9 names but the model has 10 classes", 2, no_out),
    Case("r2-06-labels-blank-line", with_files(("labels.txt", "a\n\n" + "".join(f"n{i}\n" for i in range(9)))),
         explain("--labels", "{in}/labels.txt"), "has an empty line 2"),
    Case("r2-06-metadata-labels-one-short", labelled([f"n{i}" for i in range(9)]), explain(),
         "metadata bbx.labels give 9 names but the model has 10 classes"),
    # 7: every floating option and spec field finite and in range
    Case("r2-07-gamma-nan", model_and_photo, explain("--gamma", "nan"), "gamma nan: each option must be a finite number"),
    Case("r2-07-lambda2-inf", model_and_photo, explain("--lambda2", "inf"), "lambda2 inf: each option must be a finite number"),
    Case("r2-07-beta-huge", model_and_photo, explain("--beta", "1e300"), "beta must be in [1, 10]"),
    Case("r2-07-std-tiny", model_and_photo, explain("--std", "1e-45,1,1"), "must stay within 1e+06"),
    Case("r2-07-uint8-mean-nan", lambda d: (photo(d), ob.build("uint8", d, name="model")),
         explain("--mean", "nan,0,0"), "three finite values"),
    Case("r2-07-sidecar-std-tiny", plain_with(metadata=None, sidecar={"preprocess": {"std": 1e-30}}), explain(),
         "must stay within"),
    # 8: nothing in evaluate's --out is opened through a link or a FIFO
    Case("r2-08-lock-link", _out_with((".lock", "link-outside")), evaluate_args(), "refusing lock file", 2,
         secret_unchanged),
    Case("r2-08-results-link", _out_with(("results.jsonl", "link-outside")), evaluate_args(), "symbolic link", 2,
         secret_unchanged),
    Case("r2-08-lock-fifo", _out_with((".lock", "fifo")), evaluate_args(), "it is a FIFO",
         skip=None if hasattr(os, "mkfifo") else "needs FIFOs"),
    # 9: records keyed by content; external data pinned in the settings
    Case("r2-09-photo-replaced", _evaluated_then(_replace_photo), evaluate_args(),
         "1 runs, 0 done before, 1 to do", 0),
    Case("r2-09-external-data-changed", _evaluated_then(_change_weights, base=_external_inside), evaluate_args(),
         "other settings (external_data)"),
    # 10: every size bounded before it is allocated
    Case("r2-10-budget-huge", model_and_photo, ("explain", "{in}/model.onnx", "{in}/image.png", "--method", "ftc",
                                                 "--budget", "1000000000", "--estimator", "nes", "--run-timeout", "4",
                                                 "--out", "out"),
         "the run took longer than --run-timeout 4 s", memory=1_500_000_000),
    Case("r2-10-static-batch-huge", graph_model(lambda g: g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED,
                                                                    out="logits"), [10**9, 3, ob.SIZE, ob.SIZE],
                                                [10**9, ob.CLASSES]),
         explain(), "static batch of 1,000,000,000 images"),
    Case("r2-10-input-8192-squared", graph_model(_mean_logits, ["N", 3, 8192, 8192], metadata=None), explain(),
         "above bbx's limit of 16,777,216"),
    Case("r2-10-declared-200m-classes", _declared_classes, explain(), "declares 200,000,000 classes"),
    Case("r2-10-labels-dev-zero", model_and_photo, explain("--labels", "/dev/zero"), "not a regular file",
         skip=None if os.path.exists("/dev/zero") else "needs /dev/zero"),
    Case("r2-10-labels-too-large", with_files(("labels.txt", b"a\n" * (9 * 2**20))),
         explain("--labels", "{in}/labels.txt"), "above bbx's limit of 16,777,216"),
    Case("r2-10-max-batch-huge", graph_model(_mean_logits, ["N", 3, "H", "W"], metadata=None),
         explain("--size", "4096", "--max-batch", "64"), "above bbx's limit of 1 GiB"),
    # 11: explain's outputs are one set: run id and hashes in a report written last; stale .tmp cleared
    Case("r2-11-stale-tmp-cleared", _out_with((".heatmap.png.k1ll3d.tmp", "half"), ("report.json", "OLD")),
         explain("--overwrite"), OK, 0, report_names_its_files),
    Case("r2-11-save-fails-midway", _out_with(("overlay.png", "folder"), ("report.json", "OLD")), explain("--overwrite"),
         "cannot write out/overlay.png", 2, old_report_gone),
    # 12: a bad record or photo does not block evaluate
    Case("r2-12-record-missing-field", _out_with(("results.jsonl", '{"image": "x", "method": "random", "seed": 0}\n')),
         evaluate_args(), "results.jsonl line 1: no field", 0, lines_kept),
    Case("r2-12-truncated-photo-skipped", _two_photos_one_truncated, evaluate_args(), "bbx: skipped: cannot read image",
         0, error_recorded),
    Case("r2-12-truncated-photo-strict", _two_photos_one_truncated, evaluate_args("--strict"), "cannot read image"),
    Case("r2-12-results-is-a-folder", _out_with(("results.jsonl", "folder")), evaluate_args(), "it is a folder"),
    # 13: scores checked on every call; batch against single in inspect
    Case("r2-13-probabilities-go-negative", scores_then(lambda g, z: _softmax_then(g, z, "negative")),
         explain(image="{in}/white.png"), "stopped being probabilities", 2, no_out),
    Case("r2-13-probabilities-all-zero", scores_then(lambda g, z: _softmax_then(g, z, "zero")),
         explain(image="{in}/white.png"), "stopped being probabilities"),
    Case("r2-13-batch-dependent", scores_then(_batch_dependent), ("inspect", "{in}/model.onnx"),
         "depend on the rest of the batch", 0),
    # 14: strict parsing
    Case("r2-14-ambiguous-name", labelled(["bird", "crane", "c2", "crane"] + [f"c{i}" for i in range(4, 10)]),
         explain("--target", "crane"), "'crane' is ambiguous: classes 1, 3"),
    Case("r2-14-sidecar-size-string", plain_with(metadata=None, sidecar={"preprocess": {"size": "16"}}), explain(),
         OK, 0, outputs_complete),  # "16" is 16 x 16 (bbx.preprocess.parse_size), never 1 x 6
    Case("r2-14-sidecar-mean-string", plain_with(metadata=None, sidecar={"preprocess": {"mean": "0.5"}}), explain(),
         "mean must be a number or a list of numbers, not '0.5'"),
    Case("r2-14-target-5000-digits", model_and_photo, explain("--target", "9" * 5000), "is out of range"),
    Case("r2-14-binary-model-named-json", lambda d: (photo(d), ob.build("plain", d, name="model"),
                                                     (d / "model.onnx").rename(d / "model.json")),
         ("inspect", "{in}/model.json"), "10 classes", 0),
    # 15: refusals create nothing; folders and FIFOs named as such; a damaged settings.json said so
    Case("r2-15-refused-explain-no-out", model_and_photo, explain("--target", "unicorn"), "unknown target", 2, no_out),
    Case("r2-15-image-is-a-folder", lambda d: (model(d), (d / "photos").mkdir()), explain(image="{in}/photos"),
         "is a folder, not a file"),
    Case("r2-15-model-is-a-fifo", lambda d: (photo(d), os.mkfifo(d / "model.onnx")), explain(),
         "is not a regular file", skip=None if hasattr(os, "mkfifo") else "needs FIFOs"),
    Case("r2-15-labels-fifo", lambda d: (model_and_photo(d), os.mkfifo(d / "labels.txt")),
         explain("--labels", "{in}/labels.txt"), "not a regular file", skip=None if hasattr(os, "mkfifo") else "FIFOs"),
    Case("r2-15-settings-damaged", _evaluated_then(_corrupt_settings), evaluate_args(), "is damaged"),
]


# -- round 3 (issue 34): builders and checks ---------------------------------------------------

MEM = 2_000_000_000  # the address-space limit (RLIMIT_AS) of every r3 case's bbx process
MPL = (("MPLCONFIGDIR", "{mpl}"),)  # a successful audit's matplotlib cache, kept out of the case folder


def _photos(d: Path, names: tuple[str, ...] = ("a.png", "b.png", "c.png"), copies: tuple[str, ...] = ()) -> None:
    """The model and ``d/p/`` holding distinct photos ``names`` and byte-identical ``copies`` of the first."""
    model(d)
    (d / "p").mkdir()
    for i, name in enumerate(names):
        photo(d / "p", name, size=(40 + i, 50))
    for name in copies:
        (d / "p" / name).write_bytes((d / "p" / names[0]).read_bytes())


def _photos_one_broken(d: Path, good: bool = True) -> None:
    _photos(d, ("a.png",) if good else ())
    truncated("broken.png", "PNG")(d / "p")


def one_record_per_photo(count: int) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        recs = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
        assert len({r["image_sha256"] for r in recs if "error" not in r}) == count, recs
        assert all("/img/" not in r["image"] for r in recs)  # none of the report's own pictures
    return check


def _gradient_jpeg(d: Path) -> None:
    """The model and an 8000 x 8000 (64-megapixel) JPEG, inside bbx's pixel limit."""
    model(d)
    y = np.linspace(0, 255, 8000, dtype=np.float32)
    a = np.empty((8000, 8000, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = y[:, None], y[None, :], 128
    Image.fromarray(a).save(d / "image.jpg", quality=85)


def wide_outputs(out: Path) -> None:
    """A 1 x 5,000,000 photo: every output but the photo-size PNGs, and the mask at the photo's size."""
    names = {p.name for p in out.iterdir()}
    assert OUTPUTS - {"photo_heatmap.png", "photo_overlay.png"} <= names, names
    assert not {"photo_heatmap.png", "photo_overlay.png"} & names, names
    assert np.load(out / "photo_mask.npy", mmap_mode="r").shape == (1, 5_000_000)


def no_token(text: str) -> None:
    assert TOKEN not in text and "TOKEN" not in text and "\u20ac" not in text and "€" not in text, text


def _raw_metadata(**props: str) -> Callable[[Path], None]:
    """The plain model with metadata properties written as given (not through json.dumps)."""
    def build(d: Path) -> None:
        photo(d)
        g = ob._Graph()
        g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED, out="logits")
        ob.save(g, [ob._vi("image", TensorProto.FLOAT, ["N", 3, ob.SIZE, ob.SIZE])],
                [ob._vi("logits", TensorProto.FLOAT, ["N", ob.CLASSES])], d / "model.onnx",
                metadata=ob.spec(), props_extra=props)
    return build


DEEP = "[" * 100_000 + "]" * 100_000


def _mpl_env(d: Path) -> dict[str, str]:
    return {**os.environ, "MPLCONFIGDIR": str(d.parent.parent / "mpl")}


def _audited_into_photo_folder(d: Path) -> None:
    """Three photos and a first audit whose --out lies inside their folder (its pictures are photos too)."""
    _photos(d)
    subprocess.run([*BBX, "audit", str(d / "model.onnx"), str(d / "p"), "--methods", "random", "--out",
                    str(d / "p" / "report"), "--quiet"], check=True, capture_output=True, timeout=300, env=_mpl_env(d))
    assert list((d / "p" / "report" / "img").glob("*.jpg"))


def _damage_phi_at_area(d: Path) -> None:
    path = d.parent / "work" / "out" / "results.jsonl"
    rec = json.loads(path.read_text().splitlines()[0])
    rec["phi_at_area"] = [[1.0, 2.0], [3.0]] + rec["phi_at_area"][2:]
    path.write_text(json.dumps(rec) + "\n")


def damaged_line_named_and_kept(out: Path) -> None:
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["phi_at_area"][0] == [1.0, 2.0]  # kept, and run again


def one_error_record(out: Path) -> None:
    recs = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert [r["image"].endswith("broken.png") for r in recs if "error" in r] == [True], recs


def phi_names_the_top1(out: Path) -> None:
    report = json.loads((out / "report.json").read_text())
    assert report["target"] != report["top1"], "the case needs a target that is not the top-1 class"


def _folding_bomb(g: "ob._Graph", z: str) -> None:
    """``logits`` = z + 0 * sum(ones(40000, 40000)): a 6 GiB tensor from constants alone, which
    onnxruntime would fold when it opens the model."""
    shape = g.const(np.array([40000, 40000], np.int64), "shape", np.int64)
    g.nodes.append(helper.make_node("ConstantOfShape", [shape], ["big"],
                                    value=numpy_helper.from_array(np.ones(1, np.float32))))
    g.op("Add", [z, g.op("Mul", [g.op("ReduceSum", ["big"], keepdims=0), g.const(0.0, "zero")])], out="logits")


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda d: (model_and_photo(d), os.mkfifo(d / name))


def audit_args(*extra: str, model_path: str = "{in}/model.onnx") -> tuple[str, ...]:
    return ("audit", model_path, "{in}/p", "--methods", "random", "--out", "out", "--quiet", *extra)


def predict_url(*extra: str) -> tuple[str, ...]:
    return ("predict", "{url}", "{in}/image.png", "--auth-env", "BBX_TOKEN", *extra)


def explain_url(*extra: str) -> tuple[str, ...]:
    return ("explain", "{url}", "{in}/image.png", "--auth-env", "BBX_TOKEN", "--out", "out", *extra)


R3_CASES = [
    # 1: byte-identical photos are one job, explained once and named in a warning
    Case("r3-01-duplicates-evaluate", lambda d: _photos(d, copies=("a-copy.png", "a-again.png")),
         evaluate_args(images="{in}/p"), "2 photos repeat another's content", 0, one_record_per_photo(3), memory=MEM),
    Case("r3-01-duplicates-audit", lambda d: _photos(d, copies=("a-copy.png",)), audit_args(),
         "1 photo repeats another's content", 0, one_record_per_photo(3), memory=MEM, env=MPL),
    # 2: photo-size outputs in bounded memory
    Case("r3-02-photo-64-megapixels", _gradient_jpeg, explain(image="{in}/image.jpg"), OK, 0, outputs_complete,
         memory=MEM),
    # (1 x 5,000,000 rather than the 1 x 50,000,000, which passes the same way in about 10 x the
    # time: too long beside the rest of the corpus on a loaded 2-core machine)
    Case("r3-02-photo-1x5000000", _anysize_and((1, 5_000_000)), explain(), OK, 0, wide_outputs,
         note="photo-size pictures not drawn", memory=MEM),
    # 3: the credential is never shown, whatever the server sends back
    Case("r3-03-token-in-error-field", model_and_photo, predict_url(), "answered with an error: credential rejected: ***",
         output=no_token, endpoint="error-echoes-token", memory=MEM),
    Case("r3-03-token-in-text-body", model_and_photo, predict_url(), "credential rejected: ***", output=no_token,
         endpoint="text-echoes-token", memory=MEM),
    Case("r3-03-token-not-ascii", model_and_photo, ("predict", "{url}", "{in}/image.png", "--auth-env", "EURO_TOKEN"),
         "outside printable ASCII", output=no_token, endpoint="honest", env=(("EURO_TOKEN", "s3cr3t-TOKEN-\u20ac42"),),
         memory=MEM),
    # 4: --timeout bounds the whole request; an answer's size is capped
    Case("r3-04-drip-feed", model_and_photo, predict_url("--timeout", "2", "--retries", "0"),
         "last: no answer within 2 s", output=no_token, endpoint="drip", memory=MEM),
    Case("r3-04-answer-announces-1-gb", model_and_photo, predict_url(), "above bbx's limit of 67,108,864",
         endpoint="huge-answer", memory=MEM),
    # 5: every answer checked, the endpoint blamed
    Case("r3-05-topk-negative-later", model_and_photo, explain_url(), "answered top-3 values that are not probabilities",
         2, no_out, endpoint="topk-negative-later", memory=MEM),
    Case("r3-05-topk-nan-later", model_and_photo, explain_url(), "answered NaN, infinite or non-numeric scores", 2,
         no_out, endpoint="topk-nan-later", memory=MEM),
    Case("r3-05-honest-topk-succeeds", model_and_photo, explain_url("--method", "random"), OK, 0, outputs_complete, endpoint="honest-topk",
         output=no_token, memory=MEM),
    # 6: audit never writes through a link inside --out
    Case("r3-06-audit-img-link", lambda d: (_photos(d), (d.parent / "work" / "out").mkdir(parents=True),
                                            os.symlink(d.parent / "outside", d.parent / "work" / "out" / "img")),
         audit_args(), "img: it is a symbolic link", 2, secret_unchanged, memory=MEM),
    Case("r3-06-audit-plots-link", lambda d: (_photos(d), (d.parent / "work" / "out").mkdir(parents=True),
                                              os.symlink(d.parent / "outside", d.parent / "work" / "out" / "plots")),
         audit_args(), "plots: it is a symbolic link", 2, secret_unchanged, memory=MEM),
    # 7: an audit whose --out lies in the photo folder never audits its own pictures
    Case("r3-07-audit-out-inside-photos", _audited_into_photo_folder,
         audit_args()[:5] + ("--out", "{in}/p/report", "--quiet"), "audit: 3 photos", 0, one_record_per_photo(3),
         memory=MEM, env=MPL),
    # 8: an unreadable photo is named; none readable is an error
    Case("r3-08-audit-names-unreadable", _photos_one_broken, audit_args(), "1 photo skipped (not in the report): "
         "cannot read image", 0, one_record_per_photo(1), memory=MEM, env=MPL),
    Case("r3-08-audit-none-readable", lambda d: _photos_one_broken(d, good=False), audit_args(),
         "none of the 1 photos could be read: cannot read image", memory=MEM),
    # 9: one bounded JSON reader: depth, number length
    Case("r3-09-sidecar-deep", with_files(("model.bbx.json", DEEP)), explain(), "nested deeper than 64 levels",
         memory=MEM),
    Case("r3-09-sidecar-5000-digits", with_files(("model.bbx.json", '{"preprocess": {"size": ' + "1" * 5000 + "}}")),
         explain(), "a number of 5,000 characters", memory=MEM),
    Case("r3-09-metadata-deep", _raw_metadata(**{"bbx.preprocess": DEEP}), explain(), "nested deeper than 64 levels",
         memory=MEM),
    Case("r3-09-metadata-labels-5000-digits", _raw_metadata(**{"bbx.labels": "[" + "9" * 5000 + "]"}), explain(),
         "a number of 5,000 characters", memory=MEM),
    Case("r3-09-labels-file-deep", with_files(("labels.json", DEEP)), explain("--labels", "{in}/labels.json"),
         "nested deeper than 64 levels", memory=MEM),
    Case("r3-09-answer-deep", model_and_photo, explain_url("--method", "occlusion"), "nested deeper than 64 levels",
         endpoint="deep-answer", memory=MEM),
    Case("r3-09-answer-401-digits", model_and_photo, explain_url("--method", "occlusion"),
         "a number of 401 characters", endpoint="long-number-answer", memory=MEM),
    Case("r3-09-metadata-answer-deep", model_and_photo, predict_url(), "nested deeper than 64 levels",
         endpoint="deep-metadata", memory=MEM),
    Case("r3-09-record-5000-digits", _out_with(("results.jsonl", '{"image": "x", "seed": ' + "1" * 5000 + "}\n")),
         evaluate_args(), "results.jsonl line 1: not JSON (a number of 5,000 characters", 0, memory=MEM),
    # 10: --spec and --auth-file are regular files of a bounded size, or refused before they are read
    Case("r3-10-spec-fifo", _fifo("spec.json"), explain("--spec", "{in}/spec.json"), "not a regular file",
         memory=MEM, skip=None if hasattr(os, "mkfifo") else "needs FIFOs"),
    Case("r3-10-spec-dev-zero", model_and_photo, explain("--spec", "/dev/zero"), "not a regular file", memory=MEM,
         skip=None if os.path.exists("/dev/zero") else "needs /dev/zero"),
    Case("r3-10-spec-17-mib", with_files(("spec.json", b" " * (17 * 2**20) + b"{}")),
         explain("--spec", "{in}/spec.json"), "above bbx's limit of 16,777,216", memory=MEM),
    Case("r3-10-auth-file-fifo", _fifo("token"), ("predict", "{url}", "{in}/image.png", "--auth-file", "{in}/token"),
         "not a regular file", endpoint="honest", memory=MEM, skip=None if hasattr(os, "mkfifo") else "needs FIFOs"),
    Case("r3-10-auth-file-dev-zero", model_and_photo, ("predict", "{url}", "{in}/image.png", "--auth-file", "/dev/zero"),
         "not a regular file", endpoint="honest", memory=MEM,
         skip=None if os.path.exists("/dev/zero") else "needs /dev/zero"),
    # 11: a damaged record is named by file and line; a batch-dependent model is said in explain too
    Case("r3-11-record-phi-at-area-damaged", _evaluated_then(_damage_phi_at_area), evaluate_args(),
         "results.jsonl line 1: field 'phi_at_area' is not a list of numbers", 0, damaged_line_named_and_kept,
         memory=MEM),
    Case("r3-11-constant-folding-bomb", scores_then(_folding_bomb), ("inspect", "{in}/model.onnx"),
         "is computed from constants alone and would take 6.0 GiB, above bbx's limit of 1 GiB", memory=MEM),
    Case("r3-11-batch-dependent-explain", scores_then(_batch_dependent), explain(), "depend on the rest of the batch",
         0, outputs_complete, memory=MEM),
    # 12: refusals that blame what the user gave
    Case("r3-12-pairs-with-greedy", model_and_photo, ("explain", "{in}/model.onnx", "{in}/image.png", "--pairs", "4",
                                                      "--out", "out"),
         "method rise_lead (the default) does not use pairs", 2, no_out, memory=MEM),
    Case("r3-12-ftc-seed-needs-nes", model_and_photo, ("explain", "{in}/model.onnx", "{in}/image.png", "--method",
                                                        "ftc", "--seed", "3", "--out", "out"),
         "does not use seed", 2, no_out, output=lambda t: ("with --estimator nes or spsa it does" in t) or
         pytest.fail(t), memory=MEM),
    Case("r3-12-nonfinite-names-the-flag", model_and_photo, explain("--lambda1", "nan"),
         "lambda1 nan: each option must be a finite number", memory=MEM),
    Case("r3-12-target-phi-is-top1s", model_and_photo, ("explain", "{in}/model.onnx", "{in}/image.png", "--method",
                                                        "random", "--target", "2", "--out", "out"),
         OK, 0, phi_names_the_top1, output=lambda t: ("phi of the top-1 class 'class 1'" in t) or pytest.fail(t),
         memory=MEM),
    Case("r3-12-sidecar-size-true", plain_with(metadata=None, sidecar={"preprocess": {"size": True}}), explain(),
         "size must be whole pixels, not True", memory=MEM),
    # 13: a refused audit writes nothing into ~; an unreadable photo is recorded once however often it is rerun
    Case("r3-13-refused-audit-leaves-home", lambda d: _photos(d), audit_args(model_path="{in}/missing.onnx"),
         "missing.onnx", memory=MEM),
    Case("r3-13-error-recorded-once", _evaluated_then(lambda d: None, base=_two_photos_one_truncated),
         evaluate_args(), "bbx: skipped: cannot read image", 0, one_error_record, memory=MEM),
]
CASES += R3_CASES


# -- running the corpus ------------------------------------------------------------------------

@dataclass
class Run:
    proc: subprocess.CompletedProcess
    before: dict[str, tuple]
    after: dict[str, tuple]
    out: Optional[Path]  # the --out folder (None for commands without one)
    root: Optional[Path] = None  # the case folder


def snapshot(root: Path, skip: Optional[Path]) -> dict[str, tuple]:
    """Every entry under ``root`` but ``skip``: kind and content (hash), link target or mode."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if skip is not None and (p == skip or skip in p.parents):
                continue
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                sig: tuple = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                sig = ("link", os.readlink(p))
            else:
                sig = ("dir" if stat.S_ISDIR(st.st_mode) else "other", stat.S_IMODE(st.st_mode))
            seen[str(p.relative_to(root))] = sig
    return seen


def run_case(case: Case, root: Path) -> Run:
    for sub in ("in", "outside", "work", "home/tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "outside" / "secret.txt").write_text(SECRET)
    case.build(root / "in")
    with (HostileEndpoint(case.endpoint) if case.endpoint else contextlib.nullcontext("")) as url:
        return _run_built(case, root, case.argv(root, url))


def _run_built(case: Case, root: Path, argv: list[str]) -> Run:
    out = None
    if "--out" in argv:  # the last one counts
        out = root / "work" / argv[len(argv) - argv[::-1].index("--out")]
    # a path given as --out that already exists and is not a folder must stay untouched too
    skip = out if out is not None and (out.is_dir() or not out.exists()) else None
    before = snapshot(root, skip)
    env = {**os.environ, "HOME": str(root / "home"), "TMPDIR": str(root / "home" / "tmp"), "BBX_TOKEN": TOKEN,
           **{k: v.replace("{mpl}", str(root.parent / "mpl")) for k, v in case.env}}

    def child() -> None:  # Ctrl-C as a terminal sends it, whatever this process ignores; a memory cap
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if case.memory:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (case.memory, case.memory))

    with subprocess.Popen([*BBX, *argv], cwd=root / "work", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, preexec_fn=child if os.name == "posix" else None) as p:
        if case.interrupt is not None:
            try:
                p.wait(case.interrupt)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
        try:
            stdout, stderr = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
    proc = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return Run(proc, before, snapshot(root, skip), out, root)


@pytest.fixture(scope="module")
def corpus(request, tmp_path_factory) -> dict[str, Future]:
    """The selected cases, a few at a time (mostly interpreter start-up); results by case id."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if getattr(item, "originalname", "") == "test_corpus" and hasattr(item, "callspec")}
    base = tmp_path_factory.mktemp("corpus")
    workers = min(8, (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = {c.id: pool.submit(run_case, c, base / c.id) for c in CASES if c.skip is None and c.id in selected}
        for f in runs.values():
            f.exception()  # wait; a case's own failure is raised in its own test
    for c in CASES:  # a read-only folder must not stop pytest from cleaning up
        out = base / c.id / "work" / "out"
        if c.build is read_only_out and out.is_dir() and not out.is_symlink():
            make_writable(out)
    return runs


def test_corpus_is_large_and_ids_are_unique():
    assert len(CASES) >= 40
    # every way in of issue 24 (round 2) has a case: r2-NN-...
    assert {int(c.id[3:5]) for c in CASES if c.id.startswith("r2-")} == set(range(1, 16))
    # every numbered item of issue 34 (round 3) has a case: r3-NN-...
    assert {int(c.id[3:5]) for c in CASES if c.id.startswith("r3-")} == set(range(1, 14))
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.skipif(bool(c.skip), reason=c.skip or ""))
                                  for c in CASES])
def test_corpus(case: Case, corpus: dict[str, Future]) -> None:
    run = corpus[case.id].result()
    proc = run.proc
    everything = proc.stdout + proc.stderr
    assert "Traceback" not in everything, everything
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if case.expect == OK:
        # a short run may find nothing or lower the target: said in "bbx: note:" lines, nothing else
        assert proc.returncode == 0 and all(ln.startswith("bbx: note: ") for ln in lines), (proc.returncode, proc.stderr)
        assert not case.note or any(case.note in ln for ln in lines), proc.stderr
        assert "wrote " in proc.stdout
    elif case.code == 0:  # a run that succeeds and says something (a warning, a skipped photo, a plan)
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
        assert case.expect in everything, everything
        assert "bbx: error" not in everything and "internal error" not in everything, everything
    else:
        plan = ("evaluate: ", "audit of ")  # evaluate's and audit's plan comes first, always
        lines = [ln for ln in lines if not ln.startswith(plan)]
        assert len(lines) == 1 and len(proc.stderr.strip().splitlines()) - len(
            [ln for ln in proc.stderr.splitlines() if ln.startswith(plan)]) == 1, \
            f"not one line on stderr:\n{proc.stderr}"
        line = lines[0]
        assert line.startswith("bbx: error: ") and len(line) > len("bbx: error: "), line
        assert case.expect in line, line
        assert "internal error" not in line, line
        assert proc.returncode == case.code, (proc.returncode, line)
    # nothing outside --out was created, changed or removed (inputs, "outside", HOME, TMPDIR, cwd)
    assert run.after == run.before, _diff(run.before, run.after)
    if run.out is not None and run.out.is_dir():
        stray = [p.name for p in run.out.iterdir() if p.name.endswith(".tmp")]
        assert not stray, f"temporary files left in --out: {stray}"
        for name in OUTPUTS & {p.name for p in run.out.iterdir() if p.is_file()}:
            complete(run.out / name)  # whatever was written, even by a run that failed later, is whole
    if case.check is not None:
        case.check(run.out)
    if case.output is not None:
        case.output(everything)
    if case.endpoint is not None:  # the credential appears in no output and no file the run left
        assert TOKEN not in everything
        leaked = [p for p in run.root.rglob("*") if p.is_file() and not p.is_symlink()
                  and TOKEN.encode() in p.read_bytes()]
        assert not leaked, leaked


def _diff(before: dict, after: dict) -> str:
    keys = sorted(set(before) | set(after))
    return "; ".join(f"{k}: {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k))


# -- external data that escapes the model's folder: refused before anything outside is opened ---

def _escaping_model(folder: Path, location: str) -> Path:
    external(location)(folder)
    return folder / "model.onnx"


@pytest.mark.parametrize("location", ["../outside/weights.bin", "{abs}", "weights.bin"])
def test_escaping_external_data_is_refused_before_any_file_outside_is_opened(tmp_path, monkeypatch, location):
    """Record every path Python opens while the model loads; onnxruntime must never start."""
    import onnxruntime

    import bbx.model

    (tmp_path / "in").mkdir()
    (tmp_path / "outside").mkdir()
    weights = tmp_path / "outside" / "weights.bin"
    if location == "weights.bin":  # a link inside the folder that points outside
        path = _escaping_model(tmp_path / "in", location)
        os.symlink(weights, tmp_path / "in" / "weights.bin")
    else:
        path = _escaping_model(tmp_path / "in", location.replace("{abs}", str(weights)))
    assert weights.is_file()

    opened: list[str] = []
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def spy(real):
        def wrapper(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)):
                opened.append(os.path.realpath(os.fsdecode(file)))
            return real(file, *args, **kwargs)
        return wrapper

    sessions: list[Any] = []

    def no_session(*args, **kwargs):
        sessions.append(args)
        raise AssertionError("onnxruntime was asked to load a model whose data lies outside its folder")

    monkeypatch.setattr(builtins, "open", spy(real_open))
    monkeypatch.setattr(io, "open", spy(real_io_open))
    monkeypatch.setattr(os, "open", spy(real_os_open))
    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    with pytest.raises(ModelError, match="outside the model's folder"):
        bbx.model.OnnxClassifier(path)
    monkeypatch.undo()
    assert str(path.resolve()) in opened  # the spy works: the model file itself was read
    assert not [p for p in opened if (tmp_path / "outside").resolve() in Path(p).parents], opened
    assert not sessions


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("where", ["outside-dotdot", "outside-absolute", "outside-link", "inside"])
def test_fifo_monitor_sees_no_open_outside(tmp_path, where):
    """End to end, whatever onnxruntime does itself: the data "file" is a FIFO whose writer end
    we hold open in a thread; that open returns only when someone opens the FIFO to read it.

    ``inside`` is the control: a FIFO inside the model's folder is allowed, onnxruntime opens
    it, and the monitor notices, so "not opened" above is a real observation.
    """
    d, outside = tmp_path / "in", tmp_path / "outside"
    d.mkdir()
    outside.mkdir()
    fifo = (d / "data.bin") if where == "inside" else (outside / "data.bin")
    location = {"outside-dotdot": "../outside/data.bin", "outside-absolute": str(outside / "data.bin"),
                "outside-link": "link.bin", "inside": "data.bin"}[where]
    path = _escaping_model(d, location)
    os.mkfifo(fifo)
    if where == "outside-link":
        os.symlink(fifo, d / "link.bin")

    opened, done = [], threading.Event()

    def watch() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens the FIFO
        if not done.is_set():
            opened.append(True)
        os.close(fd)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = subprocess.run([*BBX, "inspect", str(path)], capture_output=True, text=True, timeout=120)
    finally:
        done.set()
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # release the watcher
        watcher.join(10)
        os.close(fd)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    if where == "inside":
        assert opened, "control: onnxruntime should have opened the FIFO inside the model's folder"
        assert "onnxruntime cannot load" in proc.stderr
    else:
        assert not opened, "a file outside the model's folder was opened"
        assert "refusing model" in proc.stderr and "outside the model's folder" in proc.stderr


# -- atomic outputs ---------------------------------------------------------------------------

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from bbx._io import atomic_write

    def slow(fh):
        fh.write(b'{"half": "' + b"x" * 200000)
        fh.flush()
        print("half written", flush=True)
        time.sleep(120)
        fh.write(b'"}')

    atomic_write(sys.argv[1], slow)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("existing", [True, False], ids=["replacing", "new"])
def test_kill_during_atomic_write_leaves_old_file_or_none(tmp_path, existing):
    target = tmp_path / "report.json"
    old = json.dumps({"complete": True}) + "\n"
    if existing:
        target.write_text(old)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "half written"
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    if existing:
        assert target.read_text() == old
    else:
        assert not target.exists()
    # the half-written data lies only in a hidden temporary file beside it, never under the name
    others = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(n.startswith(".report.json.") and n.endswith(".tmp") for n in others), others


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupted"])
def test_failed_atomic_write_keeps_old_file_and_cleans_up(tmp_path, failure):
    from bbx._io import atomic_write

    target = tmp_path / "heatmap.png"
    target.write_bytes(b"old complete file")

    def half_then_fail(fh):
        fh.write(b"\x89PNG half")
        raise failure

    expected = BbxError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        atomic_write(target, half_then_fail)
    if expected is BbxError:
        assert str(info.value) == f"cannot write {target}: No space left on device"
    assert target.read_bytes() == b"old complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["heatmap.png"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    from bbx._io import atomic_write

    umask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.json", lambda fh: fh.write(b"{}"))
    finally:
        os.umask(umask)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)  # readable by group and others, not mkstemp's 0600


def test_csv_rows_follow_the_header_or_are_refused(tmp_path):
    """Benchmarks append rows to committed CSVs: a row in another key order lands under the right
    headings, and a row with other columns is refused instead of misaligned."""
    from bbx._io import append_csv_row

    path = tmp_path / "bench.csv"
    append_csv_row(path, {"model": "a", "ratio": 0.9})
    append_csv_row(path, {"ratio": 0.8, "model": "b"})
    assert path.read_text().splitlines() == ["model,ratio", "a,0.9", "b,0.8"]
    with pytest.raises(OutputError, match="has the columns"):
        append_csv_row(path, {"model": "c", "seconds": 1})
    assert path.read_text().splitlines() == ["model,ratio", "a,0.9", "b,0.8"]


@pytest.mark.parametrize("tool, args", [
    ("bench_explain.py", ["--model", "missing.onnx"]),
    ("bench_queries.py", ["missing.png"]),
    ("bench_gpu.py", ["--device", "cpu", "--models", "tiny", "--image", "missing.png"]),
    ("reference_whitebox.py", ["missing.png"]),
])
def test_tools_end_bad_input_with_one_line(tool, args, tmp_path):
    """The benchmark scripts take models and photos as well: bad ones end as in the CLI."""
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, str(root / "tools" / tool), *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: ") and "missing." in lines[0], run.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


# -- round 2: the parts the corpus reaches only through a whole run -----------------------------

def test_a_long_caption_is_cut_in_a_few_measurements():
    """A 5,000-character class name: bisection measures the caption about log2(room) times, and
    what is drawn fits its room and ends with what is always shown."""
    from PIL import ImageDraw

    from bbx.result import render

    canvas = Image.new("RGB", (400, 40), "white")
    draw = ImageDraw.Draw(canvas)
    font = render._font(14)
    measured, drawn = [], []
    real_length, real_text = draw.textlength, draw.text
    draw.textlength = lambda text, **kw: measured.append(text) or real_length(text, **kw)
    draw.text = lambda xy, text, **kw: drawn.append(text) or real_text(xy, text, **kw)
    render._centred(draw, "x" * 5000 + "\n\x1b[2J", 200, 0, 300, font, ": 42.0%")
    assert len(measured) <= 12, len(measured)
    assert drawn[0].endswith("...: 42.0%") and real_length(drawn[0], font=font) <= 300
    assert "\n" not in drawn[0] and "\x1b" not in drawn[0]


def test_a_budget_never_yields_more_pairs_than_pairs_may_be_given():
    from bbx.config import MAX_PAIRS, ExplainConfig
    from bbx.errors import OptionError

    iterations, pairs = ExplainConfig(budget=10**9).validate().plan()
    assert pairs <= ExplainConfig().max_pairs() <= MAX_PAIRS
    assert 2 + 2 * pairs * iterations <= 10**9
    with pytest.raises(OptionError, match="MiB per step"):
        ExplainConfig(pairs=90_000).validate()


def test_shown_escapes_what_a_terminal_acts_on():
    from bbx.cli.show import shown

    assert shown("tabby cat") == "tabby cat"
    assert shown("café") == "café"
    assert shown("\x1b]0;title\x07\nFORGED\u202e") == "\\x1b]0;title\\x07\\nFORGED\\u202e"


# -- round 3: what the corpus cannot reach through the console script ---------------------------

def test_r3_13_python_api_refuses_a_seed_ftc_does_not_read(tmp_path):
    """seed=0 is the default, and still a keyword the caller gave: refused as the CLI refuses
    --seed 0, naming the estimators under which ftc reads it."""
    import bbx
    from bbx.errors import OptionError

    image = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    with pytest.raises(OptionError, match="does not use seed .*with --estimator nes or spsa it does"):
        bbx.explain(str(model(tmp_path)), image, method="ftc", seed=0)
    bbx.explain(str(model(tmp_path)), image, method="ftc", seed=0, estimator="nes", iterations=1, pairs=1)


def test_r3_09_one_bounded_reader_says_what_is_wrong():
    from bbx._io import MAX_JSON_DEPTH, load_json

    assert load_json('{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}
    assert load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None  # the limit itself passes
    for text, said in [("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested deeper"),
                       ("[" * 100_000 + "]" * 100_000, "nested deeper"),
                       ("9" * 5000, "a number of 5,000 characters"), ("[1e" + "9" * 400 + "]", "a number of 402"),
                       (b"\xff\xfe{", "not UTF-8"), ("{}" + " " * 100, "above bbx's limit of 10")]:
        with pytest.raises(ValueError, match=said):
            load_json(text, limit=10 if said.startswith("above") else 2**20)
