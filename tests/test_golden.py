"""Golden end-to-end cases: ok/ and stacks/ must prove, leak/ must fail with the expected obligation,
kinds/ must fail with exactly one kind, bad/ must give the expected diagnostics."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CASES, assert_replayed, cases, expectation, ids, load, not_proved, prove_path, rewrite_expectation
from microverify.dsl.diagnostics import DiagnosticError
from microverify.prover.verdict import Options, Status

OK = cases("ok") + cases("stacks")  # the shipped proofs: tests/test_proofs.py
LEAK = cases("leak")
KINDS = cases("kinds")
BAD = cases("bad")


@pytest.mark.parametrize("path", OK, ids=ids(OK))
def test_ok_cases_prove(path: Path) -> None:
    results = prove_path(path)
    assert results, "a proof with no obligations proves nothing"
    bad = [(r.obligation.id, r.status.value, r.detail) for r in results if r.status is not Status.PROVED]
    assert bad == []


@pytest.mark.parametrize("path", LEAK, ids=ids(LEAK))
def test_leaky_mutants_are_rejected_by_the_expected_obligation(path: Path) -> None:
    kind, op = expectation(path)[0].split()
    results = prove_path(path)
    failed = [r for r in results if r.obligation.kind.value == kind and (r.obligation.op or "-") == op
              and r.status is not Status.PROVED]
    assert failed, f"expected {kind} {op} to fail; not proved: {sorted(not_proved(results))}"
    assert all(r.status is not Status.UNKNOWN for r in failed)
    assert_replayed(results)


@pytest.mark.parametrize("path", KINDS, ids=ids(KINDS))
def test_each_kind_case_is_rejected_by_that_kind_alone(path: Path) -> None:
    """A generator that checks the wrong formula for a kind (e.g. WSC running LR, or DR
    computing both doms from one state) fails here."""
    kind, op = expectation(path)[0].split()
    results = prove_path(path)
    assert not_proved(results) == {(kind, op)}
    (failing,) = [r for r in results if r.status is not Status.PROVED]
    if kind == "VAC":
        assert failing.status is Status.VACUOUS
    else:
        assert failing.status is Status.FAILED
        assert failing.counterexample is not None and failing.counterexample.failing
        assert_replayed(results)


def test_every_obligation_kind_has_an_isolating_case() -> None:
    kinds = {expectation(p)[0].split()[0] for p in KINDS}
    assert kinds == {"OC", "WSC", "LR", "DC", "DR", "INIT", "INV", "VAC", "R-ARGS", "R-BIND", "R-ORACLE"}


@pytest.mark.parametrize("path", BAD, ids=ids(BAD))
def test_bad_input_gives_the_expected_diagnostics(path: Path, update_golden: bool) -> None:
    with pytest.raises(DiagnosticError) as info:
        load(path)
    got = [(d.code, f"{d.span.line}:{d.span.column}") for d in info.value.diagnostics]
    if update_golden:
        rewrite_expectation(path, [f"{code} {where}" for code, where in got])
    want = [tuple(item.split()) for item in expectation(path)]
    assert got == want


# The models of issue 13's holes whose verdict the default encoding checks above: the other
# encoding must give the same (the lambda-id model is in tests/test_transfer.py, the import
# model in tests/test_imports.py).
HOLES = [CASES / "leak" / "junk_principal_in_observation.mv", CASES / "leak" / "junk_principal_init.mv",
         CASES / "ok" / "junk_principal_tautology.mv"]


@pytest.mark.parametrize("path", HOLES, ids=ids(HOLES))
def test_hole_models_get_the_same_verdict_in_the_quantified_encoding(path: Path) -> None:
    results = prove_path(path, Options(encoding="quantified"))
    assert [(r.obligation.id, r.status) for r in results] == \
        [(r.obligation.id, r.status) for r in prove_path(path)]
    if path.parent.name == "ok":
        assert {r.status for r in results} == {Status.PROVED}
    else:
        assert tuple(expectation(path)[0].split()) in not_proved(results)
    assert_replayed(results)


def test_a_family_observer_s_index_is_shown_concretely() -> None:
    """Issue 15: the failing observation of VM(v) names v's value, not only the family."""
    from conftest import prove_text
    results = prove_text("principal KServ\nprincipal VM(v: bv[2])\nlayer L {\n  state { mem : map[bv[2]] -> bv[8] }\n"
                         "  observe VM(v) { mem[v] }\n"
                         "  op write(v: bv[2], x: bv[8]) by VM(v) { mem[v ^ 1] := x }\n}\n")
    lr = next(r for r in results if r.obligation.id == "L/LR/write/VM")
    assert lr.status is Status.FAILED and lr.counterexample is not None
    observer = lr.counterexample.observer
    assert observer in ("VM(0)", "VM(1)", "VM(2)", "VM(3)")
    assert lr.counterexample.failing == (f"observation `mem[v]` differs at v = {observer[3]}",)
