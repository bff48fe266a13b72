"""Z3 terms built through the C API, for the constructors the lowering calls most.

z3py's constructors check and coerce their arguments before the one C call that builds the
term: `z3.And(a, b)` takes about 20 times as long as `Z3_mk_and`, `z3.Select` 10 times as
long as `Z3_mk_select`, and building formulas, not solving them, is where most of a run goes
(docs/ci.md, "Speed"). These functions make exactly the C calls z3py would make on the same
arguments, so they build the same terms (tests/test_terms.py); what they skip is only the
coercion of Python values, which the lowering never passes. Z3 still checks sorts: a
mismatch raises z3.Z3Exception, as it would through z3py. Every argument must be a term of
the same context (checked here: Z3 itself does not)."""

from __future__ import annotations

from collections.abc import Sequence

import z3
from z3.z3 import _to_expr_ref  # a raw AST as an expression (not exported by z3)


def _ctx(terms: Sequence[z3.ExprRef]) -> z3.Context:
    ctx = terms[0].ctx
    for t in terms:
        if t.ctx is not ctx:
            raise z3.Z3Exception("terms of different contexts in one term")
    return ctx


def _array(terms: Sequence[z3.ExprRef]) -> z3.Ast:
    return (z3.Ast * len(terms))(*(t.as_ast() for t in terms))


def and_(terms: Sequence[z3.BoolRef]) -> z3.BoolRef:
    """z3.And(terms): at least one term."""
    ctx = _ctx(terms)
    return z3.BoolRef(z3.Z3_mk_and(ctx.ref(), len(terms), _array(terms)), ctx)


def or_(terms: Sequence[z3.BoolRef]) -> z3.BoolRef:
    """z3.Or(terms): at least one term."""
    ctx = _ctx(terms)
    return z3.BoolRef(z3.Z3_mk_or(ctx.ref(), len(terms), _array(terms)), ctx)


def not_(a: z3.BoolRef) -> z3.BoolRef:
    return z3.BoolRef(z3.Z3_mk_not(a.ctx.ref(), a.as_ast()), a.ctx)


def implies(a: z3.BoolRef, b: z3.BoolRef) -> z3.BoolRef:
    ctx = _ctx((a, b))
    return z3.BoolRef(z3.Z3_mk_implies(ctx.ref(), a.as_ast(), b.as_ast()), ctx)


def eq(a: z3.ExprRef, b: z3.ExprRef) -> z3.BoolRef:
    """a == b, for terms of one sort."""
    ctx = _ctx((a, b))
    return z3.BoolRef(z3.Z3_mk_eq(ctx.ref(), a.as_ast(), b.as_ast()), ctx)


def ite(c: z3.BoolRef, a: z3.ExprRef, b: z3.ExprRef) -> z3.ExprRef:
    """z3.If(c, a, b), for a and b of one sort."""
    ctx = _ctx((c, a, b))
    return _to_expr_ref(z3.Z3_mk_ite(ctx.ref(), c.as_ast(), a.as_ast(), b.as_ast()), ctx)  # type: ignore[no-any-return]


def select(a: z3.ExprRef, i: z3.ExprRef, scalar: type[z3.ExprRef] | None = None) -> z3.ExprRef:
    """a[i]. `scalar` is the class of the entry when the caller knows it (z3.BoolRef or
    z3.BitVecRef; z3.ArrayRef for a nested array), else it is asked of Z3."""
    ctx = _ctx((a, i))
    raw = z3.Z3_mk_select(ctx.ref(), a.as_ast(), i.as_ast())
    return scalar(raw, ctx) if scalar is not None else _to_expr_ref(raw, ctx)  # type: ignore[no-any-return]


def store(a: z3.ExprRef, i: z3.ExprRef, v: z3.ExprRef) -> z3.ArrayRef:
    ctx = _ctx((a, i, v))
    return z3.ArrayRef(z3.Z3_mk_store(ctx.ref(), a.as_ast(), i.as_ast(), v.as_ast()), ctx)


def substitute(t: z3.BoolRef, pairs: Sequence[tuple[z3.ExprRef, z3.ExprRef]]) -> z3.BoolRef:
    """z3.substitute(t, *pairs): every `a` of a pair replaced by its `b`, all at once (each pair
    of one sort: Z3 checks it)."""
    ctx = _ctx([t] + [x for pair in pairs for x in pair])
    froms, tos = [a for a, _ in pairs], [b for _, b in pairs]
    raw = z3.Z3_substitute(ctx.ref(), t.as_ast(), len(pairs), _array(froms), _array(tos))
    return _to_expr_ref(raw, ctx)  # type: ignore[no-any-return]  # a quantifier is a QuantifierRef


def free_constants(t: z3.ExprRef) -> list[z3.ExprRef]:
    """The uninterpreted constants of t, each once (bound variables are no constants)."""
    seen: set[int] = set()
    out = []
    todo = [t]
    while todo:
        u = todo.pop()
        if u.get_id() in seen:
            continue
        seen.add(u.get_id())
        if z3.is_const(u) and u.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            out.append(u)
        elif z3.is_app(u):
            todo.extend(u.children())
        elif z3.is_quantifier(u):
            todo.append(u.body())
    return out
