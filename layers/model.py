"""A layer as a symbolic state machine in one Z3 context: states, init, invariants, dom,
steps, observations and the flows-to relation."""

from __future__ import annotations

from dataclasses import dataclass, field

import z3

from microverify.dsl import ir
from microverify.dsl.spans import Span
from microverify.dsl.types import Type
from microverify.layers import terms
from microverify.layers.encoding import Encoder, Value
from microverify.layers.execute import Step, execute
from microverify.layers.lower import Env, bound_vars, goal_pred, lower, pred, scalar
from microverify.oracles.oracles import COUNTER_TYPE, Oracles, counter_field, counter_fields

State = dict[str, Value]


@dataclass(frozen=True)
class Component:
    """One observation component of a family: user-written, or an oracle counter."""

    principal: str
    index: int
    text: str
    span: Span
    source: ir.ObsComponent | None  # None: the counter of `oracle`
    oracle: str | None = None

    @property
    def label(self) -> str:
        return f"observation `{self.text}`"

    def fields(self) -> set[str]:
        if self.source is None:
            return {counter_field(self.oracle or "")}
        return expr_fields(self.source.expr, self.source.where)


@dataclass
class Labeled:
    """A conjunct of a goal with what is needed to explain its failure."""

    label: str
    term: z3.BoolRef
    span: Span | None = None
    component: Component | None = None
    witnesses: dict[str, tuple[Type, z3.ExprRef]] = field(default_factory=dict)
    fields: set[str] = field(default_factory=set)  # state fields the conjunct mentions
    failure: str = ""  # how to say that it fails; default "<label> does not hold"
    # A hypothesis about the second run (I(t), t does not halt, s ~ t, ...) that holds when t = s,
    # given the others: every ~ is reflexive and steps are deterministic. The vacuity check
    # leaves these out, since the hypotheses are satisfiable iff the rest is (take t = s).
    reflexive: bool = False
    shown: dict[str, tuple[Type, z3.ExprRef]] = field(default_factory=dict)  # values to print on failure
    # the predicates the conjunct was lowered from, each with its state and scope (witnesses
    # bound): a counterexample shows the entries they read
    sources: tuple[tuple[ir.Expr, Env], ...] = ()


