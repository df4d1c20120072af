"""The shape of the code: bbx's modules import each other as a DAG, and a new method is one module.

The import graph is read from the source with ``ast`` (every import, at module level or inside a
function, except those under ``if TYPE_CHECKING:``), so a cycle held together by a lazy import
counts as the cycle it is.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bbx
import planted
from bbx.cli import main
from bbx.result.explanation import Explanation
from bbx.methods import Context, Method, register, unregister

PACKAGE = Path(bbx.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The bbx modules ``path`` imports (``from . import x`` counts as ``pkg.x`` when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):  # imports for type checkers only
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_and_reads_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert "bbx.methods.registry" in graph["bbx.methods.ftc"]  # from .registry import ...
    assert "bbx.methods.soft_mask" in graph["bbx.methods.ftc"]  # from . import soft_mask
    assert "bbx.result.render" in graph["bbx.result.explanation"]  # a lazy import inside a method counts
    assert "bbx.result.explanation" not in graph["bbx.methods.registry"]  # TYPE_CHECKING imports do not


def test_bbx_imports_form_a_dag():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_module_is_long_without_a_reason_at_its_top():
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 350 and "Longer than" not in text[:3000]:
            long.append(f"{path.relative_to(PACKAGE.parent)} ({text.count(chr(10))} lines)")
    assert not long, long


# -- a method of one's own: one module, one registry entry ---------------------------------------
def darkest_cell(ctx: Context, cfg: bbx.ExplainConfig) -> Explanation:
    """A toy method: blur the darkest quarter of the image (no model queries beyond X and Q)."""
    from bbx.maths.perturb import BlurSpec, Perturber

    h, w = ctx.image.shape[:2]
    quarters = [(slice(0, h // 2), slice(0, w // 2)), (slice(0, h // 2), slice(w // 2, w)),
                (slice(h // 2, h), slice(0, w // 2)), (slice(h // 2, h), slice(w // 2, w))]
    rows, cols = min(quarters, key=lambda q: ctx.image[q].mean())
    heatmap = np.zeros((h, w), np.float32)
    heatmap[rows, cols] = 1.0
    pert = Perturber(ctx.image, blur_spec=BlurSpec(cfg.sigma, cfg.kernel))
    perturbed = np.where(heatmap[..., None] > 0.6, pert.blurred, pert.image)
    return ctx.finish(mask=1.0 - heatmap, heatmap=heatmap, perturbed=perturbed, config={"method": "darkest"})


@pytest.fixture
def toy_method():
    register(Method(name="darkest", run=darkest_cell, options=(), seeded=False,
                    summary="the darkest quarter (a test's toy)", default_budget="2"))
    yield "darkest"
    unregister("darkest")


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    model = planted.build(d / "target.onnx", "target")
    photo = d / "photo.png"
    Image.fromarray(np.rint(planted.photo() * 255).astype(np.uint8)).save(photo)
    return model, photo


def test_a_registered_method_runs_through_explain_the_cli_and_evaluate(toy_method, planted_files, tmp_path, capsys):
    model, photo = planted_files
    e = bbx.explain(model, photo, method=toy_method)
    assert e.config["method"] == "darkest" and e.queries == 2  # the image and the perturbed image
    assert e.undesirable_ratio == pytest.approx(0.25)
    with pytest.raises(bbx.OptionError, match="darkest does not use iterations"):
        bbx.explain(model, photo, method=toy_method, iterations=3)

    main(["explain", str(model), str(photo), "--method", "darkest", "--out", str(tmp_path / "one"), "-q"])
    report = json.loads((tmp_path / "one" / "report.json").read_text())
    assert report["config"]["method"] == "darkest" and report["queries"] == 2

    main(["evaluate", str(model), str(photo), "--methods", "darkest,occlusion", "--out", str(tmp_path / "eval"), "-q"])
    records = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in records) == ["darkest", "occlusion"]
    assert "| darkest |" in (tmp_path / "eval" / "summary.md").read_text()
    capsys.readouterr()


def test_config_method_is_the_method_that_runs(planted_files):
    model, photo = planted_files
    e = bbx.explain(model, photo, config=bbx.ExplainConfig(method="random", seed=3))
    assert e.config["method"] == "random" and e.config["seed"] == 3
    with pytest.raises(bbx.OptionError, match="contradicts"):
        bbx.explain(model, photo, method="ftc", config=bbx.ExplainConfig(method="random"))


# -- the installed package, away from the repository ----------------------------------------------
@pytest.mark.slow  # builds and installs a wheel
@pytest.mark.skipif(not (PACKAGE.parent / "pyproject.toml").is_file(), reason="needs the source tree")
def test_a_plain_install_explains_from_an_empty_folder(tmp_path):
    """``pip install .`` (no editable link to the source) reaches the bundled model, labels and photo."""
    wheels, target, empty = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(PACKAGE.parent)], check=True,
                   capture_output=True, timeout=600)
    wheel = next(wheels.glob("bbx-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    code = ("import bbx, sys; assert bbx.__file__.startswith(sys.argv[1]), bbx.__file__; "
            "from bbx.cli import main; main(['explain', '--budget', '220', '--out', 'out', '-q'])")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=empty, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    spent = re.search(r"; (\d+) queries in", proc.stdout)
    assert "target 'tiger cat'" in proc.stdout and spent and int(spent.group(1)) <= 220, proc.stdout
    # the default method, rise_lead: RISE's masks, its lead windows, occlusion's cells, a few search steps;
    # and no convergence verdict
    assert proc.stdout.strip().splitlines()[-1].startswith("wrote "), proc.stdout
    assert json.loads((empty / "out" / "report.json").read_text())["config"]["method"] == "rise_lead"


# -- the layers ----------------------------------------------------------------------------------
def test_the_top_level_holds_the_entry_and_the_foundation_only():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 8, modules
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    for name in packages:  # each says in one line what it is for
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text(encoding="utf-8")))
        assert doc and doc.strip(), f"bbx/{name}/__init__.py has no docstring"


def test_only_the_model_package_names_the_onnx_classifier_and_nothing_probes_a_model():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        if not rel.startswith("model/") and rel != "__init__.py":
            assert "OnnxClassifier" not in text, f"bbx/{rel} names OnnxClassifier (open one with bbx.model.open_model)"
        assert not re.search(r"getattr\((model|m|self\.model|box|ctx\.model)\b", text), f"bbx/{rel} probes a model"


def test_no_function_is_longer_than_a_screen_without_saying_why():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                doc = ast.get_docstring(node) or ""
                if "long because" not in doc.lower():
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long, long
