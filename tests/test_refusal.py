"""An option a method does not use is refused, never silently dropped: on every path.

The paths: a keyword of :func:`bbx.explain`, a field of the ``config=`` it is given (with the method
named beside it, in the config, or not at all), ``bbx explain``'s options, and ``bbx evaluate`` (the
Python call and the command), where an option no listed method reads is refused.

What each method reads is written here by hand from its documentation (README, ``--help``), not
read from the registry: a registry that dropped or added a field must fail these tests.
"""

from __future__ import annotations

import dataclasses
import subprocess
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

import bbx
import planted
from bbx.config import ExplainConfig
from bbx.errors import OptionError
from bbx.evaluation.runner import EvalConfig, evaluate
from bbx.explain import resolve

COMMON = {"budget", "sigma", "kernel"}
#: the paper's optimisation: with the active estimator (the default), and with nes or spsa, which
#: also draw random directions (seed, pairs, resolution) and step with Adam (step, lr, beta1)
SOFT_ACTIVE = COMMON | {"iterations", "estimator", "lambda1", "lambda2", "beta", "gamma", "mask_size", "query_path"}
SOFT_RANDOM = SOFT_ACTIVE | {"seed", "pairs", "step", "resolution", "lr", "beta1"}
READS = {  # method -> (reads with the active estimator, reads with nes)
    "greedy": (COMMON | {"patch", "stride", "window", "area"},) * 2,
    "occlusion": (COMMON | {"patch"},) * 2,
    "rise": (COMMON | {"mask_size", "seed"},) * 2,
    "rise_lead": (COMMON | {"patch", "stride", "window", "area", "mask_size", "seed"},) * 2,
    "random": (COMMON | {"mask_size", "seed"},) * 2,
    "ftc": (SOFT_ACTIVE, SOFT_RANDOM),
    "fntc": (SOFT_ACTIVE, SOFT_RANDOM),
    "plain": (SOFT_ACTIVE - {"gamma"}, SOFT_RANDOM - {"gamma"}),
}
ORDER = ("ftc", "fntc", "plain", "greedy", "rise", "rise_lead", "occlusion", "random")  # as registered: the hint's order
#: a valid value away from the default for every field
VALUES = {"budget": 500, "seed": 4, "sigma": 3.0, "kernel": 7, "mask_size": 14, "iterations": 5, "pairs": 4,
          "estimator": "nes", "step": 0.2, "resolution": 7, "lr": 0.05, "beta1": 0.9, "lambda1": 1.0,
          "lambda2": 2.0, "beta": 3.0, "gamma": 0.5, "query_path": "numpy", "patch": 8, "area": 0.2,
          "stride": 4, "window": 8}
RANDOM_ONLY = {"pairs", "resolution"}  # the active estimator refuses these itself (bbx.config)


def reads(method: str, given: dict) -> set[str]:
    return READS[method][given.get("estimator", "active") != "active"]


def given_for(field: str) -> dict:
    return {field: VALUES[field], **({"estimator": "nes"} if field in RANDOM_ONLY else {})}


def refusal(method: str, given: dict, default: bool = False) -> str:
    """The line bbx gives, from the tables above."""
    unused = sorted(set(given) - reads(method, given))
    estimator = given.get("estimator", "active")
    # this method under another estimator first (ftc takes a seed with nes or spsa), then other methods
    # under this estimator, then other methods under any
    estimators = [e for e in ("active", "nes", "spsa") if e != estimator
                  and set(unused) <= READS[method][e != "active"]]
    others = [m for m in ORDER if m != method and set(unused) <= reads(m, given)]
    if not others:
        others = [m for m in ORDER if m != method and any(set(unused) <= r for r in READS[m])]
    hint = (f"; with --estimator {' or '.join(estimators)} it does" if estimators else
            f"; {others[0]} does: name it as the method" if len(others) == 1 else
            f"; {', '.join(others)} do: name one as the method" if others else "")
    return (f"method {method}{' (the default)' if default else ''} does not use {', '.join(unused)} "
            f"(it reads {', '.join(sorted(reads(method, given)))}){hint}")


CASES = [(m, f) for m in ORDER for f in VALUES if f not in reads(m, given_for(f))]
ACCEPTED = [(m, f) for m in ORDER for f in VALUES if f in reads(m, given_for(f))]


def test_the_tables_cover_every_field_and_method():
    assert set(VALUES) == {f.name for f in fields(ExplainConfig)} - {"method"}
    assert bbx.methods.names() == ORDER
    assert all(v != f.default for f in fields(ExplainConfig) if (v := VALUES.get(f.name)) is not None)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return bbx.OnnxClassifier(planted.build(tmp_path_factory.mktemp("m") / "target.onnx", "target"))


