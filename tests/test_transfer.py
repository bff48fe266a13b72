"""The steps of the transfer theorem that refinement used to take for granted (docs/theory.md §7):
upper arguments computed from the lower state (R-ARGS), bound oracle values and their sources
(R-BIND), and binds down a stack of three layers (R-ORACLE). Each attack is a two-layer (or
three-layer) model that really leaks at its bottom layer; it must fail with the obligation
named in its header, in both encodings and in any file order, with a counterexample that shows
both lower runs and points at the `implements` argument or the `bind`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CASES, expectation, load, not_proved
from microverify.dsl.loader import load_file, load_text
from microverify.prover.driver import obligations, prove_modules, prove_pairs
from microverify.prover.obligations import Kind, Obligation
from microverify.prover.report import render_counterexample, theorems
from microverify.prover.verdict import ENCODINGS, Options, Result, Status

# The refinement kinds' attacks, and the model on which the qf encoding once gave one abstraction
# lambda's constant to another (issue 13: Z3 reused a freed lambda's id).
ATTACKS = sorted(p for p in (CASES / "kinds").glob("r*_only.mv")) + [CASES / "leak" / "qf_lambda_reuse.mv"]


def _failing(path: Path, encoding: str) -> list[Result]:
    kind, op = expectation(path)[0].split()
    pairs = [(m, ob) for m, ob in obligations([load(path)]) if ob.kind.value == kind and ob.op == op]
    assert pairs
    return prove_pairs(pairs, Options(encoding=encoding))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_attack_fails_in_both_encodings(path: Path, encoding: str) -> None:
    results = _failing(path, encoding)
    assert any(r.status is Status.FAILED and r.counterexample is not None for r in results), \
        [(r.obligation.id, r.status, r.detail) for r in results]
    assert all(r.status in (Status.PROVED, Status.FAILED) for r in results)


def _render(path: Path) -> tuple[str, str]:
    """The rendered counterexample, and the file name its locations use."""
    (r,) = _failing(path, "qf")
    file = r.obligation.span.file
    return render_counterexample(r, {file: path.read_text()}), file


def test_rargs_counterexample_shows_both_runs_and_the_argument() -> None:
    path = CASES / "kinds" / "rargs_only.mv"
    text, file = _render(path)
    assert "the argument `x` of `set` differs between two runs that `leak`'s principal cannot tell apart" in text
    assert "`x` in run s = " in text and "`x` in run t = " in text
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "implements set(sec[0])" in s)
    col = path.read_text().splitlines()[line - 1].index("sec[0])") + 1
    assert f"{file}:{line}:{col}: note: responsible statement" in text


def test_rargs_counterexample_shows_the_two_principals() -> None:
    text, _ = _render(CASES / "kinds" / "rargs_dom_only.mv")
    assert "by VM(1) (run s) / VM(0) (run t)" in text or "by VM(0) (run s) / VM(1) (run t)" in text


def test_rbind_counterexample_shows_both_bound_values_and_the_bind() -> None:
    path = CASES / "kinds" / "rbind_only.mv"
    text, _ = _render(path)
    assert "the value bound to `io` is not determined by what its source sees" in text
    assert "bound to" in text and "from KServ   [run s]" in text and "from KServ   [run t]" in text
    assert "note: responsible statement: bind io = frame[p].data" in text


def _split(tmp_path: Path, src: Path) -> tuple[Path, Path]:
    """The attack as two files: the upper layer (and declarations), and the lower layer importing it."""
    text = src.read_text()
    cut = text.index("\nlayer ", text.index("\nlayer ") + 1)
    upper, lower = tmp_path / "upper.mv", tmp_path / "lower.mv"
    upper.write_text(text[:cut] + "\n")
    lower.write_text('import "upper.mv"\n' + text[cut:])
    return upper, lower


@pytest.mark.parametrize("path", [CASES / "kinds" / f"{name}.mv" for name in
                                  ("rargs_only", "rbind_only", "rbind_paths_only")]
                         + [CASES / "leak" / "qf_lambda_reuse.mv"],
                         ids=["rargs", "rbind", "rbind_paths", "qf_lambda_reuse"])
def test_attack_fails_in_any_file_order(tmp_path: Path, path: Path) -> None:
    want = tuple(expectation(path)[0].split())
    upper, lower = _split(tmp_path, path)
    for order in ((upper, lower), (lower, upper)):
        results = prove_modules([load_file(p, {}) for p in order], Options())
        assert not_proved(results) == {want}, order


def test_secure_counterparts_prove_with_the_new_kinds_and_the_theorem_names_sources() -> None:
    path = CASES / "stacks" / "own_view.mv"
    module = load(path)
    results = prove_modules([module], Options())
    assert {r.status for r in results} == {Status.PROVED}
    kinds = {r.obligation.kind for r in results}
    assert {Kind.R_ARGS, Kind.R_BIND} <= kinds
    (theorem,) = theorems([module], results, [ob for _, ob in obligations([module])])
    assert theorem.startswith("theorem: Cpu is noninterfering")
    assert "doing the same operations with the same arguments" in theorem
    assert "at every oracle index both bind from a source other than the observer" in theorem
    assert "Oracle sources: exitval from VM. Bound by the lower layers: exitval (exit);" in theorem
    assert "R-ARGS" in theorem and "R-BIND" in theorem


def test_plain_upper_arguments_need_no_rargs() -> None:
    """`implements` arguments that are lower parameters or constants are equal in any two runs."""
    module = load(CASES / "stacks" / "machine.mv")
    assert not [ob for _, ob in obligations([module]) if ob.kind is Kind.R_ARGS]


HALTS_ABOVE = """\
type w = bv[2]
principal KServ
principal VM(v: bv[1])

