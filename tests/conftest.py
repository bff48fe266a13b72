"""Shared helpers: loading cases, reading `// expect:` headers, proving in-process."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import z3

from microverify.dsl import ir
from microverify.dsl.defines import parse_defines
from microverify.dsl.loader import load_file, load_text
from microverify.prover.driver import prove_modules
from microverify.prover.qf import eliminate, has_quantifier
from microverify.prover.replay import Outcome
from microverify.prover.verdict import Options, Result, Status

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

# Three invariant clauses that keep each VM's page its own; `lend` gives VM(1)'s page to VM(0)
# (breaking the second clause), which then sees what VM(1) wrote there. Two runs that differ
# only in mem[1] (VM(1)'s, invisible to VM(0)): after `lend`, VM(0) sees mem[1] in each, and
# the two values differ.
LENDS = """\
principal KServ
principal VM(v: bv[1])
layer L {
  state { owner : map[bv[8]] -> principal; mem : map[bv[8]] -> bv[8] }
  init { forall p: bv[8]. owner[p] == (if p == 0 then VM(0) else if p == 1 then VM(1) else KServ) }
  invariant zero { forall p: bv[8]. p != 0 || owner[p] == VM(0) }
  invariant one { forall p: bv[8]. p != 1 || owner[p] == VM(1) }
  invariant rest { forall p: bv[8]. p == 0 || p == 1 || owner[p] == KServ }
  observe VM(v) { mem[p] for p: bv[8] where owner[p] == VM(v) }
  op lend() by KServ { owner[1] := VM(0) }
}
"""


# A pointer map from pages to pages: `∀p. owner[nxt[p]] == owner[p]` is in the fragment with a
# nested read, so its instance at λ reads nxt[λ] (and the next round nxt[nxt[λ]]): the case the
# side constraints on λ must not be built from (test_a_model_of_the_input_extends_to_the_lambdas).
POINTERS = """type pfn = bv[8]
type vmid = bv[2]
principal KServ
principal VM(v: vmid)
layer L {
  state { nxt: map[pfn] -> pfn; owner: map[pfn] -> principal; mem: map[pfn] -> bv[8] }
  init { forall p: pfn. nxt[p] == p }
  invariant linked { forall p: pfn. owner[nxt[p]] == owner[p] }
  observe VM(v) { mem[p] for p: pfn where owner[p] == VM(v); nxt[p] for p: pfn where owner[p] == VM(v) }
  op pull(v: vmid, p: pfn) by VM(v) {
    check owner[p] == VM(v) else halt
    mem[p] := mem[nxt[p]]
  }
}
"""


def nested_pointers(pages: int) -> str:
    """POINTERS at `pages`-bit pages, with an invariant that reads `nxt` at an index read from
    it (`owner[nxt[nxt[p]]] == owner[p]`): secure."""
    return POINTERS.replace("type pfn = bv[8]", f"type pfn = bv[{pages}]").replace(
        "owner[nxt[p]] == owner[p] }", "owner[nxt[p]] == owner[p] && owner[nxt[nxt[p]]] == owner[p] }")


_EXPECT = re.compile(r"^//\s*expect:\s*(.+)$")


def expectation(path: Path) -> list[str]:
    """The comma-separated items of the file's first-line `// expect: ...` header."""
    first = path.read_text().splitlines()[0]
    m = _EXPECT.match(first)
    if m is None:
        raise AssertionError(f"{path} has no `// expect:` header")
    return [item.strip() for item in m.group(1).split(",")]


def load(path: Path, defines: tuple[str, ...] = ()) -> ir.Module:
    return load_file(path, {}, parse_defines(defines))


@dataclass(frozen=True)
class Configuration:
    """A second configuration a shipped system's files state besides the sizes they are written
    at, in a comment line `//   NAME[, FILE ...]: -D NAME=VALUE ...`: its name ("small",
    "hardware"), its `-D` definitions, and the files it is for (all of the system's if none are
    named)."""

    name: str
    defines: tuple[str, ...]
    files: tuple[str, ...]

    def covers(self, file: str) -> bool:
        return not self.files or file in self.files


def configuration(system: str) -> Configuration | None:
    for path in sorted((PROOFS / system).glob("*.mv")):
        for line in path.read_text().splitlines():
            if line.startswith("//   ") and ": -D " in line:
                head, defines = line.removeprefix("//   ").split(": -D ", 1)
                name, *files = [w.strip() for w in head.split(",")]
                return Configuration(name, tuple(defines.split(" -D ")), tuple(files))
    return None


def prove_path(path: Path, options: Options | None = None) -> list[Result]:
    return prove_modules([load(path)], options or Options())


