"""Mutation testing of the modules that hold bbx's core promises, outside CI.

Each module is mutated by mutmut (2.5.x: one small change at a time, a number +1, ``<`` -> ``<=``,
``and`` -> ``or``, a string wrapped in XX, a line removed, ...) and its own fast tests are run
against every mutant; a mutant they still pass "survived": either a test is missing, or the
mutant behaves exactly like the original (equivalent, listed in :data:`EQUIVALENT` with the
reason, and in docs/testing.md).

The mutants are made in a copy of the tracked files (``--workdir``, default a fresh temporary
folder): the working tree is never touched, and a test that runs ``bbx`` sees the mutated copy
through PYTHONPATH.

    pip install 'mutmut==2.5.1'
    python tools/mutation.py                    # every module: tens of minutes on 2 busy cores
    python tools/mutation.py config metrics     # some
    python tools/mutation.py --recheck config   # today's tests on the survivors of config's last run

Writes tools/results/mutation-MODULE.csv (one row a mutant) and tools/results/mutation.txt (the
score per module and every survivor, from all the modules' CSVs; ``--summary`` rebuilds it alone,
after a change to :data:`EQUIVALENT`). Modules can run at once in separate work folders.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tools" / "results"
PYTEST = "python -m pytest -x -q -p no:cacheprovider"
CAUGHT = ("killed", "timeout", "suspicious")  # mutmut's "suspicious": killed, but slowly

#: module -> (the file mutated, the tests that hold its promises: fast ones, no subprocess)
MODULES = {
    "config": ("bbx/config.py", "tests/test_budget_plan.py"),
    "resize": ("bbx/preprocess/resize.py",
               "tests/test_geometry.py tests/test_crop.py tests/test_preprocess_modes.py "
               "-k 'not command_line and not written_on_the_photo'"),
    "registry": ("bbx/methods/registry.py", "tests/test_refusal.py -k 'not bbx_ and not evaluate_refuses'"),
    "explain": ("bbx/explain.py", "tests/test_refusal.py -k 'not bbx_ and not evaluate_refuses'"),
    "metrics": ("bbx/result/metrics.py", "tests/test_metrics.py"),
}

#: (file, original line, mutated line), stripped -> why no test can tell the mutant from the original
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("bbx/explain.py",
     "if m != name and set(unused) <= methods.get(m).reads(replace(cfg, method=m))]",
     "if m != name and set(unused) < methods.get(m).reads(replace(cfg, method=m))]"):
        "a method's reads always hold 'method', which given() never lists as unused: a subset of them "
        "is always a proper one",
    ("bbx/config.py",
     'raise OptionError(f"budget {self.budget} is too small: one step needs {2 + 2 * (pairs or 1)} queries")',
     'raise OptionError(f"budget {self.budget} is too small: one step needs {2 + 2 * (pairs or 2)} queries")'):
        "pairs is set (at least 1) on both branches before this line: the `or` never picks its default",
    ("bbx/config.py",
     'f"{(self.pairs or 0) * 4 * self.mask_size ** 2 / 2**20:,.0f} MiB per step, above bbx\'s limit of "',
     'f"{(self.pairs or 1) * 4 * self.mask_size ** 2 / 2**20:,.0f} MiB per step, above bbx\'s limit of "'):
        "the line is shown only when pairs is set (its check passes when pairs is None)",
    ("bbx/config.py",
     "(self.pairs is None or not 1 <= self.mask_size <= 512 or self.pairs <= self.max_pairs(),",
     "(self.pairs is None or not 2 <= self.mask_size <= 512 or self.pairs <= self.max_pairs(),"):
        "differs only for mask size 1 with pairs above 100,000, refused either way by the pairs and mask "
        "size lines; only a third line (a nonsense '0 MiB per step') goes. The guard means 'a valid mask "
        "size' (2..512): the mutant is what was meant",
    ("bbx/config.py",
     "(self.pairs is None or not 1 <= self.mask_size <= 512 or self.pairs <= self.max_pairs(),",
     "(self.pairs is None or not 1 < self.mask_size <= 512 or self.pairs <= self.max_pairs(),"):
        "as the one before: 1 < size and 2 <= size are the same test on integers",
    ("bbx/preprocess/resize.py", "MAX_RESIZED_PIXELS = 4096 * 4096", "MAX_RESIZED_PIXELS = 4097 * 4096"):
        "a memory guard, not a promise: both paths give the same pixels within a grey level "
        "(test_a_huge_photo_is_cropped_from_its_region_alone) and the path at the limit is tested against "
        "the constant (test_the_whole_photo_is_resized_up_to_max_resized_pixels_and_no_further); where the "
        "limit sits, one row either way, changes only the memory a 16-megapixel resize takes",
    ("bbx/preprocess/resize.py", "MAX_RESIZED_PIXELS = 4096 * 4096", "MAX_RESIZED_PIXELS = 4096 * 4097"):
        "as the one before",
}

ANNOTATION = "an annotation only: under `from __future__ import annotations` it is a string nothing evaluates"


def equivalent_by_rule(path: str, original: str, mutant: str) -> str:
    """Why a mutant is equivalent by a rule that holds for any line (else ""): a change inside a type
    annotation of a module that never evaluates its annotations."""
    if "from __future__ import annotations" not in (ROOT / path).read_text():
        return ""
    try:
        before, after = ast.parse(original.split("  #")[0]).body, ast.parse(mutant.split("  #")[0]).body
    except SyntaxError:
        return ""
    if (len(before) == len(after) == 1 and isinstance(before[0], ast.AnnAssign) and isinstance(after[0], ast.AnnAssign)
            and ast.dump(before[0].target) == ast.dump(after[0].target)
            and ast.dump(before[0].value) == ast.dump(after[0].value)
            and ast.dump(before[0].annotation) != ast.dump(after[0].annotation)):
        return ANNOTATION
    return ""


def why_equivalent(path: str, original: str, mutant: str) -> str:
    return EQUIVALENT.get((path, original, mutant)) or equivalent_by_rule(path, original, mutant)


def copy_tree(dest: Path) -> None:
    """The tracked files (and untracked ones git does not ignore) of the working tree, into ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():  # bbx/_data/bundled -> ../../models: the same link in the copy
            if not (dest / rel).is_symlink():
                os.symlink(os.readlink(src), dest / rel)
        elif src.is_file():
            shutil.copy2(src, dest / rel)


