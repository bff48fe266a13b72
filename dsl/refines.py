"""Checking what a refining layer adds: the abstraction function, the mapping of its
operations onto the upper layer's, and oracle bindings (DESIGN §4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from microverify.dsl import ast, ir
from microverify.dsl.exprs import CheckFailed, Context
from microverify.dsl.spans import Span
from microverify.dsl.types import PRINCIPAL, MapType, RecordType, Type

if TYPE_CHECKING:
    from microverify.dsl.checker import Checker


def order_layers(checker: Checker, decls: list[ast.LayerDecl]) -> list[ast.LayerDecl]:
    """Upper layers before the layers that refine them; unknown uppers and cycles diagnosed.
    Iterative: a chain of any length declared bottom first must not exhaust Python's stack."""
    by_name: dict[str, ast.LayerDecl] = {}
    for decl in decls:
        first = by_name.setdefault(decl.name, decl)
        if first is not decl:  # never ordered, so never checked: it must not vanish silently
            checker.fail("duplicate", decl.span, f"layer `{decl.name}` is already declared",
                         f"first declared at {first.span}")
    decls = [decl for decl in decls if by_name[decl.name] is decl]
    ordered: list[ast.LayerDecl] = []
    state: dict[str, str] = {}
    for start in decls:
        chain: list[ast.LayerDecl] = []  # start, the layer it refines, ... while not yet ordered
        d: ast.LayerDecl | None = start
        while d is not None and state.get(d.name) is None:
            state[d.name] = "active"
            chain.append(d)
            upper = by_name.get(d.refines) if d.refines is not None else None
            if d.refines is not None and upper is None:
                checker.exprs.unknown(d.refines, d.span, by_name, "layer")
            elif upper is not None and state.get(upper.name) == "active":
                names = [x.name for x in chain]
                cycle = " -> ".join(names[names.index(upper.name):] + [upper.name])
                checker.fail("refinement", upper.span, f"layers refine each other in a cycle ({cycle})")
                upper = None
            d = upper
        for x in reversed(chain):
            state[x.name] = "done"
            ordered.append(x)
    return ordered


def abstraction(checker: Checker, d: ast.LayerDecl, lower: dict[str, Type],
                upper: ir.Layer) -> tuple[ir.AbsDef, ...]:
    """Type-check every definition and that they cover each upper field exactly once."""
    defs: list[ir.AbsDef] = []
    for a in d.abstraction:
        checked = checker.guard(lambda a=a: _abs_def(checker, a, lower, upper))
        if checked is not None:
            defs.append(checked)
    if len(defs) == len(d.abstraction):
        for f in upper.fields:
            mine = [x.path for x in defs if x.field == f.name]
            problem = _coverage(f.type, mine)
            if problem:
                checker.fail("refinement", d.span,
                             f"the abstraction of `{f.name}` (of layer {upper.name}) {problem}")
    return tuple(defs)


def _abs_def(checker: Checker, a: ast.AbsDef, lower: dict[str, Type], upper: ir.Layer) -> ir.AbsDef:
    try:
        t = upper.field_type(a.field)
    except KeyError:
        if a.field in checker.rejected_fields.get(upper.name, ()):
            raise CheckFailed() from None  # reported where it is declared
        raise checker.exprs.unknown(a.field, a.span, (f.name for f in upper.fields),
                                    f"field of layer {upper.name}") from None
    path: list[tuple[str, Type] | str] = []
    scope: dict[str, tuple[str, Type]] = {}
    for step in a.path:
        if isinstance(step, ast.AbsIndex):
            if not isinstance(t, MapType):
                raise checker.fail("refinement", step.span, f"indexing a value of type {t}")
            key = checker.resolve_type(step.type)
            if key != t.key:
                raise checker.fail("type-mismatch", step.span, f"the key type here is {t.key}, not {key}")
            if step.binder in scope or step.binder in lower:
                raise checker.fail("duplicate", step.span, f"`{step.binder}` clashes with an earlier name")
            scope[step.binder] = ("bound", key)
            path.append((step.binder, key))
            t = t.value
        else:
            ftype = t.field(step.name) if isinstance(t, RecordType) else None
            if ftype is None:
                raise checker.fail("type-mismatch", step.span, f"{t} has no field `{step.name}`")
            path.append(step.name)
            t = ftype
    ctx = Context(checker.globals, lower, scope, in_body=False, what="the abstraction")
    return ir.AbsDef(a.field, tuple(path), checker.exprs.check(a.value, ctx, t), a.span)


def _coverage(t: Type, paths: list[tuple[tuple[str, Type] | str, ...]]) -> str:
    """'' if the paths define every leaf of t exactly once, else what is wrong."""
    if not paths:
        return "is missing"
    if any(len(p) == 0 for p in paths):
        return "" if len(paths) == 1 else "is defined more than once"
    if isinstance(t, MapType):
        if any(isinstance(p[0], str) for p in paths):
            return "must index the map before naming a record field"
        return _coverage(t.value, [p[1:] for p in paths])
    if isinstance(t, RecordType):
        for name, ftype in t.fields:
            problem = _coverage(ftype, [p[1:] for p in paths if p[0] == name])
            if problem:
                return f"(field `{name}`) {problem}"
        return ""
    return "is defined more than once" if len(paths) > 1 else ""


