"""`layer L extends U`: a refining layer that states only what changes (docs/language.md §10.4).

The layer is expanded here, before it is checked, into the layer written out in full, and that
layer is what is checked, lowered and proved: an inherited part is exactly the text of U,
checked again over L's state, and it keeps its spans in U's file. What L does not mention
carries over:

- every field of U that L's abstraction does not define stays a field of L, with the identity
  abstraction (L may redeclare it, at the same type); the fields L's abstraction defines are
  *replaced*: L has them only if it declares them;
- each conjunct of U's `init` that mentions no replaced field (L's `init` adds conjuncts; R-INIT
  still requires of L's `init` every conjunct of U's, through the abstraction); each invariant
  block of U that L does not restate by name;
  U's observation of each principal L does not observe; each operation of U that no operation
  of L implements (it refines U's operation of the same name).

Any other part of U that mentions a replaced field cannot mean the same over L's state, so it
is never left out silently: it is an error that names the part and the field, and L must
restate it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from microverify.dsl import ast, ir
from microverify.dsl.spans import Span

if TYPE_CHECKING:
    from microverify.dsl.checker import Checker


def expand(checker: Checker, d: ast.LayerDecl, upper: ast.LayerDecl, checked: ir.Layer) -> ast.LayerDecl:
    """`d` written out in full over `upper` (its expanded declaration; `checked` is its IR)."""
    inherit = _Inherit(checker, d, upper)
    own = {f.name: f for f in d.state}
    carried = [f for f in upper.state if f.name not in inherit.defined]
    identity = tuple(ast.AbsDef(f.name, (), ast.Name(f.name, own[f.name].span if f.name in own else f.span),
                                own[f.name].span if f.name in own else f.span)
                     for f in carried)

    name = d.name
    # `init` is a conjunction: U's conjuncts over carried fields, then L's own. One that mentions
    # a replaced field is left out; R-INIT (init_L(s) => init_U(α(s))) still requires it of L.
    init_fields = {e.span: e for e in checked.init}
    init = tuple(p for p in upper.init if p.span in init_fields
                 and not inherit.replaced(_fields([init_fields[p.span]]))) + d.init

    restated = {i.name for i in d.invariants if i.name is not None}
    pred_fields = {inv.span: inv.pred for inv in checked.invariants}
    invariants = []
    for inv in upper.invariants:
        if inv.name is not None and inv.name in restated:
            continue
        what = f"invariant `{inv.name}`" if inv.name else "an unnamed invariant"
        fix = (f"restate `invariant {inv.name} {{ ... }}` (an empty block drops it)" if inv.name
               else f"name it in {upper.name}, and restate it in {name}")
        if inherit.reads(what, fix, [pred_fields[p.span] for p in inv.preds if p.span in pred_fields], inv.span):
            invariants.append(inv)

    observed = {o.principal for o in d.observes}
    observes = []
    for o in upper.observes:
        if o.principal in observed:
            continue
        obs = checked.observation(o.principal)
        parts = [e for c in (obs.components if obs else ()) for e in (c.expr, c.where) if e is not None]
        if inherit.reads(f"the observation of `{o.principal}`", f"restate `observe {o.principal}`",
                         parts, o.span):
            observes.append(o)

    implemented = {op.name for op in d.ops} | {op.implements.op for op in d.ops if op.implements is not None}
    ops = []
    for op in upper.ops:
        if op.name in implemented:
            continue
        lowered = checked.op(op.name)
        if lowered is None:
            continue  # not checked in U: its error is reported there
        fields = ir.op_fields(lowered) | _fields([e for s in ir.statements(lowered.body) if isinstance(s, ir.Bind)
                                                  for e in (s.value, s.principal, s.source) if e is not None])
        if inherit.mentions(f"operation `{op.name}`", f"restate `op {op.name}`", fields, op.name_span):
            ops.append(replace(op, implements=None))  # it refines U's operation of the same name

    inherit.report()
    return replace(d, state=tuple(f for f in carried if f.name not in own) + d.state, init=init,
                   invariants=tuple(invariants) + d.invariants, observes=tuple(observes) + d.observes,
                   ops=tuple(ops) + d.ops, abstraction=identity + d.abstraction)


class _Inherit:
    """What an `extends` layer replaces, and the parts of U that mention it (one error for all)."""

    def __init__(self, checker: Checker, d: ast.LayerDecl, upper: ast.LayerDecl) -> None:
        self.checker = checker
        self.d = d
        self.upper = upper
        self.defined = {a.field for a in d.abstraction}
        self.problems: list[str] = []

    def replaced(self, fields: set[str]) -> list[str]:
        return sorted(fields & self.defined)

    def reads(self, what: str, fix: str, exprs: list[ir.Expr], at: Span) -> bool:
        """Whether the part of U made of `exprs` can be carried over (if not, it is noted)."""
        return self.mentions(what, fix, _fields(exprs), at)

    def mentions(self, what: str, fix: str, fields: set[str], at: Span) -> bool:
        replaced = self.replaced(fields)
        if replaced:
            names = ", ".join(f"`{f}`" for f in replaced)
            self.problems.append(f"{what} (at {at}) mentions {names}: {fix}")
        return not replaced

    def report(self) -> None:
        if self.problems:
            d, n = self.d, len(self.problems)
            self.checker.fail("inherit", d.span,
                              f"{d.name} extends {self.upper.name}, but {n} part(s) of {self.upper.name} mention "
                              f"a field {d.name} replaces (its abstraction defines it): restate "
                              f"{'it' if n == 1 else 'them'} in {d.name}", *self.problems)


def _fields(exprs: list[ir.Expr]) -> set[str]:
    found: set[str] = set()
    for e in exprs:
        ir.collect_fields(e, found)
    return found
