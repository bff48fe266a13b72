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
restate it. So are the other ways a carried part could change meaning or a part be lost: a
kept field redeclared at another type, a new field named like a parameter or `let` of an
operation that carries over, an operation of L that takes the name of one of U it does not
implement, an empty invariant block that names no invariant of U.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from microverify.dsl import ast, ir
from microverify.dsl.exprs import CheckFailed
from microverify.dsl.spans import Span

if TYPE_CHECKING:
    from microverify.dsl.checker import Checker


class Restate(Exception):
    """Parts of U mention a field L replaces (reported). `partial` is L written out with the
    parts that do carry over: checked for the errors of L's own text, never proved."""

    def __init__(self, partial: ast.LayerDecl) -> None:
        super().__init__()
        self.partial = partial


def expand(checker: Checker, d: ast.LayerDecl, upper: ast.LayerDecl, checked: ir.Layer) -> ast.LayerDecl:
    """`d` written out in full over `upper` (its expanded declaration; `checked` is its IR).
    Raises, after reporting why, Restate if only parts of U to restate stop it, CheckFailed if
    something else does."""
    if _incomplete(upper, checked):
        raise CheckFailed()  # a part of U uses a broken global, reported where it is declared
    x = _Inherit(checker, d, upper, checked)
    state, abstraction = x.state()
    expanded = replace(d, state=state, abstraction=abstraction, init=x.init(), invariants=x.invariants(),
                       observes=x.observations(), ops=x.operations())
    x.report()
    if x.problems:
        raise Restate(expanded)
    return expanded


