"""A validity obligation's goals are rewritten into an equivalent form (prover/goalform.py):
reads that are compared pushed through writes, comparisons pushed into the branches of a
choice, and a comparison with `w + 1` said without the adder, the wrap-around case kept.

Each rewrite is checked by Z3 to be an equivalence, at widths from 1 to 64, and to have changed
the term (so these tests do not pass on a rewriting that does nothing). The attacks: leaks that
only the wrap-around case shows (`n + 1` is 0 when n is all ones), written with each of the
comparisons, FAILED by WSC and LR at the leaking line, in both encodings and over two files in either
order; the same model with the wrap-around excluded proves.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest
import z3

from conftest import LENDS, SPLIT_ORDERS, assert_replayed, prove_text, record_fresh_checks, split_over_two_files
from microverify.dsl.limits import ensure_recursion_limit
from microverify.layers.model import Labeled
from microverify.prover import goalform, solve
from microverify.dsl.loader import load_text
from microverify.prover.driver import obligations, prove_modules, prove_pairs
from microverify.prover.goalform import rewritten
from microverify.prover.verdict import ENCODINGS, Options, Result, Status


def _terms(width: int) -> dict[str, z3.BoolRef]:
    ctx = z3.Context()
    x, y, a, b, i, j, k = (z3.BitVec(n, width, ctx) for n in "xyabijk")
    c, d = z3.Bool("c", ctx), z3.Bool("d", ctx)
    arr = z3.Array("arr", z3.BitVecSort(width, ctx), z3.BitVecSort(width, ctx))
    nested = z3.Array("nested", z3.BitVecSort(width, ctx), z3.ArraySort(z3.BitVecSort(width, ctx),
                                                                      z3.BitVecSort(width, ctx)))
    one = z3.BitVecVal(1, width, ctx)
    written = z3.Store(arr, j, arr[j] + 1)
    return {
        "x < y + 1": z3.ULT(x, y + 1),
        "x < 1 + y": z3.ULT(x, one + y),
        "x + 1 <= y": z3.ULE(x + 1, y),
        "1 + x <= y": z3.ULE(one + x, y),
        "y + 1 > x": z3.UGT(y + 1, x),
        "y >= x + 1": z3.UGE(y, x + 1),
        "not (x < y + 1)": z3.Not(z3.ULT(x, y + 1)),
        "ite on the left": z3.ULT(z3.If(c, a, b), y),
        "ite on the right": z3.ULT(x, z3.If(c, a, z3.If(d, b, y + 1))),
        "read through a write": z3.ULT(i, z3.Select(written, k)),
        "read through a choice": z3.UGT(z3.Select(z3.If(c, arr, written), k), i),
        "a read plus one": z3.ULE(z3.Select(arr, k) + 1, i),
        "nested read": z3.ULT(i, z3.Select(z3.Store(nested, j, z3.Store(nested[j], k, x + 1)), a)[b]),
        "under connectives": z3.Implies(c, z3.Or(d, z3.ULT(i, z3.Select(written, k)))),
    }


CASES = list(_terms(4))


def _has_adder_or_store_under_a_comparison(t: z3.ExprRef) -> bool:
    """A comparison whose argument still reads through a write or adds 1."""
    def inside(u: z3.ExprRef) -> bool:
        return z3.is_app(u) and (z3.is_store(u) or z3.is_app_of(u, z3.Z3_OP_BADD) or
                                 any(inside(v) for v in u.children()))
    if not z3.is_app(t):
        return False
    if z3.is_app_of(t, z3.Z3_OP_ULT) or z3.is_app_of(t, z3.Z3_OP_ULEQ):
        return any(inside(v) for v in t.children())
    return any(_has_adder_or_store_under_a_comparison(v) for v in t.children())


@pytest.mark.parametrize("width", [1, 2, 8, 64])
@pytest.mark.parametrize("case", CASES)
def test_each_rewrite_is_an_equivalence_and_changes_the_term(case: str, width: int) -> None:
    goal = _terms(width)[case]
    [new] = rewritten([goal])
    solver = z3.Solver(ctx=goal.ctx)
    solver.add(new != goal)
    assert solver.check() == z3.unsat
    assert not new.eq(goal)
    assert not _has_adder_or_store_under_a_comparison(new)


def test_what_is_not_rewritten_is_the_same_term() -> None:
    ctx = z3.Context()
    x, y = z3.BitVec("x", 8, ctx), z3.BitVec("y", 8, ctx)
    c, d = z3.Bool("c", ctx), z3.Bool("d", ctx)
    arr = z3.Array("arr", z3.BitVecSort(8, ctx), z3.BitVecSort(8, ctx))
    kept = [z3.ULT(x, y + 2), z3.ULT(x + 1, y), z3.ULE(x, y + 1), x < y + 1, z3.Store(arr, x, y)[y] == x,
            z3.ULT(z3.If(c, x, y), z3.If(d, y, x)),  # both sides are choices: left as it is
            z3.ForAll([x], z3.ULT(x, y + 1))]  # inside a quantifier
    for goal in kept:
        assert rewritten([goal])[0].eq(goal), goal


def _chain(ctx: z3.Context, writes: int, choices: bool) -> z3.BoolRef:
    """x < a[i], where a is `writes` writes deep, each under a choice if `choices`."""
    sort = z3.BitVecSort(32, ctx)
    array = z3.Array("a", sort, sort)
    for k in range(writes):
        written = z3.Store(array, z3.BitVec(f"j{k}", 32, ctx), z3.BitVec(f"v{k}", 32, ctx))
        array = z3.If(z3.Bool(f"c{k}", ctx), written, array) if choices else written
    return z3.ULT(z3.BitVec("x", 32, ctx), z3.Select(array, z3.BitVec("i", 32, ctx)))


def test_a_read_under_many_choices_is_rewritten_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choices a read is pushed into share their branches: walked as a tree, 40 writes under
    choices would be 2^40 comparisons (an adversarial review found 92 s for 20)."""
    calls = 0
    real = goalform._Comparisons._compare

    def counted(self: goalform._Comparisons, op: int, x: z3.Ast, y: z3.Ast) -> z3.Ast:
        nonlocal calls
        calls += 1
        assert calls < 1000, "comparisons are walked as a tree"
        return real(self, op, x, y)

    monkeypatch.setattr(goalform._Comparisons, "_compare", counted)
    [new] = rewritten([_chain(z3.Context(), 40, choices=True)])
    assert calls <= 4 * 40 and z3.is_app_of(new, z3.Z3_OP_ITE)


