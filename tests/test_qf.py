"""The quantifier-free encoding (prover/qf.py): each way of removing a quantifier, what stays
quantified, and a property test that the encodings agree with Z3 on the quantified formula."""

from __future__ import annotations

import z3
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from microverify.prover.qf import eliminate, has_quantifier

BV8 = z3.BitVecSort(8)


def verdict(hyps: list[z3.BoolRef], goals: list[z3.BoolRef], *, eliminated: bool) -> z3.CheckSatResult:
    """sat/unsat of the hypotheses with the goals asserted negated (a validity obligation);
    unknown if Z3 needs more than an rlimit that keeps every test fast."""
    if eliminated:
        e = eliminate(hyps, goals, -1)
        assert e.quantifier_free, e.kept
        hyps, goals = e.hypotheses + e.side, e.goals
        assert not has_quantifier(hyps + goals)
    s = z3.Solver()
    s.set("rlimit", 5_000_000, "random_seed", 0)
    s.add(hyps)
    s.add(z3.Not(z3.And(goals)))
    return s.check()


def arrays(*names: str, index: z3.SortRef = BV8, value: z3.SortRef = BV8) -> list[z3.ArrayRef]:
    return [z3.Array(n, index, value) for n in names]


def test_fragment_is_instantiated_over_the_index_terms() -> None:
    a, b = arrays("a", "b")
    p = z3.BitVec("p", 8)
    k = z3.BitVec("k", 8)
    equal = z3.ForAll([k], a[k] == b[k])
    assert verdict([equal], [a[p] == b[p]], eliminated=True) == z3.unsat
    assert verdict([equal], [a[p] == b[p] + 1], eliminated=True) == z3.sat


def test_a_goal_forall_is_skolemized_and_its_witness_joins_the_index_set() -> None:
    a, b = arrays("a", "b")
    k, j = z3.BitVecs("k j", 8)
    assert verdict([z3.ForAll([k], a[k] == b[k])], [z3.ForAll([j], a[j] == b[j])], eliminated=True) == z3.unsat


def test_guards_against_numerals_split_the_sort_into_regions() -> None:
    a, b = arrays("a", "b")
    k, p = z3.BitVecs("k p", 8)
    outside = z3.ForAll([k], z3.Or(z3.ULT(k, 10), a[k] == b[k]))  # equal from 10 up
    assert verdict([outside, z3.UGE(p, 10)], [a[p] == b[p]], eliminated=True) == z3.unsat
    assert verdict([outside], [a[p] == b[p]], eliminated=True) == z3.sat  # p < 10 differs


def test_lambda_instances_keep_the_vacuity_check_exact() -> None:
    """All entries 0 except at p: satisfiable (λ is an index other than p); with a read of
    a 1 at an index of a region where entries must be 0, unsatisfiable."""
    (a,) = arrays("a")
    k, p = z3.BitVecs("k p", 8)
    zero = z3.ForAll([k], z3.Or(k == p, a[k] == 0))  # k == p: not a numeral, so not the fragment
    e = eliminate([zero], [z3.BoolVal(True)], -1)
    assert not e.quantifier_free  # 256 values: too many to expand, and not the fragment
    region = z3.ForAll([k], z3.Or(z3.ULT(k, 100), a[k] == 0))
    for extra, expected in [(a[p] == 1, z3.sat), (z3.And(a[p] == 1, z3.UGE(p, 100)), z3.unsat)]:
        e = eliminate([region, extra], [z3.BoolVal(True)], -1)
        s = z3.Solver()
        s.add(e.hypotheses + e.side)
        assert s.check() == expected


def test_small_sorts_outside_the_fragment_are_expanded() -> None:
    (a,) = arrays("a", index=z3.BitVecSort(3), value=z3.BitVecSort(3))
    k = z3.BitVec("k", 3)
    nested = z3.ForAll([k], a[a[k]] == k)  # a read at a read: not the fragment, 8 values
    e = eliminate([nested], [a[0] == a[0]], -1)
    assert e.quantifier_free and not has_quantifier(e.hypotheses)
    assert verdict([nested], [a[a[1]] == 1], eliminated=True) == z3.unsat


