"""Per-layer obligations of DESIGN §2: INIT, INV and VAC."""

from __future__ import annotations

import z3

from microverify.dsl import ir
from microverify.layers.model import Labeled, SymLayer, expr_fields, invariant_label
from microverify.oracles.oracles import is_counter_field
from microverify.prover.formula import Formula, Run
from microverify.prover.frame import unassumed


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
    post, invariants = run.step.post, L.layer.invariants
    # the clauses the step leaves as they were are the hypothesis I(s) already (prover/frame.py)
    goals, left_out = unassumed(len(invariants), lambda i: expr_fields(invariants[i].pred),
                                lambda i: L.invariant_goal(invariants[i], post),
                                lambda i: L.invariant_clause(invariants[i], post), [run], hyps[0].term)
    return Formula("valid", L, hyps, goals, op, args, [run],
                   assumed=tuple(invariant_label(invariants[i]) for i in left_out))


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
    # For each component c of u's `observe` block: ∃s, t. n(s) = n(t) ∧ ¬(s ≈c t) over
    # well-formed states, ≈c comparing what c writes (its mask and its values), n u's oracle
    # counters, u a member of its family: a separate question per component (Formula.
    # separate_goals: each its own check), written over one pair of states. A component that
    # shows the same in every state (a tautology, a `where` no entry meets) shows nothing, even
    # beside others that do. The counters and configuration constants are known to every
    # principal: a component that reads no other state adds nothing and is not asked to (the
    # language allows writing it), unless the block has nothing else, which then shows nothing.
    # The invariants are left out: two states of them that differ in the view would need a
    # model of the invariants twice over (quantified ones over 2^36 pages end unknown), so a
    # view the invariants alone pin to one value is not caught.
    view = L.layer.observation(u.name)
    block = f"observe {u.name}" + (f"({view.param})" if view is not None and view.param else "")
    components = L.components(u)
    counters = [c for c in components if c.source is None]
    written = [c for c in components if c.source is not None]
    asked = [c for c in written if not all(map(is_counter_field, c.fields()))] or written
    s, t = L.fresh_state("s"), L.fresh_state("t")
    _, param = L.observer(u)
    same = z3.And([L.component_equal(n, param, s, t, goal=True).term for n in counters] + [z3.BoolVal(True, L.ctx)])
    goals = [Labeled(f"`{c.text}`", z3.And(same, z3.Not(L.component_equal(c, param, s, t, goal=True).term)),
                     c.span, c) for c in asked]
    # under a mask that differs, a value that cannot (`mem[p] - mem[p] for p where ...`) hides
    # what it was meant to show just as well
    values = [Labeled(f"the values of `{c.text}` where its mask holds",
                      z3.And(same, z3.Not(L.component_equal(c, param, s, t, goal=True, values_only=True).term)),
                      c.span, c)
              for c in asked if c.source is not None and c.source.where is not None
              and not isinstance(c.source.expr, ir.Lit)]
    goals += values

    def dead(without: list[Labeled]) -> str:
        # the goals given are the encoded ones (new objects): told apart by label and span
        of_values = {g.label for g in values}
        whole = {g.span for g in without if g.label not in of_values}
        without = [g for g in without if g.label not in of_values or g.span not in whole]  # each component once
        if len(whole) == len(asked):
            return (f"what `{block}` shows is the same in every state: {u.name} sees nothing of {L.layer.name}'s "
                    f"state (for that, write an empty block, `{block} {{ }}`)")
        return (f"{', '.join(g.label for g in without)} in `{block}` {'is' if len(without) == 1 else 'are'} the same "
                f"in every state: {'it shows' if len(without) == 1 else 'they show'} {u.name} nothing of "
                f"{L.layer.name}'s state (a `where` no entry meets, a value no two states differ in): fix or remove "
                f"{'it' if len(without) == 1 else 'them'}")

    return Formula("sat", L, [], goals, runs=[Run("s", s), Run("t", t)], observer=(u, param), separate_goals=True,
                   explain_goal=dead)