def implements(checker: Checker, d: ast.OpDecl, op: ir.Op, upper: ir.Layer,
               fields: dict[str, Type]) -> ir.Implements | None:
    """The upper operation `op` refines: explicit, by the same name, or none (a stutter step)."""
    if d.implements is None:
        target = upper.op(d.name)
        if target is None:
            return None
        if [t for _, t in target.params] != [t for _, t in op.params]:
            raise checker.fail("refinement", d.name_span,
                               f"`{d.name}` has the name of an operation of {upper.name} but not its "
                               f"parameter types; add `implements {d.name}(...)`")
        same: tuple[ir.Expr, ...] = tuple(ir.Ref(n, "arg", t, d.name_span) for n, t in op.params)
        _same_result(checker, d, op, target)
        return ir.Implements(target.name, same, d.name_span)
    impl = d.implements
    target = upper.op(impl.op)
    if target is None:
        raise checker.exprs.unknown(impl.op, impl.span, (o.name for o in upper.ops),
                                    f"operation of layer {upper.name}")
    if len(impl.args) != len(target.params):
        raise checker.fail("arity", impl.span,
                           f"`{impl.op}` takes {len(target.params)} argument(s), found {len(impl.args)}")
    scope = {n: ("arg", t) for n, t in op.params}
    ctx = Context(checker.globals, fields, scope, in_body=False, what="`implements`")
    args = tuple(checker.exprs.check(a, ctx, t) for a, (_, t) in zip(impl.args, target.params))
    _same_result(checker, d, op, target)
    return ir.Implements(target.name, args, impl.span)


def _same_result(checker: Checker, d: ast.OpDecl, op: ir.Op, target: ir.Op) -> None:
    if op.result != target.result:
        raise checker.fail("refinement", d.name_span,
                           f"`{d.name}` returns {op.result or 'nothing'} but `{target.name}` returns "
                           f"{target.result or 'nothing'}")


def bind(checker: Checker, s: ast.Bind, ctx: Context, refining: bool) -> ir.Bind:
    if not refining:
        raise checker.fail("refinement", s.span, "`bind` belongs in a layer that refines another")
    oracle = checker.globals.oracles.get(s.oracle)
    if oracle is None:
        raise checker.exprs.unknown(s.oracle, s.oracle_span, checker.globals.oracles, "oracle")
    principal = None
    if s.principal is not None:
        principal = checker.exprs.check(s.principal, ctx, PRINCIPAL)
    value = checker.exprs.check(s.value, ctx, oracle.type)
    return ir.Bind(s.oracle, value, principal, s.span, _bind_source(checker, s, ctx, oracle))


def _bind_source(checker: Checker, s: ast.Bind, ctx: Context, oracle: ir.Oracle) -> ir.Expr:
    """The member of the oracle's source family that `from Q` names (a single principal may
    be left implicit): R-BIND proves that the bound value is determined by its view, and that
    Q is of that family."""
    family = checker.globals.principals[oracle.source]
    if s.source is None:
        if family.param_type is not None:
            raise checker.fail("oracle-source", s.span,
                               f"say which {family.name} the value of `{s.oracle}` comes from: "
                               f"`bind {s.oracle} = ... from {family.name}(...)`",
                               f"oracle `{s.oracle}` is declared `from {family.name}` at {oracle.span}")
        return ir.PrincipalVal(family.name, None, PRINCIPAL, s.span)
    source = checker.exprs.check(s.source, ctx, PRINCIPAL)
    # Any principal-valued expression may name the source (`from owner[p]`); R-BIND proves that
    # it is a member of the family. A constructor of another family is wrong on its face.
    if isinstance(source, ir.PrincipalVal) and source.principal != family.name:
        raise checker.fail("oracle-source", s.source.span,
                           f"the source of `{s.oracle}` is {family.name}"
                           + ("(...)" if family.param_type is not None else "")
                           + ": write it here as " + (f"`{family.name}(e)`" if family.param_type
                                                      else f"`{family.name}`"),
                           f"oracle `{s.oracle}` is declared `from {family.name}` at {oracle.span}")
    return source


def read_or_bind(checker: Checker, ops: list[ir.Op]) -> None:
    """A refining layer either reads an oracle (its values come from outside, as in the layer
    above) or binds it (its values are this layer's state), never both: the two runs of the
    transfer theorem must agree on which index is which kind (docs/theory.md §7)."""
    reads: dict[str, Span] = {}
    binds: dict[str, Span] = {}
    for op in ops:
        for st in ir.statements(op.body):
            if isinstance(st, ir.Bind):
                binds.setdefault(st.oracle, st.span)
            elif isinstance(st, (ir.Let, ir.Assign)) and isinstance(st.value, ir.ReadOracle):
                reads.setdefault(st.value.oracle, st.value.span)
    for name in sorted(set(reads) & set(binds)):
        checker.fail("refinement", binds[name],
                     f"this layer both reads and binds oracle `{name}`; a refining layer does one "
                     "or the other with each oracle", f"the read is at {reads[name]}")
