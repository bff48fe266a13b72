"""Security-preserving refinement, DESIGN §4: one function per obligation.

The lower layer L refines the upper layer U through α (the layer's `abstraction`); both are
lowered into one context with a shared encoder, so the oracle functions are the same symbols.
"""

from __future__ import annotations

from collections.abc import Callable

import z3

from microverify.dsl import ir
from microverify.dsl.types import Type, is_scalar
from microverify.layers.abstraction import abstract
from microverify.layers.encoding import Value
from microverify.layers.execute import Step
from microverify.layers.lower import lower
from microverify.layers.model import Labeled, State, SymLayer, collect_fields
from microverify.oracles.oracles import field_label
from microverify.prover.formula import Formula, Run, Table
from microverify.prover.obligations import state_dependent_args
from microverify.prover.unwinding import base_hypotheses, runs


def upper_of(L: SymLayer) -> SymLayer:
    assert L.layer.refines is not None
    return type(L)(L.module, L.module.layer(L.layer.refines), L.ctx, L.enc)


def alpha(L: SymLayer, U: SymLayer, s: State) -> State:
    return abstract(L.enc, L.layer, U.layer, s)


def _field_goals(U: SymLayer, a: State, b: State, fields: list[ir.StateField], what: str) -> list[Labeled]:
    """a.f = b.f for each field, maps compared at a witness key (named in a counterexample)."""
    goals = []
    for f in fields:
        witnesses: dict[str, tuple[Type, z3.ExprRef]] = {}

        def witness(key_type: Type, name: str = f.name,
                    found: dict[str, tuple[Type, z3.ExprRef]] = witnesses) -> z3.ExprRef:
            c = z3.Const(U.enc.unique(f"w_{name}"), U.enc.sort(key_type))
            found[f"key#{len(found)}"] = (key_type, c)
            return c

        same = U.enc.equal(f.type, a[f.name], b[f.name], witness)
        shown = field_label(f.name)
        goals.append(Labeled(f"`{shown}`", same, f.span, witnesses=witnesses, fields={f.name},
                             failure=f"{what} `{shown}`"))
    return goals


def _user_fields(U: SymLayer) -> list[ir.StateField]:
    return list(U.layer.fields)


def _counter_fields(U: SymLayer) -> list[ir.StateField]:
    return [f for f in U.fields if f.name not in {x.name for x in U.layer.fields}]


def refined_init(L: SymLayer) -> Formula:
    # init_L(s) ⇒ init_U(α(s))
    return _state_refinement(L, "init_L(s)", L.init, lambda U, a: U.init_goals(a))


def refined_invariant(L: SymLayer) -> Formula:
    # I_L(s) ⇒ I_U(α(s))
    return _state_refinement(L, "I_L(s)", L.invariant, lambda U, a: U.invariant_goals(a))


def _state_refinement(L: SymLayer, label: str, lower: Callable[[State], z3.BoolRef],
                      upper: Callable[[SymLayer, State], list[Labeled]]) -> Formula:
    U = upper_of(L)
    s = L.fresh_state("s")
    a = alpha(L, U, s)
    return Formula("valid", L, [Labeled(label, lower(s))], upper(U, a), runs=[Run("s", s)],
                   tables=[Table("lower", L, ["s"], [s]), Table("upper", U, ["α(s)"], [a])])


