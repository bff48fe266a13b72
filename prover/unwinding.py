"""The unwinding conditions of DESIGN §2, one function each.

Every two-run obligation shares the operation's arguments and the oracle functions between
the runs, and assumes neither run halts (termination-insensitive noninterference).
"""

from __future__ import annotations

import z3

from microverify.dsl import ir
from microverify.layers.model import Labeled, SymLayer
from microverify.prover.formula import Formula, Run
from microverify.prover.frame import unassumed


def runs(L: SymLayer, op: ir.Op, names: tuple[str, ...]) -> tuple[dict, list[Run]]:
    """Runs of `op` with the same fresh arguments from fresh states, one per name."""
    args = L.fresh_args(op)
    out = []
    for name in names:
        pre = L.fresh_state(name)
        dom = L.dom(op, pre, args)
        out.append(Run(name, pre, L.step(op, pre, args), dom))
    return args, out


def base_hypotheses(L: SymLayer, rs: list[Run]) -> list[Labeled]:
    """Each run starts in a state satisfying the invariant and does not halt."""
    hyps = []
    for i, r in enumerate(rs):
        assert r.step is not None
        hyps.append(Labeled(f"I({r.name})", L.invariant(r.pre), reflexive=i > 0))
        hyps.append(Labeled(f"{r.name} does not halt", z3.Not(r.step.halted), reflexive=i > 0))
    return hyps


def _same_dom_view(L: SymLayer, s: Run, t: Run) -> Labeled:
    assert s.dom is not None
    return Labeled("s ~dom(a,s) t", L.equiv(s.dom, s.pre, t.pre), reflexive=True)


def _same_observer_view(L: SymLayer, u: ir.Principal, param: z3.ExprRef | None, s: Run, t: Run) -> Labeled:
    return Labeled("s ~u t", L.agree(u, param, s.pre, t.pre), reflexive=True)


def output_consistency(L: SymLayer, op: ir.Op) -> Formula:
    # I(s) ∧ I(t) ∧ s ~dom(a,s) t ⇒ out_a(s) = out_a(t)
    args, (s, t) = runs(L, op, ("s", "t"))
    hyps = base_hypotheses(L, [s, t]) + [_same_dom_view(L, s, t)]
    assert s.step is not None and t.step is not None
    goals = []
    if op.result is not None:
        same = L.enc.equal(op.result, s.step.result, t.step.result)  # type: ignore[arg-type]
        goals.append(Labeled(f"the result of `{op.name}`", same, op.span,
                             failure=f"the result of `{op.name}` differs between the runs"))
    return Formula("valid", L, hyps, goals, op, args, [s, t])


def weak_step_consistency(L: SymLayer, op: ir.Op, u: ir.Principal) -> Formula:
    # I(s) ∧ I(t) ∧ s ~u t ∧ s ~dom(a,s) t ⇒ step(s) ~u step(t)
    args, (s, t) = runs(L, op, ("s", "t"))
    _, param = L.observer(u)
    same = _same_observer_view(L, u, param, s, t)
    hyps = base_hypotheses(L, [s, t]) + [same, _same_dom_view(L, s, t)]
    assert s.step is not None and t.step is not None
    post_s, post_t, components = s.step.post, t.step.post, L.components(u)
    # the components the step leaves as they were are the hypothesis s ~u t already (prover/frame.py)
    goals, left_out = unassumed(len(components), lambda i: components[i].fields(),
                                lambda i: L.component_equal(components[i], param, post_s, post_t, goal=True),
                                lambda i: L.component_equal(components[i], param, post_s, post_t, goal=False).term,
                                [s, t], same.term)
    return Formula("valid", L, hyps, goals, op, args, [s, t], (u, param),
                   assumed=tuple(components[i].label for i in left_out))


def local_respect(L: SymLayer, op: ir.Op, u: ir.Principal) -> Formula:
    # I(s) ∧ ¬(dom(a,s) ~> u) ⇒ s ~u step(s)
    args, (s,) = runs(L, op, ("s",))
    who, param = L.observer(u)
    assert s.step is not None and s.dom is not None
    hyps = base_hypotheses(L, [s])
    interferes = L.flows(s.dom, who)
    goals = []
    for g in L.equiv_family(u, param, s.pre, s.step.post, goal=True):
        g.term = z3.Implies(z3.Not(interferes), g.term)
        goals.append(g)
    return Formula("valid", L, hyps, goals, op, args, [s], (u, param))


def domain_consistency(L: SymLayer, op: ir.Op) -> Formula:
    # I(s) ∧ I(t) ∧ s ~dom(a,s) t ⇒ dom(a,s) = dom(a,t)
    args, (s, t) = runs(L, op, ("s", "t"))
    hyps = base_hypotheses(L, [s, t]) + [_same_dom_view(L, s, t)]
    goals = [Labeled(f"dom of `{op.name}`", s.dom == t.dom, op.dom.span,
                     failure=f"`{op.name}` runs for different principals in the two runs")]
    return Formula("valid", L, hyps, goals, op, args, [s, t])


def domain_respect(L: SymLayer, op: ir.Op, u: ir.Principal) -> Formula:
    # I(s) ∧ I(t) ∧ s ~u t ⇒ (dom(a,s) ~> u ⇔ dom(a,t) ~> u)
    args, (s, t) = runs(L, op, ("s", "t"))
    who, param = L.observer(u)
    hyps = base_hypotheses(L, [s, t]) + [_same_observer_view(L, u, param, s, t)]
    assert s.dom is not None and t.dom is not None
    same = L.flows(s.dom, who) == L.flows(t.dom, who)
    goals = [Labeled(f"whether dom of `{op.name}` flows to {u.name}", same, op.dom.span,
                     failure=f"whether `{op.name}`'s principal may flow to the observer differs "
                             "between runs the observer cannot tell apart")]
    return Formula("valid", L, hyps, goals, op, args, [s, t], (u, param))