def run_module(name: str, work: Path) -> list[dict]:
    path, tests = MODULES[name]
    cache = work / ".mutmut-cache"
    cache.unlink(missing_ok=True)
    # `import bbx` and the `bbx` script: the mutated copy. No bytecode: mutmut writes each mutant over
    # the last within the same second, often at the same size, and Python would take the stale .pyc
    # of the previous mutant for it (a mutant that cannot even compile then "survives")
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    for cache_dir in work.rglob("__pycache__"):
        shutil.rmtree(cache_dir)
    start = time.time()
    subprocess.run(["mutmut", "run", "--paths-to-mutate", path, "--tests-dir", "tests", "--no-progress", "--CI",
                    # mutmut 2 counts only exit status 1 as failed tests: pytest's 2 (a mutant that
                    # breaks the import, seen at collection) and 4 would count as survivors
                    "--runner", f'bash -c "{PYTEST} {tests} || exit 1"'], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"{name}: {time.time() - start:.0f} s", file=sys.stderr)
    return collect(name, work)


def collect(name: str, work: Path) -> list[dict]:
    """The rows of the mutmut cache in ``work`` (the last module run there)."""
    path, _ = MODULES[name]
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    db = sqlite3.connect(work / ".mutmut-cache")
    rows = db.execute("select m.id, m.status, l.line_number, l.line from Mutant m join Line l on m.line = l.id").fetchall()
    out = []
    for mutant, status, line, text in rows:
        status = status.removeprefix("ok_").removeprefix("bad_")
        if status in ("killed", "timeout"):  # the diff only for the rest (mutmut show is slow)
            key = (path, text.strip(), "")
        else:  # mutmut show reads the cache: never while a run is under way
            diff = subprocess.run(["mutmut", "show", str(mutant)], cwd=work, env=env, capture_output=True,
                                  text=True).stdout
            before = [d[1:].strip() for d in diff.splitlines() if d.startswith("-") and not d.startswith("---") and d[1:].strip()]
            after = [d[1:].strip() for d in diff.splitlines() if d.startswith("+") and not d.startswith("+++") and d[1:].strip()]
            key = (path, " / ".join(before), " / ".join(after))
        out.append({"module": name, "file": path, "id": mutant, "line": line + 1, "status": status,
                    "original": key[1], "mutant": key[2], "why": ""})
    return out


