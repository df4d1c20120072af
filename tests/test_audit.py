"""``bbx audit``: the report's contents from known records, resuming, escaping, and the page in a real
headless Chromium (every picture loads, nothing leaves the folder, no console error, a screenshot)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import planted
from browser import LOAD_ALL_IMAGES, Browser, find_chromium
from bbx.audit import audit, data, images
from bbx.evaluation.runner import EvalConfig, read_records
from bbx.config import ExplainConfig
from bbx.model import OnnxClassifier

pytest.importorskip("matplotlib", reason="bbx audit needs the report extra (matplotlib, rich)")

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = ROOT / "models" / "samples"
NASTY = ['<script>alert("x")</script>', 'rival & "co" <b>', "o'ther <img src=x onerror=alert(1)>"]


@pytest.fixture(scope="module")
def planted_world(tmp_path_factory):
    """The planted ``target`` model, hostile class names for it, and four photos (one with a hostile name)."""
    d = tmp_path_factory.mktemp("audit")
    model = planted.build(d / "target.onnx", "target")
    (d / "labels.json").write_text(json.dumps(NASTY))
    photos = d / "photos"
    photos.mkdir()
    for i, name in enumerate(["a.png", "b.png", "c.png", 'd"<i>&.png']):
        faint = 0.5 + 0.5 * (planted.photo(seed=i) - 0.5)  # texture in A costs class 0 about 0.9 of its logit 2: still top-1
        Image.fromarray(np.rint(faint * 255).astype(np.uint8)).save(photos / name)
    return {"model": model, "labels": d / "labels.json", "photos": photos}


def _run(args, cwd=None):
    return subprocess.run(["bbx", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


# -- what the page says, from records whose answer is known -------------------------------------

def _rec(method, top1, after, areas=(0.5, 1.0, 2.0, 5.0), **kw):
    return {"image": "/p/x.png", "method": method, "seed": 0, "top1": top1, "areas": list(areas),
            "top1_at_area": list(after), **kw}


def test_fragile_is_the_smallest_area_up_to_2_percent_under_any_method():
    labels = ["cat", "dog", "fox"]
    assert data.fragile([_rec("ftc", 0, [0, 0, 0, 1])], labels) == (None, True)  # flips at 5%: not fragile
    assert data.fragile([_rec("ftc", 0, [0, 0, 2, 1]), _rec("occlusion", 0, [0, 1, 1, 1])], labels) == \
        ("1% occlusion \u2192 dog", True)
    old = {"image": "/p/x.png", "method": "ftc", "seed": 0, "top1": 0, "areas": [0.5]}  # before top1_at_area
    assert data.fragile([old], labels) == (None, False)


def test_convergence_reads_a_convergence_record_first_then_the_loss_trend():
    falling = list(np.linspace(1.0, -1.0, 21))
    flat = list(np.r_[np.linspace(1.0, -1.0, 11), np.full(10, -1.0)])
    assert data.convergence({"loss_trend": falling}) == ("loss 1 \u2192 -1, still falling", False)
    assert data.convergence({"loss_trend": flat}) == ("loss 1 \u2192 -1, flat at the end", True)
    assert data.convergence({"loss_trend": falling[::-1]})[1] is False  # rose
    assert data.convergence({"loss_trend": []}) == ("\u2014", None)  # occlusion: nothing optimised
    rec = {"loss_trend": falling, "convergence": {"objective_start": 0.5, "objective_end": 0.2}}
    assert data.convergence(rec) == ("objective 0.5 at M=1 \u2192 0.2", True)
    rec["convergence"]["converged"] = False
    assert data.convergence(rec)[1] is False


def test_convergence_reads_evaluates_columns_and_gives_a_search_no_verdict():
    """bbx evaluate's records carry the verdict in flat columns; greedy's trail of target probabilities
    (falling as a loss would) is a search, and its empty columns say so: no verdict, not 'still falling'."""
    falling = list(np.linspace(1.0, -1.0, 21))
    ftc = {"loss_trend": falling, "objective_at_ones": -0.38, "objective_final": -0.4, "converged": True, "noise": 0.0}
    assert data.convergence(ftc) == ("objective -0.38 at M=1 \u2192 -0.4", True)
    assert data.convergence(ftc | {"converged": False})[1] is False
    greedy = {"loss_trend": falling, "objective_at_ones": None, "objective_final": None, "converged": None,
              "noise": None}
    assert data.convergence(greedy) == ("\u2014", None)


def test_class_mean_map_shows_the_planted_patch(planted_world, tmp_path):
    """Occlusion with 4 px cells (A is 12 px, on that grid) finds patch A on every photo: the class's mean
    map is bright there and dark elsewhere, though the photos are textured in B and C too."""
    model = OnnxClassifier(planted_world["model"])
    photos = sorted(planted_world["photos"].glob("*.png"))
    config = EvalConfig(methods=("occlusion",), seeds=1, explain=ExplainConfig(patch=4))
    result = audit(model, photos, config, tmp_path / "out")
    (group,) = result.report.classes  # class 0 is every photo's top-1
    assert group.name == "target" and len(group.rows) == len(photos)
    mean = np.mean([images.heatmap(r.record) for r in group.rows], axis=0)
    inside = planted.patch_mask(planted.A)
    assert mean[inside].mean() > 0.5 and mean[~inside].mean() < 0.05, (mean[inside].mean(), mean[~inside].mean())
    shown = np.asarray(Image.open(tmp_path / "out" / result.report.class_images[group.name]).convert("L"), float)
    assert shown[inside].mean() > shown[~inside].mean() + 60  # the file drawn is that map


def test_rerun_resumes_runs_only_the_new_photo_and_keeps_the_pictures(planted_world, tmp_path):
    model = OnnxClassifier(planted_world["model"])
    photos = sorted(planted_world["photos"].glob("*.png"))
    config = EvalConfig(methods=("ftc", "occlusion"), seeds=1, explain=ExplainConfig(iterations=3, pairs=2, estimator="nes"))
    out = tmp_path / "out"
    first = audit(model, photos[:2], config, out)
    assert first.outcome.ran == 4
    pictures = {p: p.stat().st_mtime_ns for p in (out / "img").glob("*-photo.jpg")}
    assert len(pictures) == 2
    second = audit(model, photos[:3], config, out)
    assert (second.outcome.done_before, second.outcome.ran) == (4, 2)
    assert all(p.stat().st_mtime_ns == t for p, t in pictures.items())  # not redrawn
    assert len(list((out / "img").glob("*-photo.jpg"))) == 3
    assert len(read_records(out / "results.jsonl")) == 6
    assert len(second.report.gallery) == 3 and "3 photos" in second.report.summary


# -- the page: escaping, self-containedness, the CLI ----------------------------------------------

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_cli_audit_escapes_untrusted_strings_and_points_only_inside_its_folder(planted_world, tmp_path):
    out = tmp_path / "out"
    proc = _run(["audit", planted_world["model"], planted_world["photos"], "--labels", planted_world["labels"],
                 "--methods", "ftc,occlusion", "--budget", "20", "--out", out, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-2].startswith("audit: 4 photos") and lines[-1] == f"report: {out / 'index.html'}"
    page = (out / "index.html").read_text()
    for name in NASTY:
        assert name not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "d&quot;&lt;i&gt;&amp;.png" in page
    parser = _Tags()
    parser.feed(page)
    assert [t for t, _ in parser.tags].count("script") == 2  # bbx's own two, nothing from a label
    handlers = {v for _, a in parser.tags for k, v in a.items() if k.startswith("on")}
    assert handlers <= {"bbxBroken(this)", "return false"}, handlers
    refs = [a[k] for _, a in parser.tags for k in ("src", "href") if k in a]
    assert refs and all(r.startswith("#") or not (":" in r or r.startswith("/")) for r in refs), refs
    assert all((out / r).is_file() for r in refs if not r.startswith("#")), "a picture the page names is missing"
    assert "--budget 20" in page  # the exact command, in the model card


def test_bad_input_is_one_line(planted_world, tmp_path):
    for args, fragment in ((["--methods", "ftc,nope"], "methods"), (["--seeds", "0"], "seeds")):
        proc = _run(["audit", planted_world["model"], planted_world["photos"], *args, "--out", tmp_path / "o"])
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and fragment in proc.stderr, proc.stderr
    proc = _run(["audit", planted_world["model"], tmp_path / "nowhere"])
    assert proc.returncode == 2 and proc.stderr.startswith("bbx: error: no such"), proc.stderr


def test_explain_html_writes_the_one_photo_page_and_notebooks_get_a_png(planted_world, tmp_path):
    photo = sorted(planted_world["photos"].glob("*.png"))[0]
    proc = _run(["explain", planted_world["model"], photo, "--labels", planted_world["labels"], "--html",
                 "--out", tmp_path, "-q"])  # the default method, rise_lead
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "index.html").read_text()
    assert 'src="photo.png"' in page and 'src="overlay.png"' in page and 'src="perturbed.png"' in page
    assert (tmp_path / "photo.png").is_file() and "id=classes" not in page
    assert NASTY[0] not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert '<td class="">\u2014</td>' in page and "falling" not in page and "flat at the end" not in page  # a search
    soft = _run(["explain", planted_world["model"], photo, "--labels", planted_world["labels"], "--method", "ftc",
                 "--iterations", "3", "--pairs", "2", "--estimator", "nes", "--html", "--out", tmp_path / "ftc", "-q"])
    assert soft.returncode == 0, soft.stderr
    assert "objective " in (tmp_path / "ftc" / "index.html").read_text()  # the soft mask's verdict, J at both ends

    import io

    import bbx

    e = bbx.explain(OnnxClassifier(planted_world["model"]), photo, method="ftc", iterations=2, pairs=1, estimator="nes")
    png = e._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size[0] > 3 * planted.SIZE  # three panels side by side


# -- the real browser -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    return exe


@pytest.fixture(scope="module")
def bundled_report(tmp_path_factory):
    """The bundled model on its three photos: F-TC, occlusion (198 queries) and random at a budget of 200."""
    out = tmp_path_factory.mktemp("bundled") / "audit"
    proc = _run(["audit", BUNDLED, SAMPLES, "--budget", "200", "--out", out, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    return out


def test_report_opens_in_headless_chromium(chromium, bundled_report, tmp_path):
    page = bundled_report / "index.html"
    with Browser(chromium, width=1400, height=900) as b:
        b.open(page.as_uri())
        loaded = b.js(LOAD_ALL_IMAGES)
        # 3 rows x 3 pictures, 3 class thumbnails (the rows' overlays again) and 3 class maps, 4 plots
        assert loaded == {"count": 19, "broken": [], "marked": 0}, loaded
        urls = b.requested_urls()
        assert urls and all(u.startswith(bundled_report.as_uri() + "/") or u == page.as_uri() for u in urls), urls
        assert len(set(urls)) == 1 + 9 + 3 + 4  # the page and each picture file
        assert b.console_errors() == []
        shot = b.screenshot(tmp_path / "audit.png")
        assert Image.open(shot).size[1] > 1500
        if os.environ.get("BBX_ARTIFACTS"):
            Path(os.environ["BBX_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["BBX_ARTIFACTS"]) / "audit.png")

        # sorting by φ orders the rows; filtering by class hides the others
        order = b.js("""(() => { document.querySelector('th[data-col="5"]').click();
            return Array.from(document.querySelectorAll('#gallery-table tbody tr')).map(r => +r.dataset.phi); })()""")
        assert order == sorted(order) and len(order) == 3
        shown = b.js("""(() => { const s = document.getElementById('f-class'); s.value = s.options[1].value;
            s.dispatchEvent(new Event('change'));
            return [Array.from(document.querySelectorAll('#gallery-table tbody tr')).filter(r => !r.hidden).length,
                    document.getElementById('f-count').textContent]; })()""")
        assert shown == [1, "1 of 3 photos"]


def test_a_missing_picture_is_caught(chromium, bundled_report, tmp_path):
    """The checks above can fail: a report whose picture was deleted shows it, in the page and the console."""
    copy = tmp_path / "copy"
    shutil.copytree(bundled_report, copy)
    victim = next((copy / "img").glob("*-overlay.jpg"))
    victim.unlink()
    with Browser(chromium) as b:
        b.open((copy / "index.html").as_uri())
        loaded = b.js(LOAD_ALL_IMAGES)
        assert loaded["broken"] and all(s.endswith(victim.name) for s in loaded["broken"])
        assert loaded["marked"] == len(loaded["broken"])
        assert b.js("document.getElementById('broken').hidden") is False
        assert any(victim.name in e for e in b.console_errors())


def test_progress_bar_with_time_left_on_a_terminal(planted_world, tmp_path):
    """On a terminal (a pty here) the run shows rich's bar: runs done of the total and the time left."""
    import pty

    cmd = ["bbx", "audit", str(planted_world["model"]), str(planted_world["photos"]), "--methods", "ftc,occlusion",
           "--budget", "80", "--out", str(tmp_path / "out")]
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the pty
        os.execvp(cmd[0], cmd)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "8/8" in text and "left" in text and "0:00:0" in text, text  # 4 photos x 2 methods done, a time left
    assert "report: " in text