layer Spec {
  state { r : map[bv[1]] -> w }
  observe VM(v) { r[v] }
  op set(v: bv[1], x: w) by VM(v) {
    check x != 3 else halt
    r[v] := x
  }
  op noop(v: bv[1], x: w) by VM(v) { }
  op spare(b: bool) by KServ { check b else halt }
}

layer Impl refines Spec {
  state { q : map[bv[1]] -> w }
  abstraction { r = q }
  observe VM(v) { q[v] }
  op put(v: bv[1], x: w) by VM(v) implements set(v, if x == 3 then 0 else x) {
    if x == 3 { q[v] := 0 } else { q[v] := x }
  }
  op set(v: bv[1], x: w) by VM(v) implements noop(v, x) {%s }
}
"""


@pytest.mark.parametrize("halts", [False, True])
def test_the_operations_that_may_halt_are_the_bottom_layers(halts: bool) -> None:
    """The theorem is about runs of the bottom layer: an upper operation halts only where the
    lower one does (R-STEP), and one no lower operation implements is never performed. Impl's
    `set` is not Spec's `set` (found in review: both of Spec's were listed for an Impl that
    never halts)."""
    module = load_text(HALTS_ABOVE % (" check x != 2 else halt" if halts else ""), "<test>")
    results = prove_modules([module], Options())
    assert {r.status for r in results} == {Status.PROVED}
    (theorem,) = theorems([module], results, [ob for _, ob in obligations([module])])
    assert f"(termination-insensitive; operations that may halt: {'set' if halts else 'none'})." in theorem


COUNTER_SKIPPED = """\
type w = bv[2]
principal KServ
oracle io : w from KServ
layer Spec {
  state { kb : w }
  observe KServ { kb }
  op get() by KServ -> w {
    let x = read io
    return x
  }
}
layer Impl refines Spec {
  state { kb : w }
  abstraction { kb = kb }
  observe KServ { kb }
  op get() by KServ -> w { return 0 }
}
"""


def _failed_counterexample(text: str, wanted: Callable[[Obligation], bool], encoding: str = "qf") -> str:
    """The rendered counterexample of the one obligation of `text` that `wanted` picks, FAILED."""
    module = load_text(text, "<test>")
    (r,) = prove_pairs([(m, ob) for m, ob in obligations([module]) if wanted(ob)], Options(encoding=encoding))
    assert r.status is Status.FAILED, (r.status, r.detail)
    return render_counterexample(r, {"<test>": text})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_r_oracle_counterexample_names_the_counter_as_the_source_does(encoding: str) -> None:
    """`counter(io)`, as in the table and the language, not the internal field `#io` (found in review)."""
    text = _failed_counterexample(COUNTER_SKIPPED, lambda ob: ob.kind is Kind.R_ORACLE, encoding)
    assert "why:          the oracle counters advance differently: `counter(io)` (entry KServ)" in text, text
    assert "#io" not in text


def test_an_r_stutter_counterexample_names_the_counter_as_the_source_does() -> None:
    """The replay line said `#io` where the why line says `counter(io)` (review)."""
    text = _failed_counterexample(COUNTER_SKIPPED.replace("  op get() by KServ -> w { return 0 }\n}", """\
  op get() by KServ -> w { let x = read io  return x }
  op poll() by KServ { let v = read io  kb := kb }
}"""), lambda ob: ob.kind is Kind.R_STUTTER)
    assert "the lower-only step changes `counter(io)` of Spec" in text, text
    assert "#io" not in text


def test_a_replay_names_a_counter_as_the_why_line_does() -> None:
    """`counter(alloc, KServ)` in both lines; the replay said `counter(alloc)` (found by a new user)."""
    text = _failed_counterexample("""\
type word = bv[4]
principal KServ
principal VM(v: bv[1])
oracle alloc : word from KServ
layer L {
  state { got : map[bv[1]] -> word }
  observe VM(w) { got[w] }
  op take(v: bv[1]) by VM(v) {
    let p = read alloc for KServ
    got[v] := p
  }
}
""", lambda ob: ob.id == "L/LR/take/KServ")
    assert "why:          observation `counter(alloc, KServ)` differs" in text, text
    assert "changes KServ's view: `counter(alloc, KServ)`" in text, text