class _Steps:
    """One lower step and the upper step it must match, from α of the same state."""

    def __init__(self, L: SymLayer, op: ir.Op) -> None:
        assert op.implements is not None
        self.U = upper_of(L)
        self.op = op
        self.s = L.fresh_state("s")
        self.args = L.fresh_args(op)
        upper_op = self.U.layer.op(op.implements.op)
        assert upper_op is not None
        self.upper_op: ir.Op = upper_op
        env = L.env(self.s, self.args)
        # an argument may be a record (lower, not scalar): the upper step takes values of any type
        self.upper_args: dict[str, Value] = {
            name: lower(e, env) for (name, _), e in zip(self.upper_op.params, op.implements.args)}
        self.a = alpha(L, self.U, self.s)
        self.low: Step = L.step(op, self.s, self.args)
        self.up: Step = self.U.step(self.upper_op, self.a, self.upper_args)
        self.low_dom = L.dom(op, self.s, self.args)
        self.up_dom = self.U.dom(self.upper_op, self.a, self.upper_args)
        self.after = alpha(L, self.U, self.low.post)

    def hypotheses(self, L: SymLayer) -> list[Labeled]:
        # every `bind` fixes the oracle value the upper layer reads at that (principal, index)
        binds = [z3.Implies(b.guard, L.enc.equal(L.module.oracle(b.oracle).type,
                                                  L.oracles.value(b.oracle, b.principal, b.index), b.value))
                 for b in self.low.bindings]
        return [Labeled("I_L(s)", L.invariant(self.s)),
                Labeled("the lower step does not halt", z3.Not(self.low.halted)),
                Labeled("oracle bindings", z3.And(binds + [L.true()]))]

    def formula(self, L: SymLayer, goals: list[Labeled]) -> Formula:
        runs = [Run("s", self.s, self.low, self.low_dom), Run("α(s)", self.a, self.up, self.up_dom, upper=True)]
        tables = [Table("lower", L, ["s", "step_L(s)"], [self.s, self.low.post]),
                  Table("upper", self.U, ["α(s)", "step_U(α(s))", "α(step_L(s))"],
                        [self.a, self.up.post, self.after])]
        return Formula("valid", L, self.hypotheses(L), goals, self.op, self.args, runs, tables=tables)


def refined_step(L: SymLayer, op: ir.Op) -> Formula:
    # I_L(s) ∧ ¬halt_L(s) ⇒ ¬halt_U(α(s)) ∧ α(step_L(s)) = step_U(α(s)) ∧ out_L(s) = out_U(α(s))
    st = _Steps(L, op)
    goals = [Labeled(f"`{st.upper_op.name}` does not halt", z3.Not(st.up.halted), st.upper_op.span,
                     failure=f"the upper `{st.upper_op.name}` halts where the lower `{op.name}` does not")]
    goals += _field_goals(st.U, st.after, st.up.post, _user_fields(st.U),
                          "α(step_L(s)) and step_U(α(s)) differ in")
    if op.result is not None:
        same = L.enc.equal(op.result, st.low.result, st.up.result)  # type: ignore[arg-type]
        goals.append(Labeled("the result", same, op.span, failure="the results of the two steps differ"))
    return st.formula(L, goals)


def refined_oracles(L: SymLayer, op: ir.Op) -> Formula:
    # I_L(s) ∧ ¬halt_L(s) ∧ B ⇒ n_o(step_L(s)) = n_o(step_U(α(s))) for every oracle o, and every
    # bind of the upper step binds the value the lower step binds at that index: ω_o(P, n) = e_U
    st = _Steps(L, op)
    goals = _field_goals(st.U, st.after, st.up.post, _counter_fields(st.U),
                         "the oracle counters advance differently:")
    for u in st.up.bindings:
        bound = L.oracles.value(u.oracle, u.principal, u.index)
        same = L.enc.equal(L.module.oracle(u.oracle).type, bound, u.value)
        goals.append(Labeled(f"the upper `bind {u.oracle}`", z3.Implies(u.guard, same), u.span,
                             failure=f"the upper layer binds `{u.oracle}` to a value that the lower step "
                                     "does not bind at the same index"))
    return st.formula(L, goals)


def _two_runs(L: SymLayer, op: ir.Op) -> tuple[dict[str, Value], list[Run], list[Labeled]]:
    """Two lower runs of `op` with the same arguments, neither halting, from states satisfying
    the invariant."""
    args, (s, t) = runs(L, op, ("s", "t"))
    return args, [s, t], base_hypotheses(L, [s, t])