def prove_text(text: str, options: Options | None = None) -> list[Result]:
    return prove_modules([load_text(text, "<test>")], options or Options())


SPLIT_ORDERS = ["model first", "importer first"]


@dataclass(frozen=True)
class FreshCheck:
    """One check prover/solve.py made in a context of its own (`_fresh`) or of a run of checks
    (`_Run`): the assertions asked, its budget, stage, answer and the resource units it spent,
    and the label the recorder gave it when it ran (the obligation being solved, say)."""

    assertions: tuple[z3.ExprRef, ...]
    rlimit: int
    stage: str
    answer: z3.CheckSatResult
    units: int
    label: str


def record_fresh_checks(monkeypatch: pytest.MonkeyPatch, label: Callable[[], str] = lambda: "") -> list[FreshCheck]:
    """Every check solve._fresh and solve._Run make from now on, in order, each labelled by
    `label()`."""
    from microverify.prover import solve
    checks: list[FreshCheck] = []
    real, real_run = solve._fresh, solve._Run.check

    def recorded(assertions, options, rlimit, stage, *rest):  # type: ignore[no-untyped-def]
        one, answer = real(assertions, options, rlimit, stage, *rest)
        checks.append(FreshCheck(tuple(assertions), rlimit, stage, answer, solve._rlimit_count(one), label()))
        return one, answer

    def run_recorded(self, goal, options, rlimit, stage):  # type: ignore[no-untyped-def]
        one, answer, units = real_run(self, goal, options, rlimit, stage)
        checks.append(FreshCheck((*self.hypotheses, goal), rlimit, stage, answer, units, label()))
        return one, answer, units

    monkeypatch.setattr(solve, "_fresh", recorded)
    monkeypatch.setattr(solve._Run, "check", run_recorded)
    return checks


def split_over_two_files(tmp_path: Path, model: str, observer: str, order: str) -> list[ir.Module]:
    """`model` in model.mv and a file that imports it and adds a layer observed by `observer`,
    loaded in the `order` of SPLIT_ORDERS."""
    (tmp_path / "model.mv").write_text(model)
    (tmp_path / "other.mv").write_text(f'import "model.mv"\nlayer M {{\n  state {{ y : bv[4] }}\n  observe {observer} {{ y }}\n}}\n')
    files = ["model.mv", "other.mv"] if order == SPLIT_ORDERS[0] else ["other.mv", "model.mv"]
    return [load_file(tmp_path / f, {}) for f in files]


# Why the interpreter does not replay a counterexample over a sort of 2^20 values or more.
_TOO_LARGE = re.compile(r"values \(bv\[\d+\](, bv\[\d+\])*\); the interpreter enumerates at most|a map over bv\[\d+\] (has|is read)"
                        r"|a map over a large sort has a value in the model that is no list of entries"
                        r"|a map is defined at (every key|\d+ keys) by an index-linking hypothesis")


def assert_replayed(results: list[Result], too_large_ok: bool = False) -> None:
    """Every FAILED result's counterexample was run by the reference interpreter and confirmed
    (prover/replay.py): its hypotheses hold and its goal fails on concrete values. With
    `too_large_ok` (a model at hardware sizes), a counterexample the interpreter cannot run only
    because a sort is too large to enumerate passes too; one it contradicts never does."""
    def accepted(r: Result) -> bool:
        if r.replay is None:
            return False
        if r.replay.outcome is Outcome.CONFIRMED:
            return True
        return too_large_ok and r.replay.outcome is Outcome.NOT_REPLAYED and \
            all(_TOO_LARGE.search(f) for f in r.replay.findings)
    unconfirmed = [(r.obligation.id, r.replay.outcome.value if r.replay else None,
                    r.replay.findings if r.replay else ()) for r in results
                   if r.status is Status.FAILED and not accepted(r)]
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


def validity_check(hyps: list[z3.BoolRef], goals: list[z3.BoolRef], *, eliminated: bool) -> z3.CheckSatResult | None:
    """sat/unsat of the hypotheses with the goals asserted negated (a validity obligation), as
    given or in the quantifier-free encoding (None if that keeps a quantifier); unknown if Z3
    needs more than an rlimit that keeps every test fast."""
    if eliminated:
        e = eliminate(hyps, goals, -1)
        if not e.quantifier_free:
            return None
        hyps, goals = e.hypotheses + e.side + e.definitions, e.goals
        assert not has_quantifier(hyps + goals)
    s = z3.Solver()
    s.set("rlimit", 5_000_000, "random_seed", 0)
    s.add(hyps)
    s.add(z3.Not(z3.And(goals)))
    return s.check()
