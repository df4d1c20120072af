"""Method options are written once, on ExplainConfig's fields: every command that explains offers
them all, with the field's own help text, and passes only what was given."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from typer.testing import CliRunner

from bbx.cli.app import app
from bbx.config import ExplainConfig

runner = CliRunner()


def flags_of(command: str) -> set[str]:
    """The long options ``bbx COMMAND --help`` lists."""
    out = runner.invoke(app, [command, "--help"], terminal_width=200, env={"COLUMNS": "200"}).output
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))


def option_fields() -> set[str]:
    return {"--" + f.name.replace("_", "-") for f in fields(ExplainConfig) if f.name != "method"}


def test_every_config_field_but_method_has_help_text():
    assert all("help" in f.metadata for f in fields(ExplainConfig) if f.name != "method")


@pytest.mark.parametrize("command, left_out", [("explain", set()), ("evaluate", {"--seed"}), ("audit", {"--seed"})])
def test_each_command_that_explains_offers_every_method_option(command, left_out):
    offered = flags_of(command)
    assert option_fields() - left_out <= offered
    assert not left_out & offered


def test_an_option_given_to_evaluate_reaches_the_config(tmp_path, monkeypatch):
    """evaluate passes what is given (and nothing else) into its ExplainConfig."""
    import bbx.cli.evaluate as cli_evaluate

    seen = {}

    def stop(*args, **kwargs):
        seen["config"] = args[2]
        raise SystemExit(0)

    monkeypatch.setattr(cli_evaluate, "run_evaluate", stop)
    monkeypatch.setattr(cli_evaluate, "load_model", lambda *a, **k: type("M", (), {"spec_sources": {}})())
    photo = tmp_path / "p.png"
    from PIL import Image
    Image.new("RGB", (8, 8)).save(photo)
    result = runner.invoke(app, ["evaluate", "m.onnx", str(photo), "--methods", "greedy", "--area", "0.05",
                                 "--stride", "4", "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    cfg = seen["config"].explain
    assert cfg.area == 0.05 and cfg.stride == 4 and cfg.given() == {"area": 0.05, "stride": 4}