def recheck(name: str, work: Path) -> None:
    """Run the module's tests of today on each mutant that survived its last run (applied by hand from
    the CSV: the line as it was and as the mutant has it), and mark those they now kill."""
    path, tests = MODULES[name]
    csv_path = RESULTS / f"mutation-{name}.csv"
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    source = (work / path).read_text()
    for r in rows:
        lines = source.splitlines(keepends=True)
        index = int(r["line"]) - 1
        found = lines[index] if index < len(lines) else ""
        if found.strip() == r["original"]:  # one line (that may hold " / " itself)
            original, mutated = [r["original"]], [r["mutant"]] if r["mutant"] else []
        else:  # lines joined by " / ", a removed blank line aside
            original = [part for part in r["original"].split(" / ") if part]
            mutated = [part for part in r["mutant"].split(" / ") if part]
        if r["status"] != "survived" or len(original) != 1 or len(mutated) > 1:
            continue
        if found.strip() != original[0]:
            print(f"{name} #{r['id']}: line {r['line']} is no longer {r['original']!r}: run the module again",
                  file=sys.stderr)
            continue
        indent = found[:len(found) - len(found.lstrip())]
        lines[index] = indent + mutated[0] + "\n" if mutated else ""
        (work / path).write_text("".join(lines))
        try:
            failed = subprocess.run(["bash", "-c", f"{PYTEST} {tests}"], cwd=work, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0
        finally:
            (work / path).write_text(source)
        if failed:
            r["status"], r["why"] = "killed", "killed on recheck"
        print(f"{name} #{r['id']}: {r['status']}", file=sys.stderr)
    write_module(name, rows)


def score(rows: list[dict]) -> tuple[int, int, float]:
    """(killed, non-equivalent mutants, killed share in %)."""
    live = [r for r in rows if r["status"] != "equivalent"]
    # a mutant that hangs the tests, or makes them fail only after twice their time, is caught too
    killed = sum(r["status"] in CAUGHT for r in live)
    return killed, len(live), 100.0 * killed / max(1, len(live))


FIELDS = ["module", "file", "id", "line", "status", "original", "mutant", "why"]


def write_module(name: str, rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"mutation-{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_all() -> list[dict]:
    """Every module's rows from its last run, with today's list of equivalent mutants applied."""
    rows = []
    for name in MODULES:
        path = RESULTS / f"mutation-{name}.csv"
        if path.exists():
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    if r["status"] in ("survived", "equivalent"):
                        r["why"] = why_equivalent(r["file"], r["original"], r["mutant"])
                        r["status"] = "equivalent" if r["why"] else "survived"
                    rows.append(r)
    return rows


def summarise(rows: list[dict], note: str) -> None:
    lines = [f"# mutation testing, mutmut 2.5.1 ({note}); `python tools/mutation.py` writes this", ""]
    for name in dict.fromkeys(r["module"] for r in rows):
        mine = [r for r in rows if r["module"] == name]
        killed, live, pct = score(mine)
        eq = sum(r["status"] == "equivalent" for r in mine)
        lines.append(f"{name:9s} {MODULES[name][0]:28s} {len(mine):4d} mutants, {eq:3d} equivalent, "
                     f"{killed:4d}/{live:<4d} killed = {pct:5.1f} %")
    killed, live, pct = score(rows)
    lines += [f"{'all':9s} {'':28s} {len(rows):4d} mutants, {killed}/{live} non-equivalent killed = {pct:.1f} %", ""]
    for r in rows:
        if r["status"] not in CAUGHT:
            lines.append(f"{r['status']:10s} {r['file']}:{r['line']}  {r['original']}  ->  {r['mutant']}"
                         + (f"  [{r['why']}]" if r["why"] else ""))
    (RESULTS / "mutation.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--workdir", type=Path, help="where the mutated copy goes (default: a temporary folder)")
    parser.add_argument("--note", default="", help="what the machine was doing, for the results file")
    parser.add_argument("--summary", action="store_true", help="only rebuild mutation.txt from the modules' CSVs")
    parser.add_argument("--recheck", action="store_true", help="run today's tests on the last run's survivors only")
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        sys.exit(f"mutation: unknown module(s) {', '.join(unknown)}: modules are {', '.join(MODULES)}")
    if shutil.which("mutmut") is None:
        sys.exit("mutation: mutmut is not installed (pip install 'mutmut==2.5.1')")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bbx-mutation-"))
    copy_tree(work)
    for name in args.modules or ([] if args.summary else MODULES):
        if args.recheck:
            recheck(name, work)
        else:
            write_module(name, run_module(name, work))
    summarise(read_all(), args.note or f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