@pytest.mark.parametrize("method,field", CASES, ids=[f"{m}-{f}" for m, f in CASES])
def test_an_unused_option_is_refused_as_keyword_and_in_config(model, method, field):
    given = given_for(field)
    line = refusal(method, given)
    before = model.queries
    with pytest.raises(OptionError) as kw:
        bbx.explain(model, planted.photo(), method=method, **given)
    with pytest.raises(OptionError) as in_config:
        bbx.explain(model, planted.photo(), config=ExplainConfig(method=method, **given))
    with pytest.raises(OptionError) as beside:
        bbx.explain(model, planted.photo(), method=method, config=ExplainConfig(**given))
    with pytest.raises(OptionError) as mixed:  # half in the config, half as keywords
        first, *rest = sorted(given)
        bbx.explain(model, planted.photo(), method=method, config=ExplainConfig(**{first: given[first]}),
                    **{k: given[k] for k in rest})
    assert str(kw.value) == str(in_config.value) == str(beside.value) == str(mixed.value) == line
    assert model.queries == before  # refused before any query


@pytest.mark.parametrize("method,field", ACCEPTED, ids=[f"{m}-{f}" for m, f in ACCEPTED])
def test_an_option_the_method_reads_is_kept(method, field):
    given = given_for(field)
    for cfg in (resolve(method, None, given), resolve(None, ExplainConfig(method=method, **given), {}),
                resolve(method, ExplainConfig(**given), {})):
        assert cfg.method == method and cfg.given() == given


def test_the_default_method_says_so_and_names_where_the_option_belongs(model):
    for how in ({"iterations": 5}, {"config": ExplainConfig(iterations=5)}):
        with pytest.raises(OptionError) as err:
            bbx.explain(model, planted.photo(), **how)
        assert str(err.value) == refusal("rise_lead", {"iterations": 5}, default=True)
        assert str(err.value).endswith("; ftc, fntc, plain do: name one as the method")


def test_the_cases_named_in_issue_36(model):
    with pytest.raises(OptionError, match=r"^method greedy does not use iterations \(it reads area, budget, "):
        bbx.explain(model, planted.photo(), method="greedy", config=ExplainConfig(iterations=5))
    with pytest.raises(OptionError, match=r"^method occlusion does not use seed \(it reads budget, kernel, patch, "
                                          r"sigma\); rise, rise_lead, random do: name one as the method$"):
        bbx.explain(model, planted.photo(), config=ExplainConfig(method="occlusion", seed=4))
    # the same option with a random estimator goes to ftc: the seed changes its answer there
    assert resolve("ftc", ExplainConfig(seed=4, estimator="nes"), {}).seed == 4
    with pytest.raises(OptionError, match=r"^method ftc does not use seed \(it reads "):
        resolve("ftc", ExplainConfig(seed=4), {})  # active draws nothing


def test_unknown_options_and_contradicting_methods_are_refused():
    with pytest.raises(OptionError, match=r"^unknown option\(s\) colour, size; options are the fields of ExplainConfig$"):
        resolve("greedy", None, {"size": 3, "colour": 1, "budget": 100})
    with pytest.raises(OptionError, match=r"^method 'ftc' contradicts the config's method 'greedy': give one$"):
        resolve("ftc", ExplainConfig(method="greedy"), {})
    assert resolve("GREEDY ", ExplainConfig(method="greedy"), {}).method == "greedy"  # the same method, spelt
    assert resolve(None, None, {"method": "rise"}).method == "rise"
    assert resolve(None, None, {}).method == "rise_lead"
    with pytest.raises(OptionError, match="^unknown method 'nope': methods are ftc, fntc, plain, greedy, rise, rise_lead, occlusion, random$"):
        resolve("nope", None, {})


def test_an_invalid_value_is_refused_before_the_unused_check():
    with pytest.raises(OptionError, match=r"^iterations must be in 1..1,000,000, not 0$"):
        resolve("ftc", None, {"iterations": 0})


# -- the command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    path = planted.build(folder / "target.onnx", "target")
    photo = folder / "photo.png"
    Image.fromarray((planted.photo() * 255).astype(np.uint8)).save(photo)
    return path, photo