def test_a_goal_too_deep_to_rewrite_is_asked_as_stated() -> None:
    """A read under thousands of writes: the rewriting reaches Python's recursion limit (in a
    ctypes call, which reports it as an ArgumentError), and the conjuncts are asked as stated."""
    ensure_recursion_limit()
    goal = Labeled("deep", _chain(z3.Context(), 6000, choices=False))
    with pytest.raises((RecursionError, ctypes.ArgumentError)):
        rewritten([goal.term])
    assert solve._asked([goal]) == [goal]


# B sees `m[i]` for every i above n; A may write m[0] once n is all ones. Then n + 1 wraps to
# 0 and B sees every m[i], m[0] too: a leak only the wrap-around case shows. (`p` is a second
# `m`, so that the goal has two conjuncts: the rewritten form is what each is asked in when Z3
# gives up on the whole goal, prover/solve.py's _goals_unsat.)
WRAP = """\
principal A
principal B
layer L {
  state { n : bv[2]
          m : map[bv[2]] -> bv[4]
          p : map[bv[2]] -> bv[4]
          secret : bv[4] }
  observe B { n; m[i] for i: bv[2] where ABOVE; p[i] for i: bv[2] where ABOVE }
  op bump() by A {
    if GUARD {
      m[0] := secret
      p[0] := secret
    }
  }
}
"""
ABOVE = ["n + 1 <= i", "i >= n + 1", "!(i < n + 1)", "!(n + 1 > i)"]
LEAKY = "n == 3"
WHOLE = ["whole goal asked", "whole goal given up"]