def _views_agree(L: SymLayer, U: SymLayer, who: z3.ExprRef, s: State, t: State,
                 abstract: tuple[State, State]) -> z3.BoolRef:
    """s ~who t at the lower layer and α(s) ~who α(t) at the upper one (`abstract` is
    (α(s), α(t))): what the transfer proof knows of any principal that can flow to the observer
    (R-OBS makes the second imply the first)."""
    return z3.And(L.equiv(who, s, t), U.equiv(who, *abstract))


def refined_args(L: SymLayer, op: ir.Op) -> Formula:
    # I_L(s) ∧ I_L(t) ∧ ¬halt_L(s) ∧ ¬halt_L(t) ∧ s ~d t ∧ α(s) ~d α(t) ⇒ x'(s) = x'(t),
    # d = dom_L(a, x, s), for every upper argument x' that reads the state
    assert op.implements is not None
    U = upper_of(L)
    upper_op = U.layer.op(op.implements.op)
    assert upper_op is not None
    args, (s, t), hyps = _two_runs(L, op)
    assert s.dom is not None
    agree = _views_agree(L, U, s.dom, s.pre, t.pre, (alpha(L, U, s.pre), alpha(L, U, t.pre)))
    hyps.append(Labeled("s ~dom t and α(s) ~dom α(t)", agree, reflexive=True))
    goals = []
    for i in state_dependent_args(op):
        e = op.implements.args[i]
        name, ptype = upper_op.params[i]
        vs, vt = lower(e, L.env(s.pre, args)), lower(e, L.env(t.pre, args))  # records too
        fields: set[str] = set()
        collect_fields(e, fields)
        shown: dict[str, tuple[Type, z3.ExprRef]] = {}
        if is_scalar(ptype) and isinstance(vs, z3.ExprRef) and isinstance(vt, z3.ExprRef):
            shown = {f"`{name}` in run s": (ptype, vs), f"`{name}` in run t": (ptype, vt)}
        goals.append(Labeled(f"upper argument `{name}`", L.enc.equal(ptype, vs, vt), e.span, fields=fields,
                             shown=shown,
                             failure=f"the argument `{name}` of `{upper_op.name}` differs between two "
                                     f"runs that `{op.name}`'s principal cannot tell apart"))
    return Formula("valid", L, hyps, goals, op, args, [s, t])


def refined_binds(L: SymLayer, op: ir.Op) -> Formula:
    # I_L(s) ∧ I_L(t) ∧ ¬halt_L(s) ∧ ¬halt_L(t) ⇒ for binds β (in s) and β' (in t) of one oracle:
    # g_β(s) ∧ g_β'(t) ∧ (P, n)_β(s) = (P, n)_β'(t) ∧ s ~Q t ∧ α(s) ~Q α(t) ⇒ e_β(s) = e_β'(t),
    # Q = the source of β in s
    U = upper_of(L)
    args, (s, t), hyps = _two_runs(L, op)
    assert s.step is not None and t.step is not None
    abstract = (alpha(L, U, s.pre), alpha(L, U, t.pre))
    goals = []
    for b in s.step.bindings:
        assert b.source is not None and b.bind is not None
        oracle = L.module.oracle(b.oracle)
        fields: set[str] = set()
        for e in (b.bind.value, b.bind.source):
            collect_fields(e, fields)
        family = oracle.source
        views = _views_agree(L, U, b.source, s.pre, t.pre, abstract)
        goals.append(Labeled(f"the source of `bind {b.oracle}` at {b.span.line}:{b.span.column}",
                             z3.Implies(b.guard, L.enc.principals.is_(family, b.source)), b.span,
                             fields=fields, failure=f"the source named by this `bind {b.oracle}` is not "
                                                    f"a {family}, the oracle's declared source"))
        for b2 in t.step.bindings:
            if b2.oracle != b.oracle:
                continue
            meet = z3.And(b.guard, b2.guard, b.principal == b2.principal, b.index == b2.index, views)
            where = "" if b2.span == b.span else f" (run t binds it at {b2.span.line}:{b2.span.column})"
            goals.append(Labeled(f"`bind {b.oracle}` at {b.span.line}:{b.span.column}",
                                 z3.Implies(meet, L.enc.equal(oracle.type, b.value, b2.value)), b.span,
                                 fields=fields,
                                 failure=f"the value bound to `{b.oracle}` is not determined by what its "
                                         f"source sees: two runs its source cannot tell apart bind "
                                         f"different values at the same index{where}"))
    return Formula("valid", L, hyps, goals, op, args, [s, t])


