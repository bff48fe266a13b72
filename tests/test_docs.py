"""Every example in the docs is run: models prove or fail as the text says, pasted output is real."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT
from doccheck import main

DOCS = ["docs/language.md", "docs/tutorial.md", "docs/xmhf.md", "README.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_doc_examples_are_real(doc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(ROOT / doc), str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " 0 failure(s)" in out and " 0 checks" not in out


def test_every_console_block_of_the_docs_is_checked() -> None:
    """A ```console block is output pasted from a run: each one, in README.md and every file of
    docs/, is marked `<!-- console -->` (tests/doccheck.py runs it and compares), in a doc
    that test_doc_examples_are_real checks."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text().splitlines()
        blocks = [i for i, line in enumerate(lines) if line.strip() == "```console"]
        unmarked = [i + 1 for i in blocks if i == 0 or lines[i - 1].strip() != "<!-- console -->"]
        assert not unmarked, f"{path.name}: console blocks not checked at lines {unmarked}"
        assert not blocks or str(path.relative_to(ROOT)) in DOCS, f"{path.name} has console blocks but is not in DOCS"
