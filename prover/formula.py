"""What a solved obligation is made of: labelled hypotheses and goals over one or two runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import z3

from microverify.dsl import ir
from microverify.layers.execute import Step
from microverify.layers.model import Labeled, State, SymLayer
from microverify.layers.terms import free_constants
from microverify.layers.encoding import Value
from microverify.prover.qf import Completion


@dataclass
class Run:
    """One run of the operation from a pre-state (step is None for state-only obligations)."""

    name: str  # "s" or "t"; for the refined layer's step, "α(s)"
    pre: State
    step: Step | None = None
    dom: z3.ExprRef | None = None
    upper: bool = False  # a step of the refined (upper) layer, shown for comparison


@dataclass
class Table:
    """States of one layer shown side by side in a counterexample."""

    title: str
    layer: SymLayer
    columns: list[str]
    states: list[State]


@dataclass
class Formula:
    """`valid`: hypotheses imply every goal. `sat`: hypotheses and goals are satisfiable together.

    Either way the hypotheses alone must be satisfiable, or the obligation is VACUOUS.
    """

    mode: str
    layer: SymLayer
    hypotheses: list[Labeled]
    goals: list[Labeled]
    op: ir.Op | None = None
    args: dict[str, Value] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    observer: tuple[ir.Principal, z3.ExprRef | None] | None = None
    explain_unsat: str = ""  # said when a `sat` obligation has no model
    # a `sat` obligation of separate questions: it holds if each goal, with the hypotheses, has
    # a model of its own (their conjunction, which implies that, is only the solver's first
    # try; `alone` is the obligation as one formula); `explain_goal` says what to say of the goals
    # that have none
    separate_goals: bool = False
    explain_goal: Callable[[list[Labeled]], str] | None = None
    tables: list[Table] = field(default_factory=list)  # default: the runs, before and after
    # the labels of the goals left out as conjuncts of a hypothesis already (prover/frame.py)
    assumed: tuple[str, ...] = ()
    quantified: bool = False  # some hypothesis or goal still has a quantifier (set by solve.build)
    completion: Completion | None = None  # set when the qf encoding instantiated quantifiers
    # (hypotheses, goals) without quantifiers but weaker (pass 3w of prover/qf.py), beside the
    # exact ones above, which stay quantified: their `unsat` proves a `valid` obligation
    weakened: tuple[list[Labeled], list[Labeled]] | None = None
    # what the exact-first check found out about these very hypotheses and goals, which a later
    # check of them need not ask again (prover/solve.py): the hypotheses are satisfiable; the
    # whole negated goal has no model of the witness shape within rlimit / EXACT_SHARE
    shown_satisfiable: bool = False
    no_shaped_counterexample: bool = False

    @property
    def ctx(self) -> z3.Context:
        return self.layer.ctx

    def alone(self) -> z3.BoolRef:
        """For separate goals: each goal with the hypotheses, over a copy of the constants of its
        own, all in one formula (satisfiable iff every goal has a model: what is exported)."""
        parts = []
        for i, g in enumerate(self.goals):
            one = z3.And([h.term for h in self.hypotheses] + [g.term])
            copies = [(c, z3.Const(self.layer.enc.unique(f"{c.decl().name()}_q{i}"), c.sort()))
                      for c in free_constants(one)]
            parts.append(z3.substitute(one, *copies))
        return z3.And(parts + [z3.BoolVal(True, self.ctx)])

    def asserted_goal(self, goals: list[Labeled] | None = None) -> z3.BoolRef:
        """The goals as the solver is given them: their conjunction, negated for a `valid`
        obligation. `goals`: others than the formula's own (the weakened ones of pass 3w)."""
        conjunction = z3.And([g.term for g in (self.goals if goals is None else goals)] + [z3.BoolVal(True, self.ctx)])
        return conjunction if self.mode == "sat" else z3.Not(conjunction)

    def asserted_goal_one_witness(self, goals: list[Labeled] | None = None) -> z3.BoolRef:
        """The negated goal of a `valid` obligation (`asserted_goal`; `goals`: some of its
        own, as for `asserted_goal`), with the witnesses of its observation components
        shared: the k-th witness of a sort in each component's goal is one constant, that of
        the first component to have one. Equisatisfiable with `asserted_goal()` under the
        hypotheses: a component's witnesses are fresh constants of its goal alone
        (SymLayer.component_equal), and the negated conjunction asks for one goal that
        fails, at witnesses of its own. A model of it gives one of this by setting the
        witnesses of the goal that fails to theirs; a model of this gives one of it by
        setting every witness to the shared constant it stands for. So its `unsat` proves
        the obligation, and nothing else is taken from it (prover/solve.py: `_whole_goal`,
        and each half of `_parts`). With one witness per key type instead of one per
        component, Z3 instantiates the quantified hypotheses at fewer terms (docs/theory.md
        §9 has the figures)."""
        assert self.mode == "valid"
        shared: dict[tuple[int, int], z3.ExprRef] = {}
        pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = []
        seen: set[int] = set()
        for g in self.goals if goals is None else goals:
            if g.component is None:
                continue
            count: dict[int, int] = {}
            for _, c in g.witnesses.values():
                # the argument needs each witness in one goal, once: an internal error if not
                assert c.get_id() not in seen, f"witness {c} of {g.label} is another goal's too"
                seen.add(c.get_id())
                sort = c.sort().get_id()
                k = count[sort] = count.get(sort, -1) + 1
                one = shared.setdefault((sort, k), c)
                if not one.eq(c):
                    pairs.append((c, one))
        goal = self.asserted_goal(goals)
        return z3.substitute(goal, *pairs) if pairs else goal
