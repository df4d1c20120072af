"""``bbx evaluate --ray``: a real local Ray cluster (started here, 2 CPUs) writes the lines of one process."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import bbx
import planted
from bbx.cli import main
from bbx.cli.evaluate import LOCAL, ray_argv
from bbx.config import ExplainConfig
from bbx.evaluation.runner import EvalConfig, evaluate, record_key

METHODS = "ftc,occlusion,random"


def keyed(path: Path) -> dict:
    """The file's lines by job, the clock aside; every job once."""
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    by_key = {record_key(r): {f: v for f, v in r.items() if f != "seconds"} for r in recs}
    assert len(by_key) == len(recs), "a job was written twice"
    return by_key


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    model = planted.build(d / "target.onnx", "target")
    paths = planted.photo_folder(d / "images", 4)
    return {"model": model, "images": d / "images", "paths": paths, "dir": d}


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def one_process(world, out: Path, iterations: int) -> dict:
    cfg = EvalConfig(methods=tuple(METHODS.split(",")), seeds=2, explain=ExplainConfig(iterations=iterations, estimator="nes"))
    with pytest.warns(RuntimeWarning, match="only go to the methods"):
        evaluate(bbx.OnnxClassifier(world["model"]), world["paths"], cfg, out)
    return keyed(out / "results.jsonl")


def test_ray_writes_the_lines_of_one_process(world, cluster, tmp_path, capsys):
    args = ["evaluate", str(world["model"]), str(world["images"]), "--methods", METHODS, "--seeds", "2",
            "--iterations", "6", "--estimator", "nes", "--quiet", "--out"]
    main([*args, str(tmp_path / "ray"), "--ray"])  # the cluster this process is connected to
    err = capsys.readouterr().err
    assert "20 runs, 0 done before, 20 to do" in err
    assert keyed(tmp_path / "ray" / "results.jsonl") == one_process(world, tmp_path / "one", 6)
    main([*args, str(tmp_path / "ray"), "--ray"])  # resumes: nothing left to do
    assert "20 done before, 0 to do" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker through /proc")
def test_a_worker_killed_mid_photo_costs_that_photo_a_retry_only(world, cluster, tmp_path):
    from bbx.evaluation.ray_engine import TASK, evaluate_on_ray

    cfg = EvalConfig(methods=tuple(METHODS.split(",")), seeds=2, explain=ExplainConfig(iterations=120, estimator="nes"))
    model = bbx.OnnxClassifier(world["model"])
    opener = functools.partial(bbx.OnnxClassifier, world["model"], threads=1)
    done: dict = {}
    run = threading.Thread(target=lambda: done.setdefault("outcome", evaluate_on_ray(
        model, opener, world["paths"], cfg, tmp_path / "ray")))
    with pytest.warns(RuntimeWarning, match="only go to the methods"):
        run.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and run.is_alive() and time.monotonic() < deadline:
            killed = _kill_one(f"ray::{TASK}".encode())
            time.sleep(0.01)
        run.join(timeout=300)
    assert killed is not None, "no worker was caught mid-photo: make the photos slower"
    outcome = done["outcome"]
    assert outcome.ran == 20 and outcome.done_before == 0
    assert keyed(tmp_path / "ray" / "results.jsonl") == one_process(world, tmp_path / "one", 120)


def _kill_one(title: bytes) -> int | None:
    """SIGKILL the first process whose title starts with ``title`` (a Ray worker running that task)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().startswith(title):
                    os.kill(int(pid), signal.SIGKILL)
                    return int(pid)
        except OSError:
            continue
    return None


def test_without_ray_the_flag_is_one_line(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where the extra is not installed
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(world["model"]), str(world["images"]), "--methods", "random", "--out",
              str(tmp_path / "o"), "--ray", "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("bbx: error: --ray needs Ray") and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "results.jsonl").exists()


@pytest.mark.parametrize("args,want", [
    (["evaluate", "m.onnx", "photos", "--ray"], ["evaluate", "m.onnx", "photos", "--ray", LOCAL]),
    (["evaluate", "--ray", "m.onnx", "photos"], ["evaluate", "--ray", LOCAL, "m.onnx", "photos"]),
    (["evaluate", "m.onnx", "photos", "--ray", "10.0.0.5:6379"], ["evaluate", "m.onnx", "photos", "--ray", "10.0.0.5:6379"]),
    (["evaluate", "m.onnx", "--ray", "auto", "photos"], ["evaluate", "m.onnx", "--ray", "auto", "photos"]),
    (["evaluate", "m.onnx", "--ray", "ray://head:10001"], ["evaluate", "m.onnx", "--ray", "ray://head:10001"]),
    (["evaluate", "m.onnx", "photos"], ["evaluate", "m.onnx", "photos"]),
])
def test_ray_takes_an_optional_address(args, want):
    assert ray_argv(args) == want


def test_an_address_nothing_answers_on_is_one_line(world, tmp_path, capsys):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(world["model"]), str(world["images"]), "--methods", "random", "--out",
              str(tmp_path / "o"), "--ray", f"127.0.0.1:{port}", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and err[-1].startswith(f"bbx: error: cannot reach the Ray cluster at 127.0.0.1:{port}")
