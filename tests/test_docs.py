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