@pytest.mark.parametrize("args,method,given", [
    (["--method", "greedy", "--iterations", "5"], "greedy", {"iterations": 5}),
    (["--method", "occlusion", "--seed", "4"], "occlusion", {"seed": 4}),
    (["--method", "rise", "--area", "0.2"], "rise", {"area": 0.2}),
    (["--method", "ftc", "--patch", "8"], "ftc", {"patch": 8}),
])
def test_bbx_explain_refuses_an_unused_option_in_one_line_and_writes_nothing(files, tmp_path, args, method, given):
    path, photo = files
    out = tmp_path / "out"
    proc = subprocess.run(["bbx", "explain", str(path), str(photo), "--out", str(out), "--quiet", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"bbx: error: {refusal(method, given)}\n"
    assert not out.exists()


def test_evaluate_refuses_an_option_no_listed_method_reads(model, files, tmp_path):
    path, photo = files
    out = tmp_path / "eval"
    for explain_cfg, methods, unread in ((ExplainConfig(iterations=5), ("greedy", "occlusion"), "iterations"),
                                         (ExplainConfig(seed=4, area=0.2), ("greedy",), "seed"),
                                         (ExplainConfig(patch=8, window=8), ("occlusion", "rise"), "window")):
        with pytest.raises(OptionError) as err:
            evaluate(model, [photo], EvalConfig(methods=methods, explain=explain_cfg), out)
        assert str(err.value) == f"no method of {','.join(methods)} uses {unread}"
    assert not out.exists()
    proc = subprocess.run(["bbx", "evaluate", str(path), str(photo), "--methods", "greedy,rise", "--iterations", "5",
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "bbx: error: no method of greedy,rise uses iterations\n"
    assert not out.exists()


def test_evaluate_gives_an_option_to_the_methods_that_read_it_alone():
    cfg = EvalConfig(methods=("greedy", "occlusion", "rise"), explain=ExplainConfig(patch=8, seed=9, window=4)).validate()
    assert cfg.unused_by() == {"greedy": ["seed"], "occlusion": ["seed", "window"], "rise": ["patch", "window"]}
    assert cfg.for_method("greedy", 0) == ExplainConfig(method="greedy", patch=8, window=4)
    assert cfg.for_method("occlusion", 0) == ExplainConfig(method="occlusion", patch=8)
    assert cfg.for_method("rise", 2) == ExplainConfig(method="rise", seed=2)  # its run's seed


# -- the registry itself -------------------------------------------------------------------------
NEEDS = {"ftc": "scores", "fntc": "scores", "plain": "scores", "rise": "scores",  # they read every class
         "greedy": "topk", "rise_lead": "topk", "occlusion": "topk", "random": "topk"}  # the target's probability alone


WORDS = {"scores": "every class's score", "topk": "only the top-k classes"}


class Reveals:
    """A stand-in that says only how much its answers reveal: check_reveals reads nothing else."""

    def __init__(self, reveals: str):
        self.reveals = reveals


def test_a_model_that_reveals_too_little_is_refused_with_the_methods_that_run_on_it():
    from bbx.methods import registry

    for method, needs in NEEDS.items():
        registry.check_reveals(Reveals("scores"), method)
        if needs == "topk":
            registry.check_reveals(Reveals("topk"), method)
        else:
            with pytest.raises(OptionError) as err:
                registry.check_reveals(Reveals("topk"), method)
            assert str(err.value) == (f"{method} needs every class's score, but the endpoint reveals only the top-k "
                                      "classes; methods that run on it: greedy, rise_lead, occlusion, random")
        with pytest.raises(OptionError) as err:
            registry.check_reveals(Reveals("label"), method)
        assert str(err.value) == (f"{method} needs {WORDS[needs]}, but the endpoint reveals only the top-1 label; "
                                  "no method of bbx runs on it (bbx predict does)")


def test_an_audit_by_default_leaves_out_in_one_line_what_the_model_cannot_run(capsys):
    from bbx import defaults
    from bbx.cli.audit import _defaults_that_run

    config = EvalConfig(methods=defaults.AUDIT_METHODS).validate()
    assert _defaults_that_run(config, [Reveals("scores")]) is config
    kept = _defaults_that_run(config, [Reveals("scores"), Reveals("topk")])  # --compare with a top-k endpoint
    assert kept.methods == tuple(m for m in defaults.AUDIT_METHODS if m != "rise")
    assert capsys.readouterr().err.strip() == ("audit: rise left out of the default methods: the model reveals too "
                                               "little for it (--methods names what to run)")
    with pytest.raises(OptionError, match="only the top-1 label; no method of bbx runs on it"):
        _defaults_that_run(config, [Reveals("label")])


def test_the_registry_knows_each_method_by_its_name():
    from bbx.methods import registry

    for name in ORDER:
        assert registry.get(name).name == name == registry.get(f" {name.upper()} ").name
        assert registry.mask_kind(name) == ("cells" if name in ("greedy", "rise_lead", "occlusion") else "soft")
        assert registry.get(name).needs == NEEDS[name]
        assert registry.get(name).reads() == reads(name, {}) | {"method"}
        assert registry.get(name).is_seeded() == ("seed" in reads(name, {}))
        assert registry.get(name).is_seeded(ExplainConfig(estimator="nes")) == ("seed" in reads(name, {"estimator": "nes"}))
    assert registry.mask_kind("not-registered") == "soft"
    assert registry.describe().split("; ")[0].startswith("ftc: ") and registry.describe().count("; ") == len(ORDER) - 1
    assert [part.split(":")[0] for part in registry.describe().split("; ")] == list(ORDER)
    # what each reports with a step (the bar's label), and which run in lockstep (the soft masks)
    reports = {"ftc": "J", "fntc": "J", "plain": "J", "greedy": "-p(target)", "rise_lead": "-p(target)",
               "rise": "mean p(target)"}
    for name in ORDER:
        assert registry.get(name).reports == reports.get(name, "J")
        assert (registry.get(name).stepper is not None) == (name in ("ftc", "fntc", "plain"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.get("greedy").needs = "scores"  # one registration, shared: nobody may change it
    assert registry.get("greedy").unused({"seed": 1, "patch": 2, "area": 0.2}) == ["seed"]
    assert registry.get("occlusion").unused({"window": 1, "seed": 1, "patch": 2}) == ["seed", "window"]  # sorted


def test_register_refuses_a_bad_or_second_name_and_an_unknown_need():
    from bbx.methods import registry
    from bbx.methods.registry import Method

    def make(name: str, needs: str = "scores") -> Method:
        return Method(name=name, run=lambda ctx, cfg: None, options=(), seeded=False, summary="a test's",
                      default_budget="2", needs=needs)

    with pytest.raises(OptionError, match="^a method named 'greedy' is registered already$"):
        registry.register(make("greedy"))
    for bad in ("", "Upper", "has space", "dash-ed", "_", "__"):
        with pytest.raises(OptionError, match=rf"^a method name is lower-case letters, digits and _, not {bad!r}$"):
            registry.register(make(bad))
    with pytest.raises(OptionError, match=r"^method 'toy' needs 'pixels': one of scores, topk, label$"):
        registry.register(make("toy", needs="pixels"))
    assert "toy" not in registry.names()
    try:
        assert registry.register(make("toy_2", needs="label")).name == "toy_2"
        assert registry.names()[-1] == "toy_2" and registry.get("toy_2").needs == "label"
        registry.check_reveals(Reveals("label"), "toy_2")  # a method that needs only the label runs there
    finally:
        registry.unregister("toy_2")
    assert "toy_2" not in registry.names()
    registry.unregister("toy_2")  # twice is harmless


# -- what passes the check runs, as it was asked -------------------------------------------------
def test_what_is_accepted_runs_with_the_target_the_progress_and_the_config_given(model):
    e = bbx.explain(model, planted.photo(), "rival", config=ExplainConfig(method="occlusion", patch=12))
    assert (e.target, e.target_name) == (1, "rival") and e.config["method"] == "occlusion"
    assert e.config["patch"] == 12 and e.queries == 2 + 5 * 5  # X, each cell of 56 / 12 (the last one partial), Q
    assert bbx.explain(model, planted.photo(), method="occlusion", patch=12, target=1).queries == e.queries
    calls = []
    default = bbx.explain(model, planted.photo(), config=ExplainConfig(budget=60),
                          progress=lambda step, total, value: calls.append((step, total)))
    assert default.config["method"] == "rise_lead" and default.queries <= 60
    assert calls and all(total == calls[0][1] for _, total in calls)  # told as it went


def test_explain_refuses_a_method_the_model_reveals_too_little_for(tmp_path):
    m = bbx.OnnxClassifier(planted.build(tmp_path / "target.onnx", "target"))
    m.reveals = "topk"  # as an endpoint that answers only the top classes says (bbx.remote)
    with pytest.raises(OptionError, match="^ftc needs every class's score, but the endpoint reveals only the top-k"):
        bbx.explain(m, planted.photo(), method="ftc", budget=40)
    assert m.queries == 0  # refused before any query
    assert bbx.explain(m, planted.photo(), method="occlusion", patch=12).queries > 0  # what needs only the top-k runs