@pytest.fixture(params=WHOLE)
def whole(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With "given up", the whole goal gets one resource unit: each conjunct is asked alone."""
    if request.param == WHOLE[1]:
        monkeypatch.setattr(solve, "WHOLE_SHARE", Options().rlimit)


def _model(above: str, guard: str) -> str:
    return WRAP.replace("ABOVE", above).replace("GUARD", guard)


def _failed(results: list[Result], text: str,
            writes: tuple[str, ...] = ("m[0] := secret", "p[0] := secret")) -> None:
    """B's WSC and LR of A's operation fail (it changes what B sees), each at one of `writes`."""
    failed = [r for r in results if r.status is not Status.PROVED]
    assert sorted((r.obligation.kind.value, r.obligation.observer, r.status) for r in failed) == \
        [("LR", "B", Status.FAILED), ("WSC", "B", Status.FAILED)]
    for r in failed:
        assert r.counterexample is not None
        responsible = [text.splitlines()[s.line - 1].strip() for s in r.counterexample.responsible]
        assert any(write in responsible for write in writes), responsible
    assert_replayed(results)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("above", ABOVE)
def test_a_leak_only_the_wrap_around_shows_fails_wsc_and_lr(above: str, encoding: str, whole: None) -> None:
    text = _model(above, LEAKY)
    _failed([r for r in prove_text(text, Options(encoding=encoding)) if r.obligation.layer == "L"], text)


@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_the_wrap_around_leak_fails_over_two_files_in_either_order(tmp_path: Path, order: str, whole: None) -> None:
    text = _model(ABOVE[0], LEAKY)
    _failed([r for r in prove_modules(split_over_two_files(tmp_path, text, "B", order), Options())
             if r.obligation.layer == "L"], text)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("above", ABOVE)
def test_without_the_wrap_around_the_model_proves(above: str, encoding: str, whole: None) -> None:
    """n != 3: n + 1 does not wrap, so B saw m[0] only if it sees it after (n + 1 <= 0 never holds)."""
    results = prove_text(_model(above, "n != 3"), Options(encoding=encoding))
    assert [(r.obligation.id, r.status) for r in results if r.status is not Status.PROVED] == []


# B sees `m[i]` and `p[i]` for every i with `c[i] < k`; A sets c[j] to 0, which shows B the
# entries at j (a secret of A's in one run, another in the other) whenever k is not 0: the
# comparison reads c through A's write, and is false before the step at j, true after. With the
# write kept to entries B sees already (`c[j] < k`), nothing new is shown.
SHOWN = """\
principal A
principal B
layer L {
  state { k : bv[8]
          c : map[bv[8]] -> bv[8]
          m : map[bv[8]] -> bv[8]
          p : map[bv[8]] -> bv[8] }
  observe B { k; m[i] for i: bv[8] where c[i] < k; p[i] for i: bv[8] where k > c[i] }
  op show(j: bv[8]) by A {
    if GUARD {
      c[j] := 0
    }
  }
}
"""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_read_compared_through_a_write_that_shows_an_entry_fails(encoding: str, whole: None) -> None:
    text = SHOWN.replace("GUARD", "true")
    _failed([r for r in prove_text(text, Options(encoding=encoding)) if r.obligation.layer == "L"], text,
            ("c[j] := 0",))


@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_the_shown_entry_fails_over_two_files_in_either_order(tmp_path: Path, order: str, whole: None) -> None:
    text = SHOWN.replace("GUARD", "true")
    _failed([r for r in prove_modules(split_over_two_files(tmp_path, text, "B", order), Options())
              if r.obligation.layer == "L"], text, ("c[j] := 0",))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_write_to_an_entry_already_shown_proves(encoding: str, whole: None) -> None:
    results = prove_text(SHOWN.replace("GUARD", "c[j] < k"), Options(encoding=encoding))
    assert [(r.obligation.id, r.status) for r in results if r.status is not Status.PROVED] == []


THREE_CLAUSES = """\
principal KServ
layer L {
  state { m : map[bv[8]] -> bv[8]; n : map[bv[8]] -> bv[8]; k : map[bv[8]] -> bv[8] }
  invariant a { forall i: bv[8]. m[i] != 1 }
  invariant b { forall i: bv[8]. n[i] != 1 }
  invariant c { forall i: bv[8]. k[i] != 1 }
  observe KServ { m[0] }
  op set(x: bv[8]) by KServ { if x != 1 { m[x] := x; n[x] := x; k[x] := x } }
}
"""


def test_the_conjuncts_asked_one_by_one_share_one_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the whole goal is given up, each conjunct is asked alone (solve._goals_unsat), each
    in a solver of its own, all in one context of their own (solve._Run): a context per
    conjunct made about 400 of the 1345 contexts of `prove proofs`, at about 2.5 ms each, and
    `prove proofs -j1` took 0.94 of the time with one per run (farm-bench, 5 pairs,
    2026-12-03). Each conjunct still has its own budget, and the units add up."""
    monkeypatch.setattr(solve, "WHOLE_SHARE", Options().rlimit)
    checks = record_fresh_checks(monkeypatch)
    made: list[str] = []
    new_context, goals_unsat = solve.new_context, solve._goals_unsat

    def counted() -> z3.Context:
        made.append("in _goals_unsat" if inside else "elsewhere")
        return new_context()

    inside = False

    def marked(*args: Any) -> Any:
        nonlocal inside
        inside = True
        try:
            return goals_unsat(*args)
        finally:
            inside = False

    monkeypatch.setattr(solve, "new_context", counted)
    monkeypatch.setattr(solve, "_goals_unsat", marked)
    pairs = [(m, ob) for m, ob in obligations([load_text(THREE_CLAUSES, "three.mv")]) if ob.id == "L/INV/set"]
    [result] = prove_pairs(pairs, Options())
    assert result.status is Status.PROVED
    asked = [c for c in checks if c.stage == solve.EXACT_STAGE]
    assert [c.answer for c in asked] == [z3.unsat] * 3
    assert made.count("in _goals_unsat") == 1, made
    assert result.rlimit_used >= sum(c.units for c in asked) > 0


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_a_leak_that_breaks_one_conjunct_asked_in_the_shared_context_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, order: str) -> None:
    """An attack on the conjuncts sharing one context (solve._Run): with the whole goal given
    up, INV of `lend` is asked conjunct by conjunct in one context, and the broken clause
    (`one`, the second) must still fail it, with a counterexample that blames the write; the
    leak fails VM's WSC and LR too (KServ may not flow to VM). Over two files in either order, both encodings."""
    monkeypatch.setattr(solve, "WHOLE_SHARE", Options().rlimit)
    checks = record_fresh_checks(monkeypatch)
    modules = split_over_two_files(tmp_path, LENDS, "KServ", order)
    results = {r.obligation.id: r for r in prove_modules(modules, Options(encoding=encoding))}
    failing = ["L/INV/lend", "L/WSC/lend/VM", "L/LR/lend/VM"]
    assert {i: r.status for i, r in results.items() if r.status is not Status.PROVED} == \
        dict.fromkeys(failing, Status.FAILED)
    for i in failing:
        cex = results[i].counterexample
        assert cex is not None
        assert [LENDS.splitlines()[s.line - 1].strip() for s in cex.responsible] == \
            ["op lend() by KServ { owner[1] := VM(0) }"], i
    assert_replayed(list(results.values()))
    if encoding == "qf":  # the exact-first path asked conjuncts one by one, and found one broken
        asked = [c.answer for c in checks if c.stage == solve.EXACT_STAGE]
        assert z3.sat in asked and z3.unsat in asked, asked
