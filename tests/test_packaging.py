"""Packaging conventions: every extra the docs name exists, every extra is
documented, and the version and license metadata are in their current form."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _docs_text() -> str:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(p.read_text() for p in pages)


def test_every_extra_named_in_the_docs_exists_and_every_extra_is_documented():
    extras = set(PROJECT["optional-dependencies"])
    text = _docs_text()
    named = set()
    for group in re.findall(r"asyncflow-graph\[([a-z,\s]+)\]", text):
        named |= {e.strip() for e in group.split(",")}
    named.discard("extra")  # the placeholder in the MissingDependencyError example
    assert named <= extras, f"docs name extras that do not exist: {named - extras}"
    for extra in extras:
        assert f"[{extra}]" in text, f"extra {extra!r} is documented nowhere"


def test_self_referencing_extras_name_existing_extras():
    extras = PROJECT["optional-dependencies"]
    for name in ("demo", "all"):
        (req,) = extras[name]
        parts = re.fullmatch(r"asyncflow-graph\[([a-z,]+)\]", req).group(1).split(",")
        assert set(parts) <= set(extras) - {"demo", "all"}


def test_metadata_is_in_the_current_form():
    assert PROJECT["license"] == "MIT"  # an SPDX expression (PEP 639), not a table
    assert (ROOT / "LICENSE").is_file() and PROJECT["license-files"] == ["LICENSE"]
    assert PROJECT["version"] == "0.2.0"
    assert "## [0.2.0]" in (ROOT / "CHANGELOG.md").read_text()


def _readme_commands() -> dict[str, str]:
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    commands = {}
    for line in block.splitlines():
        command, _, label = line.partition("#")
        commands[label.strip()] = command.strip()
    return commands


def test_ci_runs_exactly_the_readme_test_command_and_the_demo_installs_only_its_extra():
    commands = _readme_commands()
    assert set(commands) == {"the demo", "the tests"}
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == commands["the tests"]
    assert '".[demo]"' in commands["the demo"] and "[test" not in commands["the demo"]
    assert commands["the demo"].endswith("examples/demo.py")
