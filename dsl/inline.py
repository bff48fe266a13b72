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
import functools
from dataclasses import dataclass

from microverify.dsl import ir
from microverify.dsl.limits import MAX_DEPTH, MAX_EXPANDED_NODES
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


class TooLarge(Exception):
    """An expansion beyond MAX_EXPANDED_NODES: the checker reports it at the call (`too-large`)."""


def expanded(e: ir.Expr, known: dict[int, tuple[object, int, int]] | None = None) -> tuple[int, int]:
    """The number of nodes and the depth of `e` as a tree, each counted only up to just past
    its limit (MAX_EXPANDED_NODES, MAX_DEPTH). Inlining shares an argument among the uses of
    its parameter, so `e` is a graph that may stand for a tree exponentially larger: this walks
    each shared node once. `known` (node id -> (node, size, depth)) carries what earlier calls
    counted; it keeps the nodes alive, so an id is never reused while it is there."""
    known = {} if known is None else known
    stack: list[tuple[object, bool]] = [(e, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in known:
            continue
        children = _children(node)
        if not children:
            known[id(node)] = (node, 1, 1)
            continue
        if not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in known)
            continue
        size = min(MAX_EXPANDED_NODES + 1, 1 + sum(known[id(c)][1] for c in children))
        depth = min(MAX_DEPTH + 1, 1 + max((known[id(c)][2] for c in children), default=0))
        known[id(node)] = (node, size, depth)
    _, size, depth = known[id(e)]
    return size, depth


def _children(node: object) -> list[object]:
    fields: tuple[str, ...] = _expr_fields(type(node))  # type: ignore[arg-type]
    return [child for name in fields if (child := getattr(node, name)) is not None]


@functools.cache
def _expr_fields(cls: type) -> tuple[str, ...]:
    """The fields of an expression class that hold an expression: those annotated `Expr` or
    `Expr | None` (dsl/ir.py). Any other annotation that mentions Expr (a tuple of them, say)
    is an error here, not a child left out of the walks (`_free` decides what to rename)."""
    fields = dataclasses.fields(cls)
    odd = [f.name for f in fields if "Expr" in str(f.type) and str(f.type) not in ("Expr", "Expr | None")]
    if odd:
        raise TypeError(f"{cls.__name__}.{odd[0]}: an expression field of a kind dsl/inline.py does not walk")
    return tuple(f.name for f in fields if str(f.type) in ("Expr", "Expr | None"))


def inline(fn: Function, args: tuple[ir.Expr, ...], call: Span,
           known: dict[int, tuple[object, int, int]] | None = None) -> ir.Expr:
    """The body of fn with its parameters replaced by args; the result has the call's span.
    TooLarge when the result has more than MAX_EXPANDED_NODES nodes as a tree. Building it
    costs no more than the body (within the limit when it was checked): the arguments are
    shared among the uses of their parameters, not copied, and counted once (`known`)."""
    bindings = {name: arg for (name, _), arg in zip(fn.params, args)}
    taken = set().union(*(_free(a) for a in args))
    out = _subst(fn.body, bindings, {}, taken)
    if expanded(out, known)[0] > MAX_EXPANDED_NODES:
        raise TooLarge(f"calling `{fn.name}` here expands to more than {MAX_EXPANDED_NODES:,} nodes "
                       f"(a def is inlined at every call, its arguments at every use of its parameters)")
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
    """The names of locals, arguments and bound variables e refers to (a superset is fine);
    each shared node looked at once."""
    out: set[str] = set()
    seen: set[int] = set()
    stack: list[object] = [e]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ir.Ref):
            out.add(node.name)
        else:
            stack.extend(_children(node))
    return out


_EXPR_TYPES = tuple(t for t in ir.Expr.__args__)  # type: ignore[attr-defined]


def _is_expr(value: object) -> bool:
    return isinstance(value, _EXPR_TYPES)
