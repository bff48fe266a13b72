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


def stale_quotes(text: str) -> list[str]:
    """The report lines that the plain ``` blocks of a doc's `text` quote and that are not, whole,
    a line of one of its console blocks (which the run checks)."""
    shown = {line.strip() for info, body in FENCE.findall(text) if info == "console" for line in norm(body).splitlines()}
    return [line.strip() for info, body in FENCE.findall(text) if info == ""
            for line in norm(body).splitlines() if REPORT_LINE.search(line) and line.strip() not in shown]


@pytest.mark.parametrize("doc", DOCS)
def test_report_lines_quoted_in_the_text_are_those_of_its_console_blocks(doc: str) -> None:
    """A plain ``` block that quotes a line of a report (to explain it) quotes the output the
    doc shows, which the run checks: the tutorial explained `rlimit 1350` where the run above
    it now printed `rlimit 3669` (found by a new user)."""
    stale = stale_quotes((ROOT / doc).read_text())
    assert not stale, f"{doc}: quoted report lines not in its console blocks: {stale}"


def test_a_quote_that_is_only_part_of_a_shown_line_is_stale() -> None:
    """A quote must be a whole line of the output: `rlimit 3775` is not the `rlimit 37750` that
    the run shows, though it is a part of that line (the check once compared substrings)."""
    shown = "<!-- console -->\n```console\n$ prove pages.mv\nFAILED   Pages/LR/vm_write/KServ  0.01s  rlimit 37750\n```\n"
    part, whole = (f"FAILED   Pages/LR/vm_write/KServ  0.00s  rlimit {n}" for n in (3775, 37750))
    assert stale_quotes(f"{shown}\nThe line\n\n```\n{part}\n```\n") == [part]
    assert stale_quotes(f"{shown}\nThe line\n\n```\n{whole}\n```\n") == []
