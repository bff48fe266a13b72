"""`def` functions: checked once where they are declared, inlined where they are called.

A def is pure: its body sees its parameters, constants, enum members, principals and earlier
defs, not the state, an oracle or its counters. A call is replaced by the body with each
parameter replaced by the checked argument (capture-avoiding: a quantifier of the body whose
variable name occurs free in an argument is renamed), so what is lowered, proved and replayed
is exactly the expression the call stands for. The inlined nodes keep the spans of the
definition; the outermost one takes the span of the call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from microverify.dsl import ir
from microverify.dsl.spans import Span
from microverify.dsl.types import Type

PARAM = "defarg"  # the kind of a Ref to a def's parameter inside its checked body


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[tuple[str, Type], ...]
    result: Type
    body: ir.Expr
    span: Span


def inline(fn: Function, args: tuple[ir.Expr, ...], call: Span) -> ir.Expr:
    """The body of fn with its parameters replaced by args; the result has the call's span."""
    bindings = {name: arg for (name, _), arg in zip(fn.params, args)}
    taken = set().union(*(_free(a) for a in args))
    out = _subst(fn.body, bindings, {}, taken)
    return dataclasses.replace(out, span=call)  # type: ignore[type-var]


def _subst(e: ir.Expr, bindings: dict[str, ir.Expr], renamed: dict[str, str], taken: set[str]) -> ir.Expr:
    if isinstance(e, ir.Ref):
        if e.kind == PARAM:
            return bindings[e.name]
        if e.kind == "bound" and e.name in renamed:
            return dataclasses.replace(e, name=renamed[e.name])
        return e
    if isinstance(e, ir.Quant):
        inner = dict(renamed)
        binders = []
        for name, t in e.binders:
            new = name
            while new in taken:
                new += "'"
            inner[name] = new
            binders.append((new, t))
        body = _subst(e.body, bindings, inner, taken | {n for n, _ in binders})
        return dataclasses.replace(e, binders=tuple(binders), body=body)
    changes: dict[str, object] = {}
    for f in dataclasses.fields(e):  # type: ignore[arg-type]
        value = getattr(e, f.name)
        if _is_expr(value):
            changes[f.name] = _subst(value, bindings, renamed, taken)
        elif isinstance(value, tuple) and value and all(_is_expr(v) for v in value):
            changes[f.name] = tuple(_subst(v, bindings, renamed, taken) for v in value)
    return dataclasses.replace(e, **changes) if changes else e  # type: ignore[type-var, arg-type]


def _free(e: ir.Expr) -> set[str]:
    """The names of locals, arguments and bound variables e refers to (a superset is fine)."""
    if isinstance(e, ir.Ref):
        return {e.name}
    out: set[str] = set()
    for f in dataclasses.fields(e):  # type: ignore[arg-type]
        value = getattr(e, f.name)
        if _is_expr(value):
            out |= _free(value)
        elif isinstance(value, tuple):
            out |= set().union(*(_free(v) for v in value if _is_expr(v)))
    return out


_EXPR_TYPES = tuple(t for t in ir.Expr.__args__)  # type: ignore[attr-defined]


def _is_expr(value: object) -> bool:
    return isinstance(value, _EXPR_TYPES)