def refined_dom(L: SymLayer, op: ir.Op) -> Formula:
    # I_L(s) ⇒ dom_L(a, x, s) = dom_U(a', x', α(s))
    st = _Steps(L, op)
    goal = Labeled("dom", st.low_dom == st.up_dom, op.dom.span,
                   failure=f"`{op.name}` and `{st.upper_op.name}` run for different principals")
    f = st.formula(L, [goal])
    f.hypotheses = [Labeled("I_L(s)", L.invariant(st.s))]
    return f


def refined_observation(L: SymLayer, u: ir.Principal) -> Formula:
    # I_L(s) ∧ I_L(t) ∧ α(s) ~u^U α(t) ⇒ s ~u^L t
    U = upper_of(L)
    s, t = L.fresh_state("s"), L.fresh_state("t")
    a_s, a_t = alpha(L, U, s), alpha(L, U, t)
    _, param = L.observer(u)
    hyps = [Labeled("I_L(s)", L.invariant(s)), Labeled("I_L(t)", L.invariant(t), reflexive=True),
            Labeled("α(s) ~u α(t)", U.agree(u, param, a_s, a_t), reflexive=True)]
    goals = L.equiv_family(u, param, s, t, goal=True)
    tables = [Table("lower", L, ["s", "t"], [s, t]), Table("upper", U, ["α(s)", "α(t)"], [a_s, a_t])]
    return Formula("valid", L, hyps, goals, runs=[Run("s", s), Run("t", t)], observer=(u, param),
                   tables=tables)


def stutter_consistency(L: SymLayer, op: ir.Op, base: Callable[[SymLayer, ir.Op], Formula]) -> Formula:
    """OC or DC of a stutter operation at its layer, also assuming α(s) ~dom α(t): the transfer
    proof knows both views of the operation's principal when it needs these (docs/theory.md §7.2,
    steps 0 and 6), and the abstract one can be what settles it."""
    f = base(L, op)
    s, t = f.runs
    assert s.dom is not None
    U = upper_of(L)
    f.hypotheses.append(Labeled("α(s) ~dom(a,s) α(t)", U.equiv(s.dom, alpha(L, U, s.pre), alpha(L, U, t.pre)),
                                reflexive=True))
    return f


def stutter(L: SymLayer, op: ir.Op) -> Formula:
    # I_L(s) ∧ ¬halt(s) ⇒ α(step(s)) = α(s)
    U = upper_of(L)
    s = L.fresh_state("s")
    args = L.fresh_args(op)
    step = L.step(op, s, args)
    a, after = alpha(L, U, s), alpha(L, U, step.post)
    hyps = [Labeled("I_L(s)", L.invariant(s)), Labeled("s does not halt", z3.Not(step.halted))]
    goals = _field_goals(U, after, a, list(U.fields), "the lower-only step changes")
    tables = [Table("lower", L, ["s", "step(s)"], [s, step.post]),
              Table("upper", U, ["α(s)", "α(step(s))"], [a, after])]
    return Formula("valid", L, hyps, goals, op, args, [Run("s", s, step, L.dom(op, s, args))],
                   tables=tables)

