"""layers/terms.py builds, through Z3's C API, the very terms z3py's constructors build from the
same arguments; it only skips z3py's coercions. A sort or context error is still an error."""

from __future__ import annotations

import pytest
import z3

from microverify.layers import terms


@pytest.fixture()
def ctx() -> z3.Context:
    return z3.Context()


def test_each_constructor_builds_what_z3py_builds(ctx: z3.Context) -> None:
    p, q, r = (z3.Bool(n, ctx) for n in "pqr")
    x, y = z3.BitVecs("x y", 8, ctx)
    a = z3.Array("a", z3.BitVecSort(8, ctx), z3.BitVecSort(8, ctx))
    b = z3.Array("b", z3.BitVecSort(8, ctx), z3.BoolSort(ctx))
    nested = z3.Array("n", z3.BitVecSort(8, ctx), z3.ArraySort(z3.BitVecSort(8, ctx), z3.BoolSort(ctx)))
    lam = z3.Lambda([x], x + y)
    pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = [
        (terms.and_([p, q, r]), z3.And([p, q, r])),
        (terms.and_((p,)), z3.And([p])),
        (terms.or_((p, q)), z3.Or(p, q)),
        (terms.not_(p), z3.Not(p)),
        (terms.implies(p, q), z3.Implies(p, q)),
        (terms.eq(x, y), x == y),
        (terms.eq(p, q), p == q),
        (terms.eq(a, a), a == a),
        (terms.ite(p, x, y), z3.If(p, x, y)),
        (terms.ite(p, a, a), z3.If(p, a, a)),
        (terms.select(a, x), z3.Select(a, x)),
        (terms.select(a, x, z3.BitVecRef), z3.Select(a, x)),
        (terms.select(b, x, z3.BoolRef), z3.Select(b, x)),
        (terms.select(nested, x, z3.ArrayRef), z3.Select(nested, x)),
        (terms.select(lam, x), z3.Select(lam, x)),
        (terms.store(a, x, y), z3.Store(a, x, y)),
        (terms.substitute(z3.ForAll([x], a[x] == y), [(a, z3.Store(a, x, y)), (y, x + 1)]),
         z3.substitute(z3.ForAll([x], a[x] == y), (a, z3.Store(a, x, y)), (y, x + 1))),
        (terms.substitute(z3.And(p, q), [(p, q), (q, p)]), z3.And(q, p)),  # all at once
    ]
    for mine, theirs in pairs:
        assert mine.eq(theirs), (mine, theirs)
        assert type(mine) is type(theirs), (mine, type(mine), type(theirs))
        assert mine.sort().eq(theirs.sort())


def test_a_sort_error_is_an_error(ctx: z3.Context) -> None:
    p = z3.Bool("p", ctx)
    x = z3.BitVec("x", 8, ctx)
    w = z3.BitVec("w", 4, ctx)
    a = z3.Array("a", z3.BitVecSort(8, ctx), z3.BitVecSort(8, ctx))
    for build in (lambda: terms.and_((p, x)), lambda: terms.eq(x, w), lambda: terms.ite(p, x, w),
                  lambda: terms.select(a, w), lambda: terms.store(a, x, w), lambda: terms.not_(x),
                  lambda: terms.substitute(x == x, [(x, w)])):
        with pytest.raises(z3.Z3Exception):
            build()


def test_terms_of_two_contexts_are_refused(ctx: z3.Context) -> None:
    p = z3.Bool("p", ctx)
    q = z3.Bool("q", z3.Context())
    with pytest.raises(z3.Z3Exception, match="different contexts"):
        terms.and_((p, q))
    with pytest.raises(z3.Z3Exception, match="different contexts"):
        terms.implies(p, q)
    with pytest.raises(z3.Z3Exception, match="different contexts"):
        terms.substitute(p, [(p, q)])