def test_what_cannot_go_is_kept_and_said() -> None:
    (a,) = arrays("a")
    k = z3.BitVec("k", 8)
    e = eliminate([z3.ForAll([k], a[a[k]] == k)], [z3.BoolVal(True)], -1)
    assert not e.quantifier_free
    assert "outside the array property fragment" in e.kept[0]


# -- property: on random formulas of the shape the lowering produces, the quantifier-free
#    encoding gives Z3's answer on the quantified one (over an 8-bit index: too many values to
#    expand, so the fragment's instances over I and the λs of each region are what is tested).

BV4 = z3.BitVecSort(4)
_A, _B = z3.Array("A", BV8, BV4), z3.Array("B", BV8, BV4)
_P, _Q = z3.BitVecs("P Q", 8)


def _index(draw: st.DrawFn) -> z3.BitVecRef:
    return draw(st.sampled_from([_P, _Q, z3.BitVecVal(draw(st.integers(0, 255)), 8)]))


@st.composite
def universal(draw: st.DrawFn) -> z3.BoolRef:
    k = z3.BitVec("k", 8)
    guard = [draw(st.sampled_from([z3.ULT, z3.UGE, lambda x, y: x == y, lambda x, y: x != y]))(
        k, z3.BitVecVal(draw(st.integers(0, 255)), 8)) for _ in range(draw(st.integers(0, 2)))]
    arr = draw(st.sampled_from([_A, z3.Store(_A, _P, z3.Extract(3, 0, _Q)), z3.Store(_B, _Q, 3)]))
    body = draw(st.sampled_from([arr[k] == _B[k], z3.ULE(arr[k], _B[k]), _A[k] != 3, _A[k] == 3,
                                 z3.ULT(_B[k], arr[k])]))
    return z3.ForAll([k], z3.Implies(z3.And(guard), body))


@st.composite
def ground(draw: st.DrawFn) -> z3.BoolRef:
    x, y = _index(draw), _index(draw)
    return draw(st.sampled_from([_A[x] == _B[y], z3.ULT(_A[x], _B[y]), _A[x] == 3, x == y, x != y,
                                 z3.ULT(x, y)]))


@settings(max_examples=60, deadline=None, derandomize=True)  # the same examples on every run
@given(st.lists(universal(), min_size=1, max_size=3), st.lists(ground(), max_size=2),
       st.lists(st.one_of(ground(), universal()), min_size=1, max_size=2))
def test_quantifier_free_encoding_agrees_with_z3_on_the_quantified_formula(
        hyps: list[z3.BoolRef], facts: list[z3.BoolRef], goals: list[z3.BoolRef]) -> None:
    quantified = verdict(hyps + facts, goals, eliminated=False)
    assume(quantified != z3.unknown)  # a formula Z3 cannot decide quickly says nothing here
    assert verdict(hyps + facts, goals, eliminated=True) == quantified


def test_every_quantifier_is_instantiated_in_the_regions_of_every_other() -> None:
    """Found by the property test: equal everywhere, yet B < A below 3, is unsatisfiable; the
    unguarded quantifier must be instantiated in the region [0, 3) of the guarded one too."""
    a, b = arrays("A", "B")
    k, p = z3.BitVecs("k p", 8)
    hyps = [z3.ForAll([k], a[k] == b[k]), z3.ForAll([k], z3.Implies(z3.ULT(k, 3), z3.ULT(b[k], a[k])))]
    assert verdict(hyps, [z3.ULT(a[p], b[p])], eliminated=False) == z3.unsat
    assert verdict(hyps, [z3.ULT(a[p], b[p])], eliminated=True) == z3.unsat