class SymLayer:
    def __init__(self, module: ir.Module, layer: ir.Layer, ctx: z3.Context,
                 enc: Encoder | None = None) -> None:
        """Layers of one obligation share `enc`, so fresh names never collide."""
        self.module = module
        self.layer = layer
        self.enc = enc or Encoder(module, ctx)
        self.oracles = Oracles(module, self.enc)
        self.fields: tuple[ir.StateField, ...] = layer.fields + counter_fields(module)

    @property
    def ctx(self) -> z3.Context:
        return self.enc.ctx

    def true(self) -> z3.BoolRef:
        return z3.BoolVal(True, self.ctx)

    # -- states and arguments
    def fresh_state(self, tag: str) -> State:
        return {f.name: self.enc.fresh(f.type, f"{f.name}_{tag}") for f in self.fields}

    def fresh_args(self, op: ir.Op) -> dict[str, Value]:
        return {name: self.enc.fresh(t, f"arg_{name}") for name, t in op.params}

    def env(self, state: State, vars: dict[str, Value] | None = None) -> Env:
        return Env(self.enc, state, dict(vars or {}))

    # -- predicates
    def init(self, s: State) -> z3.BoolRef:
        return terms.and_([pred(e, self.env(s)) for e in self.layer.init] + [self.true()])

    def init_goals(self, s: State) -> list[Labeled]:
        """`init` as goals, outer foralls replaced by witnesses."""
        return self._goals([(f"init of {self.layer.name}", e) for e in self.layer.init], s)

    def invariants(self, s: State) -> list[Labeled]:
        return [Labeled(invariant_label(inv), self.invariant_clause(inv, s), inv.span) for inv in self.layer.invariants]

    def invariant_clause(self, inv: ir.Invariant, s: State) -> z3.BoolRef:
        return pred(inv.pred, self.env(s))

    def invariant(self, s: State) -> z3.BoolRef:
        return terms.and_([x.term for x in self.invariants(s)] + [self.true()])

    def invariant_goals(self, s: State) -> list[Labeled]:
        """The invariants as goals, outer foralls replaced by witnesses."""
        return [self.invariant_goal(inv, s) for inv in self.layer.invariants]

    def invariant_goal(self, inv: ir.Invariant, s: State) -> Labeled:
        return self._goals([(invariant_label(inv), inv.pred)], s)[0]

    def _goals(self, preds: list[tuple[str, ir.Expr]], s: State) -> list[Labeled]:
        goals = []
        for label, e in preds:
            witnesses: dict[str, tuple[Type, z3.ExprRef]] = {}
            env = self.env(s)
            term = goal_pred(e, env, witnesses)
            goals.append(Labeled(label, term, e.span, witnesses=witnesses, fields=expr_fields(e), sources=((e, env),)))
        return goals

    # -- operations
    def dom(self, op: ir.Op, s: State, args: dict[str, Value]) -> z3.ExprRef:
        return scalar(op.dom, self.env(s, args))

    def step(self, op: ir.Op, s: State, args: dict[str, Value]) -> Step:
        return execute(self.enc, self.oracles, op, s, args, self.dom(op, s, args))

    # -- principals and policy
    def observer(self, principal: ir.Principal) -> tuple[z3.ExprRef, z3.ExprRef | None]:
        """The observer of a family: (principal term, its symbolic parameter or None)."""
        if principal.param_type is None:
            return self.enc.principals.make(principal.name, None, self.ctx), None
        v = self.enc.fresh(principal.param_type, f"u_{principal.param or 'v'}")
        assert isinstance(v, z3.ExprRef)
        return self.enc.principals.make(principal.name, v, self.ctx), v

    def flows(self, source: z3.ExprRef, target: z3.ExprRef) -> z3.BoolRef:
        return flows_term(self.enc, self.module, source, target)

    # -- observation
    def components(self, principal: ir.Principal) -> list[Component]:
        obs = self.layer.observation(principal.name)
        comps = [Component(principal.name, i, c.text, c.span, c)
                 for i, c in enumerate(obs.components if obs else ())]
        param = self._param_name(principal)
        who = principal.name + (f"({param})" if param else "")
        for o in self.module.oracles:
            comps.append(Component(principal.name, len(comps), f"counter({o.name}, {who})", o.span,
                                   None, o.name))
        return comps

    def _component_parts(self, comp: Component, param: z3.ExprRef | None, s: State,
                         vars: dict[str, Value]) -> tuple[z3.BoolRef, Value, Type]:
        principal = self.module.principal(comp.principal)
        if comp.source is None:
            who = self.enc.principals.make(principal.name, param, self.ctx)
            counters = s[counter_field(comp.oracle or "")]
            return self.true(), self.enc.select(counters, who), COUNTER_TYPE.value  # type: ignore[arg-type]
        env = self.env(s, vars)
        where = pred(comp.source.where, env) if comp.source.where is not None else self.true()
        return where, lower(comp.source.expr, env), comp.source.expr.type

    def _param_name(self, principal: ir.Principal) -> str | None:
        """The name the observation gives the family's index (`observe VM(w)` for a family
        declared `principal VM(v: ...)` calls it w), else the declaration's."""
        obs = self.layer.observation(principal.name)
        return obs.param if obs is not None and obs.param is not None else principal.param

    def _param_vars(self, principal: ir.Principal, param: z3.ExprRef | None) -> dict[str, Value]:
        name = self._param_name(principal)
        return {name: param} if name and param is not None else {}

    def component_equal(self, comp: Component, param: z3.ExprRef | None, s: State, t: State,
                        goal: bool, values_only: bool = False) -> Labeled:
        """s and t agree on one component: same mask, and equal values where the mask holds
        (`values_only`: equal values where the mask holds in both, whether or not it differs).
        As a hypothesis the binders are universally quantified; as a goal they are witnesses."""
        principal = self.module.principal(comp.principal)
        binders = comp.source.binders if comp.source is not None else ()
        consts, guard, values = bound_vars(self.enc, binders, "w_" if goal else "")
        vars = {**self._param_vars(principal, param), **values}
        ws, vs, vtype = self._component_parts(comp, param, s, vars)
        wt, vt, _ = self._component_parts(comp, param, t, vars)
        witnesses = {name: (bt, c) for (name, bt), c in zip(binders, consts)}

        def witness(key_type: Type) -> z3.ExprRef:
            c = z3.Const(self.enc.unique("w_key"), self.enc.sort(key_type))
            witnesses[f"key#{len(witnesses)}"] = (key_type, c)
            return c

        same = self.enc.equal(vtype, vs, vt, witness if goal else None)
        body = terms.implies(terms.and_((ws, wt)), same) if values_only else \
            terms.and_((terms.eq(ws, wt), terms.implies(ws, same)))  # type: ignore[arg-type]
        if goal:
            term = terms.implies(guard, body)
        elif consts:
            term = z3.ForAll(consts, terms.implies(guard, body))
        else:
            term = body
        sources = tuple((e, self.env(state, vars)) for state in (s, t) for e in
                        ((comp.source.where, comp.source.expr) if comp.source is not None else ()) if e is not None)
        return Labeled(comp.label, term, comp.span, comp, witnesses, comp.fields(), sources=sources)

    def equiv_family(self, principal: ir.Principal, param: z3.ExprRef | None, s: State, t: State,
                     goal: bool = False) -> list[Labeled]:
        """s ~u t for u = principal(param), one labelled conjunct per component."""
        return [self.component_equal(c, param, s, t, goal) for c in self.components(principal)]

    def agree(self, principal: ir.Principal, param: z3.ExprRef | None, s: State, t: State) -> z3.BoolRef:
        """s ~u t for u = principal(param), as a hypothesis: the conjunction of equiv_family."""
        return terms.and_([x.term for x in self.equiv_family(principal, param, s, t)] + [self.true()])

    def equiv(self, who: z3.ExprRef, s: State, t: State) -> z3.BoolRef:
        """s ~who t for a principal term (e.g. dom), as a hypothesis: a case split on families."""
        pe = self.enc.principals
        cases = []
        for p in self.module.principals:
            param = pe.param(p.name, who) if p.param_type is not None else None
            cases.append(terms.implies(pe.is_(p.name, who), self.agree(p, param, s, t)))
        return z3.And(cases)


