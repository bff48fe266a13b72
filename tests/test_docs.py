"""Every example in the docs is run: models prove or fail as the text says, pasted output is real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT
from doccheck import FENCE, main, norm

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


REPORT_LINE = re.compile(r"^(FAILED|PROVED|VACUOUS|UNKNOWN)\s|: error: |^\s+(why|replay|operation|results|oracle):")


@pytest.mark.parametrize("doc", DOCS)
def test_report_lines_quoted_in_the_text_are_those_of_its_console_blocks(doc: str) -> None:
    """A plain ``` block that quotes a line of a report (to explain it) quotes the output the
    doc shows, which the run checks: the tutorial explained `rlimit 1350` where the run above
    it now printed `rlimit 3669` (found by a new user)."""
    text = (ROOT / doc).read_text()
    shown = "\n".join(norm(body) for info, body in FENCE.findall(text) if info == "console")
    stale = [line for info, body in FENCE.findall(text) if info == ""
             for line in norm(body).splitlines() if REPORT_LINE.search(line) and line.strip() not in shown]
    assert not stale, f"{doc}: quoted report lines not in its console blocks: {stale}"
