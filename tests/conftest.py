"""Shared helpers: loading cases, reading `// expect:` headers, proving in-process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from microverify.dsl import ir
from microverify.dsl.loader import load_file, load_text
from microverify.prover.driver import prove_modules
from microverify.prover.replay import Outcome
from microverify.prover.solve import Options, Result, Status

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"
PROOFS = ROOT / "proofs"

# A small secure model (12 obligations), for tests of the command rather than of the proofs.
SECURE = """\
principal KServ
principal VM(v: bv[1])
layer L {
  state { secret : map[bv[1]] -> bv[8] }
  observe VM(v) { secret[v] }
  op write(v: bv[1], x: bv[8]) by VM(v) { secret[v] := x }
}
"""

_EXPECT = re.compile(r"^//\s*expect:\s*(.+)$")


def expectation(path: Path) -> list[str]:
    """The comma-separated items of the file's first-line `// expect: ...` header."""
    first = path.read_text().splitlines()[0]
    m = _EXPECT.match(first)
    if m is None:
        raise AssertionError(f"{path} has no `// expect:` header")
    return [item.strip() for item in m.group(1).split(",")]


def load(path: Path) -> ir.Module:
    return load_file(path, {})


def prove_path(path: Path, options: Options | None = None) -> list[Result]:
    return prove_modules([load(path)], options or Options())


def prove_text(text: str, options: Options | None = None) -> list[Result]:
    return prove_modules([load_text(text, "<test>")], options or Options())


def assert_replayed(results: list[Result]) -> None:
    """Every FAILED result's counterexample was run by the reference interpreter and confirmed
    (prover/replay.py): its hypotheses hold and its goal fails on concrete values."""
    unconfirmed = [(r.obligation.id, r.replay.outcome.value if r.replay else None,
                    r.replay.findings if r.replay else ()) for r in results
                   if r.status is Status.FAILED and (r.replay is None or r.replay.outcome is not Outcome.CONFIRMED)]
    assert unconfirmed == []
    assert all(r.status is not Status.ERROR for r in results), [r.detail for r in results if r.status is Status.ERROR]


def not_proved(results: list[Result]) -> set[tuple[str, str]]:
    """(kind, op or '-') of every obligation that is not PROVED."""
    return {(r.obligation.kind.value, r.obligation.op or "-") for r in results
            if r.status is not Status.PROVED}


def cases(folder: str) -> list[Path]:
    return sorted((CASES / folder).glob("*.mv"))


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the `// expect:` header of tests/cases/bad/* with the diagnostics "
                          "now produced (review the diff before committing)")


def rewrite_expectation(path: Path, items: list[str]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[0] = "// expect: " + ", ".join(items) + "\n"
    path.write_text("".join(lines))


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def tmp_mv(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str, name: str = "case.mv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
