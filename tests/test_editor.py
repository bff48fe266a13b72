"""The VS Code extension folder (editors/vscode): its manifest names files that exist, starts
the console script the package installs, and its TextMate grammar knows exactly the keywords of
the language's grammar (so that a keyword added to one and not the other fails here)."""

from __future__ import annotations

import json
import re
import tomllib

from conftest import ROOT
from microverify.dsl.parser import _keywords

EXTENSION = ROOT / "editors" / "vscode"


def test_the_manifest_points_at_files_that_exist_and_at_the_installed_server() -> None:
    manifest = json.loads((EXTENSION / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "microverify" and language["extensions"] == [".mv"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["language"] == "microverify"
    for path in (manifest["main"], language["configuration"], grammar["path"]):
        assert (EXTENSION / path).is_file(), path
    command = manifest["contributes"]["configuration"]["properties"]["microverify.server.command"]["default"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command == ["microverify-lsp"] and scripts["microverify-lsp"] == "microverify.prover.lsp:main"
    assert json.loads((EXTENSION / grammar["path"]).read_text())["scopeName"] == grammar["scopeName"]


def test_the_textmate_grammar_highlights_exactly_the_languages_keywords() -> None:
    grammar = json.loads((EXTENSION / "syntaxes" / "microverify.tmLanguage.json").read_text())
    words: set[str] = set()
    for name in ("keyword", "constant", "type"):
        pattern = grammar["repository"][name]["match"]
        words |= set(re.fullmatch(r"\\b\((.*)\)\\b", pattern).group(1).split("|"))  # type: ignore[union-attr]
    assert words == set(_keywords())
    for rule in grammar["repository"].values():
        re.compile(rule["match"])  # the patterns are plain enough for Python's re too
    line = "  op vm_write(v: vmid) by VM(v) -> bool {  // a comment with check"
    keyword = re.compile(grammar["repository"]["keyword"]["match"])
    assert [m.group() for m in keyword.finditer(line.split("//")[0])] == ["op", "by"]