class _Inherit:
    """L (`d`) over U (`upper`, with its IR `checked`): each kind of part carried over, and what
    stops a part from carrying over (reported together, by `report`)."""

    def __init__(self, checker: Checker, d: ast.LayerDecl, upper: ast.LayerDecl, checked: ir.Layer) -> None:
        self.checker = checker
        self.d = d
        self.upper = upper
        self.checked = checked
        self.defined = {a.field for a in d.abstraction}  # U's fields L replaces
        self.own = {f.name: f for f in d.state}
        self.problems: list[str] = []  # parts that mention a replaced field
        self.failed = False

    def state(self) -> tuple[tuple[ast.StateField, ...], tuple[ast.AbsDef, ...]]:
        """U's fields L keeps (with the identity abstraction), then L's own; a kept field that L
        redeclares keeps its type."""
        d, upper, own = self.d, self.upper, self.own
        carried = [f for f in upper.state if f.name not in self.defined]
        for f in carried:
            if f.name in own:
                mine = self.checker.guard(lambda f=f: self.checker.resolve_type(own[f.name].type))
                theirs = self.checked.field_type(f.name)
                if mine is not None and mine != theirs:
                    self.fail("type-mismatch", own[f.name].span,
                              f"`{f.name}` is a field of {upper.name} of type {theirs}, which {d.name} keeps (its "
                              f"abstraction does not define it): a kept field keeps its type; to change it, define "
                              f"`{f.name}` in {d.name}'s abstraction", f"{upper.name}'s field is at {f.span}")
        identity = tuple(ast.AbsDef(f.name, (), ast.Name(f.name, own[f.name].span if f.name in own else f.span),
                                    own[f.name].span if f.name in own else f.span) for f in carried)
        return tuple(f for f in carried if f.name not in own) + d.state, identity + d.abstraction

    def init(self) -> tuple[ast.Expr, ...]:
        """`init` is a conjunction: U's conjuncts over kept fields, then L's own. One that mentions
        a replaced field is left out; R-INIT (init_L(s) => init_U(α(s))) still requires it of L."""
        kept = tuple(p for p, e in zip(self.upper.init, self.checked.init) if not self.replaced(_fields([e])))
        return kept + self.d.init

    def invariants(self) -> tuple[ast.Invariant, ...]:
        """U's blocks that L does not restate by name, then L's; an empty block drops one."""
        d, upper = self.d, self.upper
        restated = {i.name for i in d.invariants if i.name is not None}
        known = {i.name for i in upper.invariants if i.name is not None}
        for inv in d.invariants:
            if inv.name is not None and not inv.preds and inv.name not in known:
                self.fail("unknown-name", inv.span,
                          f"the empty block `invariant {inv.name} {{}}` drops no invariant of {upper.name}: it has "
                          "none of that name", *self.checker.exprs.did_you_mean(inv.name, known))
        lowered = iter(self.checked.invariants)  # one IR invariant per predicate, in order
        kept = []
        for inv in upper.invariants:
            preds = [next(lowered).pred for _ in inv.preds]
            if inv.name is not None and inv.name in restated:
                continue
            what = f"invariant `{inv.name}`" if inv.name else "an unnamed invariant"
            fix = (f"restate `invariant {inv.name} {{ ... }}` (an empty block drops it)" if inv.name
                   else f"name it in {upper.name}, and restate it in {d.name}")
            if self.reads(what, fix, preds, inv.span):
                kept.append(inv)
        return tuple(kept) + d.invariants

    def observations(self) -> tuple[ast.Observe, ...]:
        """U's observation of each principal L does not observe, then L's."""
        observed = {o.principal for o in self.d.observes}
        kept = []
        for o in self.upper.observes:
            if o.principal in observed:
                continue
            obs = self.checked.observation(o.principal)
            parts = [e for c in (obs.components if obs else ()) for e in (c.expr, c.where) if e is not None]
            if self.reads(f"the observation of `{o.principal}`", f"restate `observe {o.principal}`", parts, o.span):
                kept.append(o)
        return tuple(kept) + self.d.observes

    def operations(self) -> tuple[ast.OpDecl, ...]:
        """U's operations that no operation of L implements (by name, or by `implements`), each
        refining U's operation of the same name, then L's."""
        d, upper = self.d, self.upper
        targets = {op.implements.op if op.implements is not None else op.name for op in d.ops}
        mine = {op.name: op for op in d.ops}
        new_fields = {f for f in self.own if f not in {u.name for u in upper.state}}
        clashes: dict[str, list[ast.OpDecl]] = {}  # a new field of L -> U's operations that bind its name
        kept = []
        for op in upper.ops:
            if op.name in targets:
                continue
            lowered = self.checked.op(op.name)
            assert lowered is not None  # _incomplete: every operation of U is checked
            if op.name in mine:
                self.fail("duplicate", mine[op.name].name_span,
                          f"{d.name}'s operation `{op.name}` implements `{mine[op.name].implements.op}`, "  # type: ignore[union-attr]
                          f"so {upper.name}'s `{op.name}` would carry over beside it: rename one of them, or "
                          f"implement `{op.name}` too", f"{upper.name}'s `{op.name}` is at {op.name_span}")
                continue
            names = {n for n, _ in lowered.params} | {s.name for s in ir.statements(lowered.body) if isinstance(s, ir.Let)}
            for clash in new_fields & names:
                clashes.setdefault(clash, []).append(op)
            if self.mentions(f"operation `{op.name}`", f"restate `op {op.name}`",
                             ir.op_fields(lowered, binds=True), op.name_span):
                kept.append(replace(op, implements=None))  # it refines U's operation of the same name
        for field, where in sorted(clashes.items()):
            self.fail("duplicate", self.own[field].span,
                      f"{d.name}'s new field `{field}` is also a parameter or `let` of {upper.name}'s "
                      f"operation(s) {', '.join(f'`{op.name}`' for op in where)}, which carry over: rename the "
                      "field, or restate them", *(f"{upper.name}'s `{op.name}` is at {op.name_span}" for op in where))
        return tuple(kept) + d.ops

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

    def fail(self, code: str, span: Span, message: str, *notes: str) -> None:
        self.checker.fail(code, span, message, *notes)
        self.failed = True

    def report(self) -> None:
        """One error for every part that mentions a replaced field (then `expand` raises Restate);
        CheckFailed if anything else failed (a kept field at another type, a name clash): L's own
        text, read over what would carry over, would then give errors that follow from this one."""
        if self.problems:
            d, n = self.d, len(self.problems)
            self.checker.fail("inherit", d.span,
                              f"{d.name} extends {self.upper.name}, but {n} part(s) of {self.upper.name} mention "
                              f"a field {d.name} replaces (its abstraction defines it): restate "
                              f"{'it' if n == 1 else 'them'} in {d.name}", *self.problems)
        if self.failed:
            raise CheckFailed()


def _incomplete(upper: ast.LayerDecl, checked: ir.Layer) -> bool:
    """Whether U's IR lacks a part of its text: a part that used a broken global fails without an
    error of its own (the global's is reported once), and then nothing can be matched to it."""
    return (len(checked.init) != len(upper.init)
            or len(checked.invariants) != sum(len(i.preds) for i in upper.invariants)
            or any(checked.op(op.name) is None for op in upper.ops)
            or any(checked.observation(o.principal) is None for o in upper.observes))


def _fields(exprs: list[ir.Expr]) -> set[str]:
    found: set[str] = set()
    for e in exprs:
        ir.collect_fields(e, found)
    return found
