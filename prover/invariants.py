"""Per-layer obligations of DESIGN §2: INIT, INV and VAC."""

from __future__ import annotations

import z3

from microverify.dsl import ir
from microverify.layers.model import Labeled, SymLayer
from microverify.prover.formula import Formula, Run


def initial(L: SymLayer) -> Formula:
    # init(s) ⇒ I(s), and init is satisfiable (the hypothesis check)
    s = L.fresh_state("s")
    hyps = [Labeled("init(s)", L.init(s))]
    return Formula("valid", L, hyps, L.invariant_goals(s), runs=[Run("s", s)])


def inductive(L: SymLayer, op: ir.Op) -> Formula:
    # I(s) ∧ ¬halt(s) ⇒ I(step_a(s, x, ω))
    s = L.fresh_state("s")
    args = L.fresh_args(op)
    run = Run("s", s, L.step(op, s, args), L.dom(op, s, args))
    assert run.step is not None
    hyps = [Labeled("I(s)", L.invariant(s)), Labeled("s does not halt", z3.Not(run.step.halted))]
    return Formula("valid", L, hyps, L.invariant_goals(run.step.post), op, args, [run])


def invariant_satisfiable(L: SymLayer) -> Formula:
    # ∃s. I(s)
    s = L.fresh_state("s")
    return Formula("sat", L, [], [Labeled("I(s)", L.invariant(s))], runs=[Run("s", s)],
                   explain_unsat="no state satisfies the invariants")


def operation_succeeds(L: SymLayer, op: ir.Op) -> Formula:
    # ∃s, x. I(s) ∧ ¬halt(s) ∧ no check fails
    s = L.fresh_state("s")
    args = L.fresh_args(op)
    run = Run("s", s, L.step(op, s, args), L.dom(op, s, args))
    assert run.step is not None
    goals = [Labeled("I(s)", L.invariant(s)),
             Labeled(f"`{op.name}` neither halts nor fails a check",
                     z3.And(z3.Not(run.step.halted), z3.Not(run.step.failed)))]
    return Formula("sat", L, [], goals, op, args, [run],
                   explain_unsat=f"`{op.name}` halts or fails a check in every state that satisfies "
                                 "the invariants")


def view_tells_apart(L: SymLayer, u: ir.Principal) -> Formula:
    # ∃s, t. n(s) = n(t) ∧ ¬(s ≈u t) over well-formed states, where ≈u compares what u's
    # `observe` block writes and n are u's oracle counters: every view has them already, so what
    # the block adds must differ (`counter(io, KServ)` alone adds nothing); else the block shows
    # nothing whatever the state. The invariants are left out: two states of them that differ
    # in the view would need a model of the invariants twice over (quantified ones over 2^36
    # pages end unknown), so a view the invariants alone pin to one value is not caught.
    s, t = L.fresh_state("s"), L.fresh_state("t")
    _, param = L.observer(u)
    components = L.components(u)
    counters = [L.component_equal(c, param, s, t, goal=True).term for c in components if c.source is None]
    same = [L.component_equal(c, param, s, t, goal=True).term for c in components if c.source is not None]
    view = L.layer.observation(u.name)
    block = f"observe {u.name}" + (f"({view.param})" if view is not None and view.param else "")
    true = z3.BoolVal(True, L.ctx)
    goals = [Labeled(f"s and t agree on the oracle counters of {u.name}", z3.And(counters + [true])),
             Labeled(f"s and t differ in what `{block}` shows", z3.Not(z3.And(same + [true])))]
    return Formula("sat", L, [], goals, runs=[Run("s", s), Run("t", t)], observer=(u, param),
                   explain_unsat=f"what `{block}` shows is the same in every state: {u.name} sees nothing of "
                                 f"{L.layer.name}'s state (for that, write an empty block, `{block} {{ }}`)")