def flows_term(enc: Encoder, module: ir.Module, source: z3.ExprRef, target: z3.ExprRef) -> z3.BoolRef:
    """source ~> target: reflexive, plus the policy's flows, each for the members its condition
    admits (not closed transitively)."""
    pe = enc.principals
    cases: list[z3.BoolRef] = [source == target]
    for f in module.flows:
        case = [pe.is_(f.source, source), pe.is_(f.target, target)]
        if f.cond is not None:
            case.append(pred(f.cond, flow_scope(enc, f, source, target)))
        cases.append(z3.And(case))
    return z3.Or(cases)


def flow_scope(enc: Encoder, f: ir.Flow, source: z3.ExprRef, target: z3.ExprRef) -> Env:
    """Where a flow's condition is evaluated: its names bound to the two principals' indices."""
    pe = enc.principals
    return Env(enc, {}, {var: pe.param(name, term) for var, name, term in
                         ((f.source_var, f.source, source), (f.target_var, f.target, target)) if var is not None})


def op_fields(op: ir.Op) -> set[str]:
    """State fields an operation mentions anywhere (dom, conditions, assignments, results),
    with the counter field of every oracle it reads."""
    return ir.op_fields(op, counter_field)


def collect_fields(e: ir.Expr, found: set[str]) -> None:
    """State fields an expression mentions, with the counter field of every oracle it reads
    (for choosing what a counterexample shows)."""
    ir.collect_fields(e, found, counter_field)


def expr_fields(*exprs: ir.Expr | None) -> set[str]:
    """collect_fields of the expressions given (None: no expression), as a new set."""
    found: set[str] = set()
    for e in exprs:
        if e is not None:
            collect_fields(e, found)
    return found


def invariant_label(inv: ir.Invariant) -> str:
    return f"invariant {inv.name}"
