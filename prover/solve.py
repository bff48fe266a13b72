"""Solving one obligation: a fresh Z3 context, a fixed seed, an rlimit gate and a timeout.

Every obligation goes through `solve`, the one place that calls `check()`.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial

import z3

from microverify.dsl import ir
from microverify.dsl.limits import too_deep
from microverify.layers.model import Labeled, SymLayer
from microverify.prover import export, invariants, linking, qf, refinement, shared, unwinding, witness
from microverify.prover.cache import Cache
from microverify.prover.counterexample import Counterexample, explain
from microverify.prover.crosscheck import cross_check
from microverify.prover.formula import Formula
from microverify.prover.goalform import rewritten
from microverify.prover.memory import MEMORY_REASONS, lift_memory_limit, limit_memory, new_context, out_of_memory
from microverify.prover.obligations import Kind, Obligation
from microverify.prover.replay import Outcome, Replay, replay
from microverify.prover.verdict import Lookup, Options, Result, Status, look_up, needs_formula


# Which function builds each kind of obligation, by what it is about.
_PER_LAYER: dict[Kind, Callable[[SymLayer], Formula]] = {
    Kind.INIT: invariants.initial,
    Kind.R_INIT: refinement.refined_init,
    Kind.R_INV: refinement.refined_invariant,
}
_PER_OP: dict[Kind, Callable[[SymLayer, ir.Op], Formula]] = {
    Kind.INV: invariants.inductive,
    Kind.OC: unwinding.output_consistency,
    Kind.DC: unwinding.domain_consistency,
    Kind.R_STEP: refinement.refined_step,
    Kind.R_ORACLE: refinement.refined_oracles,
    Kind.R_DOM: refinement.refined_dom,
    Kind.R_ARGS: refinement.refined_args,
    Kind.R_BIND: refinement.refined_binds,
    Kind.R_STUTTER: refinement.stutter,
}
_PER_OP_AND_OBSERVER: dict[Kind, Callable[[SymLayer, ir.Op, ir.Principal], Formula]] = {
    Kind.WSC: unwinding.weak_step_consistency,
    Kind.LR: unwinding.local_respect,
    Kind.DR: unwinding.domain_respect,
}


def formulate(module: ir.Module, ob: Obligation, ctx: z3.Context) -> Formula:
    layer = module.layer(ob.layer)
    L = shared.SharedLayer(module, layer, ctx)
    op = layer.op(ob.op) if ob.op else None
    u = module.principal(ob.observer) if ob.observer else None
    k = ob.kind
    if k is Kind.VAC:
        return invariants.operation_succeeds(L, op) if op else invariants.invariant_satisfiable(L)
    if k in _PER_LAYER:
        return _PER_LAYER[k](L)
    if k is Kind.R_OBS:
        assert u is not None, f"{ob.id} needs an observer"
        return refinement.refined_observation(L, u)
    if k is Kind.VIEW:
        assert u is not None, f"{ob.id} needs an observer"
        return invariants.view_tells_apart(L, u)
    assert op is not None, f"{ob.id} needs an operation"
    if k in (Kind.OC, Kind.DC) and layer.refines is not None:  # a stutter operation
        return refinement.stutter_consistency(L, op, _PER_OP[k])
    if k in _PER_OP:
        return _PER_OP[k](L, op)
    assert u is not None, f"{ob.id} needs an observer"
    return _PER_OP_AND_OBSERVER[k](L, op, u)


def _rlimit_count(solver: z3.Solver) -> int:
    stats = solver.statistics()
    for key in stats.keys():
        if key == "rlimit count":
            return int(stats.get_key_value(key))
    return 0


def smt2(formula: Formula) -> str:
    """The obligation as one SMT-LIB2 script: declarations, hypotheses, and the goal (negated
    for a validity obligation). Deterministic: fresh names are numbered per obligation."""
    s = z3.Solver(ctx=formula.ctx)
    for h in formula.hypotheses:
        s.add(h.term)
    s.add(formula.asserted_goal())
    return f"; mode {formula.mode}\n" + s.to_smt2()


def build(module: ir.Module, ob: Obligation, ctx: z3.Context, encoding: str = "qf") -> Formula:
    """The obligation's formula, with the well-formedness of every free value as a hypothesis;
    in the "qf" encoding, without its quantifiers where they can be removed soundly."""
    formula = formulate(module, ob, ctx)
    wellformed = formula.layer.enc.wellformed
    if wellformed:
        formula.hypotheses.insert(0, Labeled("well-formed values", z3.And(wellformed)))
    return encode(formula, encoding)


def encode(formula: Formula, encoding: str) -> Formula:
    """The formula as `build` leaves it in `encoding`, from the formula `formulate` made."""
    removed = encoding == "qf" and _quantifier_free(formula)
    formula.quantified = not removed and \
        qf.has_quantifier([h.term for h in formula.hypotheses] + [g.term for g in formula.goals])
    return formula


def _eliminate(formula: Formula, weaken: bool = False) -> qf.Elimination:
    """The formula's quantifiers instantiated (prover/qf.py), the goals as they are asserted."""
    return qf.eliminate([h.term for h in formula.hypotheses], [g.term for g in formula.goals],
                        1 if formula.mode == "sat" else -1, weaken)


def _instantiation_hypotheses(e: qf.Elimination) -> list[Labeled]:
    """What an elimination adds to the hypotheses: the lambdas' definitions and λ's constraints."""
    extras = [("definitions of the constants standing for lambdas and quantifiers", e.definitions),
              ("index-set instantiation: each λ is an index outside I", e.side)]
    return [Labeled(label, z3.And(terms)) for label, terms in extras if terms]


def _quantifier_free(formula: Formula) -> bool:
    """Replace the terms by their quantifier-free versions, if every quantifier could go.

    For a `valid` obligation, universals outside the fragment are instantiated at the terms
    they match (pass 3w): the result is weaker than the formula, so it is kept beside it, for
    a first check whose `unsat` proves the goal (`_check`); the formula stays exact."""
    e = _eliminate(formula, weaken=formula.mode == "valid")
    if not e.quantifier_free:
        return False  # keep the quantified formula whole: it is exact
    hypotheses = [replace(h, term=t) for h, t in zip(formula.hypotheses, e.hypotheses)]
    hypotheses += _instantiation_hypotheses(e)
    goals = [replace(g, term=t) for g, t in zip(formula.goals, e.goals)]
    if e.weakened:
        formula.weakened = (hypotheses, goals)
        return False
    formula.hypotheses, formula.goals, formula.completion = hypotheses, goals, e.completion
    return True


def solve(module: ir.Module, ob: Obligation, options: Options, cache: Cache | None = None,
          looked_up: Lookup | None = None) -> Result:
    """Solve one obligation (or take it from the cache), then dump and cross-check it if asked.

    The formula is built from the obligation's slice of the module, the same slice its cache
    key is computed from (prover/fingerprint.py). A result taken from the cache builds no
    formula. One that is to be dumped or cross-checked is solved afresh, cached or not: what
    is exported is the formula its verdict came from (with its quantifiers when the exact
    check first decided it), the same in every run. `looked_up`: `look_up`'s answer, if the
    caller has it already."""
    limit_memory(options.max_memory)
    lookup = looked_up or look_up(module, ob, options, cache)
    if lookup.cached is not None and not needs_formula(options):
        return lookup.cached
    result, formula = _solve_afresh(lookup.sliced, ob, options, lookup.start)
    result = replace(result, warnings=lookup.warnings)
    if cache is not None and lookup.key is not None and lookup.cached is None and result.status is Status.PROVED:
        cache.put(lookup.key, ob.id, result.rlimit_used, result.quantified)
        result = replace(result, warnings=result.warnings + tuple(cache.warnings))  # a write that failed
        cache.warnings.clear()
    if options.dump_smt is not None:
        export.dump(ob, formula, options.dump_smt)
    if options.cross_check is not None:
        objection = cross_check(ob, _to_cross_check(lookup.sliced, ob, formula, options), result.status.value,
                                options.cross_check, options.timeout)
        result = replace(result, disagreement=objection)
    return result


def _to_cross_check(sliced: ir.Module, ob: Obligation, formula: Formula, options: Options) -> Formula:
    """What the second solver checks: under the default encoding, the obligation without its
    quantifiers when the rewriting removes them all, though the exact check first decided it
    with them (cvc5 answers *unknown* on most such formulas, after minutes, where the
    quantifier-free one takes it seconds); else the formula as it was solved."""
    if options.encoding != "qf" or not formula.quantified:
        return formula
    again = build(sliced, ob, new_context(), "qf")
    return formula if again.quantified else again


def _solve_afresh(sliced: ir.Module, ob: Obligation, options: Options, start: float) -> tuple[Result, Formula]:
    """The result of solving the obligation (not from the cache), and the formula it was last
    solved on."""
    exact = options.encoding == "qf"  # try the exact formula first (_solved_exactly)
    formula = build(sliced, ob, new_context(), "quantified" if exact else options.encoding)
    lowered = time.perf_counter() - start
    tried = exact and formula.quantified  # without quantifiers, the two encodings are one formula
    exactly, spent, out_of_memory, unproved = None, 0, False, ""
    try:
        if tried:
            exactly, spent, unproved = _solved_exactly(ob, formula, options, start, lowered)
    except _OutOfMemory as out:  # says nothing, like any other answer but PROVED
        spent, out_of_memory = out.units, True
    if exactly is not None:
        return exactly, formula
    if out_of_memory:  # the check's context is freed now: the limit again, from what Z3 holds now
        limit_memory(options.max_memory)
    if tried:  # its context has been used: solved afresh, as without the exact check
        first, formula = formula, build(sliced, ob, new_context(), options.encoding)
        if formula.quantified:  # the rewriting left the formula as it was: what was found holds
            formula.shown_satisfiable = first.shown_satisfiable
            formula.no_shaped_counterexample = first.no_shaped_counterexample
        lowered = time.perf_counter() - start
    elif exact:
        formula = encode(formula, options.encoding)
        lowered = time.perf_counter() - start
    try:
        result = _check(ob, formula, options, start, lowered)
    except _OutOfMemory as out:
        elapsed = time.perf_counter() - start
        return Result(ob, Status.UNKNOWN, elapsed, spent + out.units, lowered, f"{out.stage}: memory limit of "
                      f"{options.max_memory} MiB reached (--max-memory)"), formula
    result = replace(result, rlimit_used=result.rlimit_used + spent)
    if result.status is Status.UNKNOWN:
        # where the conjuncts of the goal stopped, when it is the goal Z3 gave up on
        where = f"; {unproved}" if unproved and result.detail.startswith(GOAL_STAGE) else ""
        result = replace(result, detail=result.detail + _remedy(formula, options) + where)
    return result, formula


class _OutOfMemory(Exception):
    """Z3 reached --max-memory in a check outside `_check`'s own solvers. The limit is lifted
    already (lift_memory_limit, before the check's context is freed: with the limit exceeded,
    freeing a context crashes Z3). In the exact-first check it says nothing, and the limit is
    set again before the quantifier-free encoding is built; in `_check` the obligation ends
    UNKNOWN."""

    def __init__(self, stage: str, units: int) -> None:
        super().__init__(stage)
        self.stage, self.units = stage, units


def _checked(solver: z3.Solver, stage: str) -> z3.CheckSatResult:
    """The solver's answer; _OutOfMemory if Z3 ran out of --max-memory."""
    answer = solver.check()
    if answer == z3.unknown and solver.reason_unknown() in MEMORY_REASONS:
        lift_memory_limit()
        raise _OutOfMemory(stage, _rlimit_count(solver))
    return answer


def _solver(ctx: z3.Context, options: Options, blast: bool = False) -> z3.Solver:
    """Every check's solver; with `blast`, Z3's simplifier rewrites a read of a map just
    written, `select(store(a, i, v), j)`, as `ite(i == j, v, select(a, j))` before the search
    (`blast_select_store`), an equivalent formula. The exact checks of a validity goal (the
    whole goal and its conjuncts, `_goals_unsat`) ask for it: what an operation writes is such
    a store, and at SeKVM's hardware sizes, where the invariants that read a map an operation
    wrote (KCoreMachine's `donations`, `tlb_coherent`) cost most, the stack took 112.6M
    resource units instead of 124.6M and 0.80 of the time at -j1, and 0.95 of the units at its
    small configuration (one run each; docs/ci.md, Speed). The other checks do not: under it
    Z3's model of a leak in the quantified encoding gave a map over a wide sort a default value
    the reference interpreter does not replay (tests/test_counterexample.py)."""
    solver = z3.Solver(ctx=ctx)
    solver.set("rlimit", options.rlimit, "timeout", int(options.timeout * 1000), "random_seed", options.seed,
               "blast_select_store", blast)
    return solver


def _vacuity_check(kept: list[Labeled], options: Options) -> tuple[z3.Solver, dict[int, str]] | None:
    """A solver holding the hypotheses `kept` (a formula's `_shown` ones) without
    quantifiers, each tracked by its label, if qf.eliminate can remove them all; else None. In a
    context of its own, like every
    check of the exact-first path after the first (`_whole_goal`): what it finds does not
    depend on what else was built in the formula's context (a witness shape, or not,
    prover/witness.py).

    Exact both ways: the instances are implied by the quantified hypotheses (so `unsat` carries
    over), and a model of them extends to one of the quantifiers by the fragment argument of
    prover/qf.py (so `sat` does), the argument the qf encoding's own vacuity check rests on."""
    if not kept:
        return None
    own = new_context()
    e = qf.eliminate([h.term.translate(own) for h in kept], [], 1)
    if not e.quantifier_free:
        return None
    vac = _solver(own, options)
    labels: dict[int, str] = {}
    for i, h in enumerate([replace(h, term=t) for h, t in zip(kept, e.hypotheses)] + _instantiation_hypotheses(e)):
        tag = z3.Bool(f"vac!{i}", own)
        labels[tag.get_id()] = h.label
        vac.assert_and_track(h.term, tag)
    return vac, labels


# The exact-first check's budgets, as shares of --rlimit: its shaped models (of the hypotheses,
# or of a VAC formula) may use rlimit / SHAPE_SHARE, the whole goal rlimit / WHOLE_SHARE, each
# conjunct of the goal rlimit / CONJUNCT_SHARE (all of them together, rlimit), and the shaped
# counterexample where Z3 gave up on the goal rlimit / EXACT_SHARE. The whole goal's is small:
# where Z3 does not prove it within a twentieth, the conjuncts one by one are cheaper overall
# (docs/theory.md §9 has the figures), and a leak no longer pays a quarter of --rlimit first.
# Outside the exact-first check, the goal of a formula that keeps quantifiers is checked in the
# solver of the hypotheses under rlimit / GOAL_SHARE, then the shaped counterexample is looked
# for, then that solver checks again under the rest of --rlimit, and a fresh one under all of it
# (`_check`). A leak spent all of --rlimit in the first check before its shaped counterexample
# (found in milliseconds); no shipped proof needs more than the quarter (docs/theory.md §2), and
# the rest keeps the counterexamples the first check found late (a mutant of SeKVM's at 10.9M
# units, which the fresh solver does not find within --rlimit).
SHAPE_SHARE = 2
WHOLE_SHARE = 20
CONJUNCT_SHARE = 2
EXACT_SHARE = 4
GOAL_SHARE = 4
# Z3's reason_unknown() when a check ran out of its resource units (or out of time: "canceled")
_OUT_OF_UNITS = ("canceled", "max. resource limit exceeded", "resource limit exceeded")


def _solved_exactly(ob: Obligation, formula: Formula, options: Options, start: float,
                    lowered: float) -> tuple[Result | None, int, str]:
    """PROVED, if Z3 proves the obligation on its formula as it is, quantifiers and all: a
    validity obligation when its hypotheses are satisfiable and the negated goal under them is
    `unsat` (`_goals_unsat`); a satisfiability obligation (VAC) when a model of the witness
    shape (prover/witness.py) is found within half the resource limit. FAILED, when Z3 gave up
    on the whole goal and then found a model of the hypotheses and one negated conjunct, with
    the counterexample it gives (the first conjunct in source order that fails), unless the
    reference interpreter contradicts it. Else None, and
    the quantifier-free encoding is built and solved as it would be without this check. With
    either, the resource units this check spent (a result reports them all), and which
    conjunct of the goal it could not prove, if it tried them one by one (`_goals_unsat`).

    Every answer it uses is exact: `unsat` of the negated goal under the quantified hypotheses
    is a proof; a shaped model is a model (the shape only adds equations); the vacuity check is
    `_shown_satisfiable`'s; a model Z3 gives of the quantified formula is one (it checks the
    universals against it), and the reference interpreter runs it again like any other. Its
    point is cost: where the formula keeps quantifiers, their instances over the index set run
    into thousands and building them in Python was most of the time, while Z3's own
    instantiation needs few and a shaped model is found in milliseconds (docs/theory.md §9);
    and a leak Z3 finds here needs no quantifier-free encoding either. An `unknown` of the
    goal, or no shaped model, says nothing: VACUOUS verdicts, the counterexamples Z3 did not
    find here and everything else come from the quantifier-free encoding."""
    if formula.mode == "sat":
        spent = 0
        # separate questions (Formula.separate_goals): a model for each goal
        questions = [g.term for g in formula.goals] if formula.separate_goals else [formula.asserted_goal()]
        for question in questions:
            used, model = _shaped(witness.shapes(formula), [h.term for h in formula.hypotheses] + [question],
                                  options, options.rlimit // SHAPE_SHARE)
            spent += used
            if model is None:
                return None, spent, ""
        return Result(ob, Status.PROVED, time.perf_counter() - start, spent, lowered), spent, ""
    terms = _to_show(formula)
    # the shapes depend on `init` and on the maps of the runs' pre-states (prover/witness.py), so
    # they are part of what is compared; shapes built from the formula's own terms are not shared
    built_from = witness.built_from(formula)
    init = (formula.layer.layer.init, tuple(run.upper for run in formula.runs), built_from)
    key = (options.rlimit, options.seed, options.timeout, hash(init), tuple(t.hash() for t in terms))
    shown = None
    if built_from is not None:
        with shared.LOCK:  # the terms kept are in _SHOWN_CONTEXT
            here = [t.translate(_SHOWN_CONTEXT) for t in terms]
            shown = next((units for kept, kept_init, units in _SHOWN.get(key, []) if kept_init == init
                          and len(kept) == len(here) and all(k.eq(t) for k, t in zip(kept, here))), None)
    if shown is None:  # before the whole goal is checked in the formula's context: see _shown_satisfiable
        satisfiable, shown = _shown_satisfiable(formula, options)
        if not satisfiable:
            return None, shown, ""
        if built_from is not None:
            with shared.LOCK:
                _remember_shown(key, terms, init, shown)
    formula.shown_satisfiable = True
    whole = _whole_goal(formula, options)
    if whole[0] == z3.sat:  # not implied: its counterexample comes from the quantifier-free encoding (see there)
        return None, shown + whole[1], ""
    proved, spent, unproved, found = _goals_unsat(formula, options, whole)
    used = shown + spent
    if proved:
        return Result(ob, Status.PROVED, time.perf_counter() - start, used, lowered), used, ""
    if found is None:
        return None, used, unproved
    cex, replayed = _counterexample(ob, formula, found.model())
    if cex is None:  # contradicted: the quantifier-free encoding looks again, and says ERROR if it must
        return None, used, ""
    return Result(ob, Status.FAILED, time.perf_counter() - start, used, lowered, "; ".join(cex.failing), cex,
                  replay=replayed), used, ""


GOAL_STAGE = "checking the goal"  # of _check, as an UNKNOWN's reason begins
EXACT_STAGE = "checking the goal with its quantifiers (the exact check first)"


def _whole_goal(formula: Formula, options: Options) -> tuple[z3.CheckSatResult, int]:
    """Z3's answer for the whole negated goal under every hypothesis, quantifiers and all,
    within rlimit / WHOLE_SHARE, and the resource units it spent: the goal at one witness per
    key type across the observation's components (Formula.asserted_goal_one_witness,
    equisatisfiable with it). In the formula's own context,
    first: nothing has been made there since the formula was built (`_shown_satisfiable`
    translates terms out of it, and the checks that follow may make terms in it), so what Z3
    does here does not depend on what ran before. A context of its own would cost one more
    context per obligation (Z3 allocates about 17 MB for each) and a translation of every term:
    with this, the shipped proofs took 0.92 of the time at -j1 and ARINC 653 0.95 (farm-bench,
    medians of 3 and 5 pairs, 2026-12-03)."""
    _, answer, units = _counted(formula.ctx, [h.term for h in formula.hypotheses] + [formula.asserted_goal_one_witness()],
                                options, options.rlimit // WHOLE_SHARE, EXACT_STAGE, blast=True)
    return answer, units


def _goals_unsat(formula: Formula, options: Options,
                 whole: tuple[z3.CheckSatResult, int]) -> tuple[bool, int, str, z3.Solver | None]:
    """Whether the negated goal is `unsat` under every hypothesis, quantifiers and all, the
    resource units spent, when it tried the conjuncts and one was not `unsat` a note naming it
    (for an UNKNOWN verdict: where to look), and, when that conjunct's negation had a model
    under the hypotheses (which falsifies the goal too), the solver holding it: Z3's, or, where
    Z3 gave up on it, one of the witness shape (prover/witness.py), looked for before the
    quantifier-free encoding, which a leak over a wide sort runs to its limits. Z3's model of
    the whole negated goal is not kept: the quantifier-free encoding, which follows, finds one
    about as fast as the whole check did (where the whole goal is cheap, so is its rewriting),
    and which conjunct that model breaks is the solver's choice either way.

    First the whole goal, under rlimit / WHOLE_SHARE (`whole`: its answer and units, from
    `_whole_goal`); if that is `unknown` and the goal is a
    conjunction (an INV goal has one conjunct per invariant clause the operation may change,
    prover/frame.py), each conjunct on its own, in turn (all in one context, _Run), in the equivalent form of
    prover/goalform.py (`_asked`), under rlimit / CONJUNCT_SHARE each and
    the whole rlimit together (a goal of one conjunct is its whole goal), and the shaped model
    under rlimit / EXACT_SHARE; the conjuncts of a large observation in two halves first
    (`_parts`), each under rlimit / WHOLE_SHARE, out of the same whole rlimit.

    Each conjunct proved under every hypothesis proves the conjunction, so only all `unsat`
    proves anything; the first conjunct that is not ends the search. Z3 often proves each
    conjunct of a large invariant in a few hundred thousand units where the whole conjunction
    runs out of its limit: KCoreMachine's host_hvc at SeKVM's hardware sizes proved its 27
    conjuncts in 10M units together, and the whole in 21M (docs/theory.md §9; 22 are asked now). The cap on each
    conjunct bounds what a leaky model pays here before its counterexample is looked for."""
    hypotheses = [h.term for h in formula.hypotheses]
    answer, spent = whole
    if answer != z3.unknown:
        return answer == z3.unsat, spent, "", None

    def shaped(goals: list[Labeled] | None = None) -> z3.Solver | None:
        """A model of the witness shape of the hypotheses and the negated goal (or conjunct)."""
        nonlocal spent
        used, one = _shaped(witness.shapes(formula), hypotheses + [formula.asserted_goal(goals)], options,
                            options.rlimit // EXACT_SHARE)
        spent += used
        return one

    if len(formula.goals) < 2:
        found = shaped()  # before `spent` is read: it adds to it
        formula.no_shaped_counterexample = found is None
        return False, spent, "", found
    left = options.rlimit
    run: _Run | None = None
    proved = 0
    for part in _parts(_asked(formula.goals)):
        if len(part) > 1:  # a half: at one witness per key type, and one by one if Z3 does not prove it so
            budget = min(left, options.rlimit // WHOLE_SHARE)
            if budget > 0:
                run = run or _Run(hypotheses, blast=True)
                _, answer, used = run.check(formula.asserted_goal_one_witness(part), options, budget, EXACT_STAGE)
                spent += used
                left -= used
                if answer == z3.unsat:
                    proved += len(part)
                    continue
        for goal in part:
            budget, answer = min(left, options.rlimit // CONJUNCT_SHARE), z3.unknown
            if budget > 0:
                run = run or _Run(hypotheses, blast=True)
                solver, answer, used = run.check(formula.asserted_goal([goal]), options, budget, EXACT_STAGE)
                spent += used
                left -= used
            if answer != z3.unsat:
                if budget <= 0:
                    why = "no resource units were left for it"
                elif answer == z3.sat:
                    why = "Z3 found a model of its negation"
                else:
                    why = f"Z3 gave up on it under {budget} resource units: {solver.reason_unknown()}"
                found = solver if answer == z3.sat else shaped([goal])  # before `spent` is read: it adds to it
                return False, spent, (f"with its quantifiers, {proved} of the goal's {len(formula.goals)} conjuncts "
                                      f"were proved, then not {goal.label} ({why}; the rest were not tried)"), found
            proved += 1
    return True, spent, "", None


# `_goals_unsat` asks a conjunction of at least HALVES_FROM observation components that Z3
# gave up on as a whole in two halves first (`_parts`)
HALVES_FROM = 4


def _parts(goals: list[Labeled]) -> list[list[Labeled]]:
    """How `_goals_unsat` asks the conjuncts of a goal Z3 gave up on as a whole: in two halves,
    each at one witness per key type (Formula.asserted_goal_one_witness) and, if Z3 does not
    prove a half so, conjunct by conjunct, when there are at least HALVES_FROM and each is a
    component of an observation (the goal of WSC, LR, DR, R-OBS); else conjunct by conjunct
    (a part of one). A half is a conjunction of the same kind as the whole, so its `unsat`
    proves its conjuncts as the whole's would; only `unsat` is taken from it (its model would
    be at the shared witnesses, not the conjunct's own). Where an observation's components
    change together, a half costs Z3 about what one of them does (docs/theory.md §9 has the
    figures)."""
    if len(goals) < HALVES_FROM or any(g.component is None for g in goals):
        return [[g] for g in goals]
    half = len(goals) // 2
    return [goals[:half], goals[half:]]


def _asked(goals: list[Labeled]) -> list[Labeled]:
    """The conjuncts as `_goals_unsat` asks them one by one: each in an equivalent form Z3
    proves faster (prover/goalform.py), or all as stated where that rewriting would nest too
    deeply for Python's recursion limit (a chain of thousands of writes)."""
    try:
        terms = rewritten([g.term for g in goals])
    except (RecursionError, ctypes.ArgumentError) as exc:
        if not too_deep(exc):
            raise
        return goals
    return [replace(g, term=t) for g, t in zip(goals, terms)]


# Hypotheses shown satisfiable in this process, with the resource units showing it took (which a
# result reports whether or not it showed them itself, so its figure does not depend on what ran
# before it). The obligations of one operation share them: INV, OC, DC, WSC, LR and DR of `a`
# all assume I(s) and that `a` does not halt (the hypotheses about a second run are left out,
# see Labeled.reflexive), so each set is shown once per process, not once per obligation.
# Looked up by Z3's structural hash, and a hit only if the obligation's terms, translated into
# _SHOWN_CONTEXT where those kept are, are the very same terms: hash-consing makes structurally
# equal terms one term, so a hit is the same formula, checked under the same limits. A context
# of its own, not shared.CONTEXT: terms are translated into it from the obligations' contexts,
# which raises its count of fresh names (see shared.CONTEXT), and nothing is taken out of it.
# The layer's `init` (and which runs are of an upper layer) must be the same too: the witness
# shape is built from it, so with another `init` the same hypotheses may take other units, or
# have no shaped model at all.
# At most _SHOWN_LIMIT sets are kept, then all are forgotten, with the context that held them: a
# process that lives long (the language server proves every saved file in one) must not grow
# without bound, and forgetting costs only time, since the units are the same either way.
_SHOWN: dict[tuple[object, ...], list[tuple[list[z3.ExprRef], object, int]]] = {}
_SHOWN_CONTEXT = z3.Context()
_SHOWN_LIMIT = 10_000


def _remember_shown(key: tuple[object, ...], terms: list[z3.BoolRef], init: object, units: int) -> None:
    """Keep hypotheses shown satisfiable under `key`, translated into _SHOWN_CONTEXT; when
    _SHOWN_LIMIT sets are kept already, forget them all first, and the context with them.
    Called under shared.LOCK."""
    global _SHOWN_CONTEXT
    if sum(len(kept) for kept in _SHOWN.values()) >= _SHOWN_LIMIT:
        _SHOWN.clear()
        _SHOWN_CONTEXT = z3.Context()
    here = [t.translate(_SHOWN_CONTEXT) for t in terms]
    _SHOWN.setdefault(key, []).append((here, init, units))


def _shown(formula: Formula) -> list[Labeled]:
    """The hypotheses whose satisfiability is checked: all but those that hold when t = s."""
    return [h for h in formula.hypotheses if not h.reflexive]


def _to_show(formula: Formula) -> list[z3.BoolRef]:
    """The terms of `_shown`."""
    return [h.term for h in _shown(formula)]


def _shown_satisfiable(formula: Formula, options: Options) -> tuple[bool, int]:
    """Whether the formula's non-reflexive hypotheses were shown satisfiable, exactly, and the
    resource units spent: by a model of the witness shape (prover/witness.py, under rlimit /
    SHAPE_SHARE) or, failing that, in their quantifier-free form (`_vacuity_check`). The shape
    comes first: it answers in milliseconds where it fits (every operation of the shipped
    proofs but one boot state), while the quantifier-free form is built in Python.

    In a context of its own, made before anything is checked in the formula's context (its
    whole goal), from the hypotheses and the shapes: then the check, and the units a result
    reports for it, are a function of _SHOWN's key (the hypotheses, `init`, what the shapes are
    built from, the limits), whichever obligation of an operation is solved first in the
    process. Z3 names the symbols it makes while solving from a count kept per context, and a
    translation raises the target's count to the source's; the whole goal's check raises the
    formula's context's count by what that goal needs. Made after it, as until 2026-12-03, the
    same hypotheses took other units in each obligation of an operation (KCoreSpec's OC/vm_trap
    55213, its DC 51323), a hit reported the first one's, and the figures of 18 of the 709
    obligations of `prove proofs` differed between -j1 and -j3. Before any check the count is 0:
    building a formula in the quantified encoding makes no fresh name (tests/test_qf.py). The
    key names what the shapes are built from (witness.built_from): the obligations of one
    operation with a second run have that run's maps too. Shown first, the hypotheses of a
    leak are shown satisfiable before its whole goal is found `sat`, once per operation and
    process, and the quantifier-free encoding that follows needs not show them again.

    (Asserting only the shapes of the maps the hypotheses mention, tried the same day, is exact
    too, but Z3 then gave up on the shaped model of KCoreMachine's R-BIND/vm_s2_fault at SeKVM's
    hardware sizes, "incomplete quantifiers", and it ended UNKNOWN.)"""
    own = new_context()
    hypotheses = [replace(h, term=h.term.translate(own)) for h in _shown(formula)]
    spent, shaped = _shaped(witness.shapes(formula, own), [h.term for h in hypotheses], options,
                            options.rlimit // SHAPE_SHARE, own=own)
    if shaped is not None:
        return True, spent
    vacuity = _vacuity_check(hypotheses, options)
    if vacuity is None:
        return False, spent
    answer = _checked(vacuity[0], "checking the hypotheses in their quantifier-free form")
    return answer == z3.sat, spent + _rlimit_count(vacuity[0])


def _shaped(shapes: Iterable[witness.Shape], assertions: list[z3.ExprRef], options: Options,
            rlimit: int, own: z3.Context | None = None) -> tuple[int, z3.Solver | None]:
    """The resource units spent looking for a model of the assertions in which every map of the
    pre-states is its term in one of `shapes` (prover/witness.py), tried in turn until one has
    a model, all under `rlimit` together (a shape is tried under what those before it left);
    each in a solver of its own, in a context of its own (`own`, if the caller made one for
    them), with the shapes built on a lambda put in (`_in_shape`); and the solver holding the
    model if one was found."""
    spent = 0
    for pairs in shapes:
        if not pairs or spent >= rlimit:
            break
        equations = [m == term for m, term in pairs]
        one, answer = _fresh(assertions + equations, options, rlimit - spent, "looking for a model of the witness shape",
                             partial(_in_shape, shapes=len(equations)), own)
        spent += _rlimit_count(one)
        if answer == z3.sat:
            return spent, one
    return spent, None


def _in_shape(terms: list[z3.ExprRef], shapes: int) -> list[z3.ExprRef]:
    """Assertions followed by `shapes` equations `m == shape` (as `_shaped` makes them), with
    every map whose shape is built on a lambda (`init`'s pointwise definition, or an
    index-linking one's Λ, updated at free indices) replaced by it in the assertions and every
    read pushed through its writes and lambda (qf.expand_reads), under quantifiers too: an
    equivalent formula (the equations stay, and give the maps their values in a model).

    Why: with such a map only equated to its shape, Z3 instantiates a quantifier that reads it
    at an index read from it (`owner[nxt[nxt[p]]]`, `nxt`'s shape the identity λ `init` gives
    it) in a matching loop, counting little of the work in its resource units and growing in
    memory: the hypotheses of a secure pointer map of 36-bit pages took each shaped search to
    --timeout, and Z3 aborted the whole process (std::terminate) on reaching --max-memory's
    2 GiB there; with 16-bit pages `prove` ran for over 5 minutes; a leaky one's WSC took 66 s
    in the quantified encoding (tests/test_qf.py). Put in, the quantifier's body is a
    bit-vector formula: 0.5 s for the whole model, 1.1 s for that WSC. The maps whose shape is
    a constant map stay equated to it: with every map put in, the shipped proofs' shaped
    searches took 1.37 times the resource units they took with none, with these only 1.12
    (2026-12-03). The assertions as they are where the rewriting would nest too deeply for
    Python's recursion limit."""
    split = len(terms) - shapes
    pairs = [(e.arg(0), e.arg(1)) for e in terms[split:] if _on_a_lambda(e.arg(1))]
    if not pairs:
        return terms
    try:
        return qf.expand_reads([z3.substitute(t, *pairs) for t in terms[:split]], binders=True) + terms[split:]
    except (RecursionError, ctypes.ArgumentError) as exc:
        if not too_deep(exc):
            raise
        return terms


def _on_a_lambda(shape: z3.ExprRef) -> bool:
    """A shape that is a lambda, updated at indices or not."""
    while z3.is_store(shape):
        shape = shape.arg(0)
    return z3.is_quantifier(shape) and shape.is_lambda()


def _fresh(assertions: list[z3.ExprRef], options: Options, rlimit: int, stage: str,
           rewrite: Callable[[list[z3.ExprRef]], list[z3.ExprRef]] | None = None,
           own: z3.Context | None = None) -> tuple[z3.Solver, z3.CheckSatResult]:
    """Check the assertions in a solver and a context of their own (`own`, if the caller made
    one for them), under `rlimit` (at least 1), rewritten there by `rewrite` if given (in that
    context: terms made in the formula's would change what Z3 does in it later); _OutOfMemory,
    naming the stage, if Z3 runs out of --max-memory."""
    own = own or new_context()
    one = _solver(own, replace(options, rlimit=max(1, rlimit)))
    try:
        here = [t if t.ctx is own else t.translate(own) for t in assertions]
        one.add(rewrite(here) if rewrite else here)
    except z3.Z3Exception as exc:
        # Z3 may run out of --max-memory as it takes the assertions in, before the check: the same
        if not out_of_memory(exc):
            raise
        lift_memory_limit()
        raise _OutOfMemory(stage, _rlimit_count(one)) from None
    return one, _checked(one, stage)


class _Run:
    """One context of its own for a run of checks of one obligation that share their hypotheses
    (the conjuncts of _goals_unsat, the separate goals of _check), each in a solver of its own
    and under a budget of its own (Z3's rlimit counts from where the context's count is when a
    check starts). The hypotheses are translated into it once. A run is asked in the same order,
    after the same checks, in every run of `prove`, so what a check finds depends on nothing
    outside its obligation, as in a context per check (_fresh). That made a context per
    conjunct, about 400 of the 1345 contexts of `prove proofs`; Z3 takes about 2.5 ms to make
    one and free it."""

    def __init__(self, hypotheses: list[z3.ExprRef], blast: bool = False) -> None:
        self.blast = blast  # _solver's
        self.ctx = new_context()
        self.hypotheses = [h.translate(self.ctx) for h in hypotheses]

    def check(self, goal: z3.ExprRef, options: Options, rlimit: int,
              stage: str) -> tuple[z3.Solver, z3.CheckSatResult, int]:
        """The goal's check under the hypotheses, within `rlimit` (at least 1), and the resource
        units it spent; _OutOfMemory, naming the stage, if Z3 runs out of --max-memory."""
        return _counted(self.ctx, self.hypotheses + [goal.translate(self.ctx)], options, rlimit, stage, self.blast)


def _counted(ctx: z3.Context, assertions: list[z3.ExprRef], options: Options, rlimit: int,
             stage: str, blast: bool = False) -> tuple[z3.Solver, z3.CheckSatResult, int]:
    """Check the assertions in a new solver of a context that may have checked before, within
    `rlimit` (at least 1), and the resource units it spent (Z3 counts per context, from where
    the count is when a check starts); _OutOfMemory, naming the stage, with the units of this
    check, if Z3 runs out of --max-memory."""
    solver = _solver(ctx, replace(options, rlimit=max(1, rlimit)), blast)
    before = _rlimit_count(solver)
    solver.add(assertions)
    try:
        answer = _checked(solver, stage)
    except _OutOfMemory as out:
        raise _OutOfMemory(out.stage, out.units - before) from None
    return solver, answer, _rlimit_count(solver) - before


def _remedy(formula: Formula, options: Options) -> str:
    """What is cheaper to try than a larger --rlimit, if anything: the quantifier-free encoding,
    when it removes every quantifier the quantified encoding left to Z3."""
    if options.encoding != "quantified" or not formula.quantified or not _eliminate(formula).quantifier_free:
        return ""
    return "; the default encoding (--encoding qf) removes every quantifier of this obligation: try it first"


_STATE_HYPOTHESES = ("I(s)", "I_L(s)", "well-formed values")


def _why_vacuous(ob: Obligation, core: list[str]) -> str:
    """The unsat core, said plainly when it shows that the operation always halts."""
    listed = "the hypotheses are unsatisfiable: " + (", ".join(core) or "none")
    halts = [label for label in core if label.endswith("does not halt")]
    if ob.op and halts and all(label in halts or label in _STATE_HYPOTHESES for label in core):
        where = " that satisfies the invariants" if any(label.startswith("I") for label in core) else ""
        return f"`{ob.op}` halts in every state{where} ({listed})"
    return listed


def _check(ob: Obligation, formula: Formula, options: Options, start: float, lowered: float) -> Result:
    ctx = formula.ctx
    solver = _solver(ctx, options)

    # Resource units: Z3 counts them per context, cumulatively, so the solvers of this context
    # count by the last one to check; the checks in contexts of their own add theirs.
    checked: list[z3.Solver] = []
    elsewhere = 0

    def units() -> int:
        return max((_rlimit_count(x) for x in checked), default=0) + elsewhere

    def why_unknown(stage: str, checker: z3.Solver | None = None) -> str:
        reason = (checker or solver).reason_unknown()
        if reason in MEMORY_REASONS:
            lift_memory_limit()
            return f"{stage}: memory limit of {options.max_memory} MiB reached (--max-memory)"
        if time.perf_counter() - check_start >= options.timeout * 0.99:
            return f"{stage}: timeout after {options.timeout:g}s (--timeout)"
        if reason in _OUT_OF_UNITS:
            return f"{stage}: resource limit of {options.rlimit} reached (--rlimit)"
        return f"{stage}: the solver gave up ({reason.strip('()') or 'no reason given'})"

    def done(status: Status, detail: str = "", cex: Counterexample | None = None,
             replayed: Replay | None = None, used: int | None = None, quantified: bool = formula.quantified) -> Result:
        return Result(ob, status, time.perf_counter() - start, units() if used is None else used, lowered, detail,
                      cex, quantified=quantified, replay=replayed)

    check_start = time.perf_counter()  # of the last check, for why_unknown

    def fresh_check(assertions: list[z3.ExprRef], rlimit: int) -> tuple[z3.Solver, z3.CheckSatResult]:
        """Check the assertions in a solver and a context of their own."""
        nonlocal check_start, elsewhere
        check_start = time.perf_counter()
        one, answer = _fresh(assertions, options, rlimit, GOAL_STAGE)
        elsewhere += _rlimit_count(one)
        return one, answer

    shapes: list[witness.Shape] | None = None  # built once, when first needed

    def shaped_model(assertions: list[z3.ExprRef], share: int) -> z3.Solver | None:
        """A solver holding a model of the assertions, if they have one in which every map of
        the pre-states has the shape of prover/witness.py (tried on a formula that keeps
        quantifiers, with 1/share of the resource limit). The maps are equated to their
        shapes, so the model gives them values (for a counterexample)."""
        nonlocal shapes, check_start, elsewhere
        if shapes is None:
            shapes = list(witness.shapes(formula)) if formula.quantified else []
        check_start = time.perf_counter()
        spent, one = _shaped(shapes, assertions, options, options.rlimit // share)
        elsewhere += spent
        return one

    # 1. The hypotheses alone must be satisfiable; an unsat core names the culprits. Those that
    #    hold by reflexivity when t = s are left out here (see Labeled.reflexive), added after.
    #    Quantified hypotheses are checked in their quantifier-free form when they have one
    #    (`_vacuity_check`): Z3 may fail to build a model of a universal over a wide sort.
    #    When they have none, a model of the shape of prover/witness.py is looked for first.
    tracked = {}
    for i, h in enumerate(formula.hypotheses):
        if h.reflexive:
            continue
        tag = z3.Bool(f"hyp!{i}", ctx)
        tracked[tag.get_id()] = h.label
        solver.assert_and_track(h.term, tag)
    vacuity = _vacuity_check(_shown(formula), options) if formula.quantified and not formula.shown_satisfiable else None
    if formula.shown_satisfiable:  # by the exact-first check, on these very hypotheses
        answer = z3.sat
    elif vacuity is None and shaped_model(_to_show(formula), share=1) is not None:
        answer = z3.sat
    else:
        checker = vacuity[0] if vacuity else solver
        check_start = time.perf_counter()
        answer = checker.check()
        if vacuity:  # a context of its own
            elsewhere += _rlimit_count(checker)
        else:
            checked.append(checker)
    if answer == z3.unknown:
        reason = why_unknown("checking the hypotheses", checker)
        return done(Status.UNKNOWN, reason + (" (in their quantifier-free form)" if vacuity else ""))
    if answer == z3.unsat:
        labels = vacuity[1] if vacuity else tracked
        core = sorted(labels[c.get_id()] for c in checker.unsat_core())
        return done(Status.VACUOUS, _why_vacuous(ob, core))

    # 2. The goal, under every hypothesis, in the solver of step 1 and, if that gives up, again
    #    in a fresh solver and context: Z3 runs its preprocessing tactics (bit-blasting,
    #    eliminating arrays) only on a problem it checks once, and a solver checked again falls
    #    back to its incremental core. Each is much faster than the other on some goals of the
    #    ARINC 653 kernel. A context of its own, since what a context has done before changes
    #    what Z3 does in it. Where the formula keeps quantifiers, the first of the two has
    #    rlimit / GOAL_SHARE (see there). Before both, if pass 3w made a weaker quantifier-free version of
    #    the formula, the goal is checked under that (in a context of its own too, with a
    #    quarter of the resource limit): its `unsat` proves the goal (those hypotheses follow
    #    from the real ones); its `sat` or `unknown` proves nothing, and the exact checks follow.
    if formula.weakened is not None:
        assert formula.mode == "valid", f"{ob.id}: a weakened formula for a satisfiability check"
        hypotheses, goals = formula.weakened
        _, weak_answer = fresh_check([h.term for h in hypotheses] + [formula.asserted_goal(goals)],
                                     options.rlimit // 4)
        if weak_answer == z3.unsat:
            return done(Status.PROVED, quantified=False)
    if formula.separate_goals:  # separate questions: each goal on its own, each a check
        run = _Run([h.term for h in formula.hypotheses])
        gave_up, without = "", []
        for goal in formula.goals:
            check_start = time.perf_counter()
            alone, answer, used = run.check(goal.term, options, options.rlimit, GOAL_STAGE)
            elsewhere += used
            if answer == z3.unsat:
                without.append(goal)
            elif answer == z3.unknown:
                gave_up = gave_up or why_unknown(GOAL_STAGE, alone)
                if alone.reason_unknown() in MEMORY_REASONS:
                    break  # why_unknown lifted the limit: no context more under it
        if without:
            return done(Status.VACUOUS, formula.explain_goal(without) if formula.explain_goal else "")
        return done(Status.UNKNOWN, gave_up) if gave_up else done(Status.PROVED)
    everything = [h.term for h in formula.hypotheses] + [formula.asserted_goal()]
    if formula.mode == "sat" and shaped_model(everything, share=1) is not None:
        return done(Status.PROVED)
    solver.add([h.term for h in formula.hypotheses if h.reflexive])
    solver.add(formula.asserted_goal())
    first = options.rlimit // GOAL_SHARE if formula.quantified and formula.mode == "valid" else options.rlimit
    solver.set("rlimit", first)
    check_start = time.perf_counter()
    answer = solver.check()
    checked.append(solver)
    resumable = first < options.rlimit and solver.reason_unknown() in _OUT_OF_UNITS and \
        time.perf_counter() - check_start < options.timeout * 0.99
    if answer == z3.unknown and solver.reason_unknown() not in MEMORY_REASONS:
        # Z3 may fail to build a model of quantifiers over wide sorts: a counterexample is
        # looked for among the shaped states (prover/witness.py) before the checks that follow,
        # which a leak would run to their limits: the rest of the first check's budget, then the
        # second check
        # (not again where the exact-first check looked for it on this very formula)
        shaped = shaped_model(everything, EXACT_SHARE) \
            if formula.mode == "valid" and not formula.no_shaped_counterexample else None
        if shaped is not None:
            solver, answer = shaped, z3.sat
        else:
            if resumable:
                solver.set("rlimit", options.rlimit - first)
                check_start = time.perf_counter()
                answer = solver.check()
            if answer == z3.unknown and solver.reason_unknown() not in MEMORY_REASONS:
                solver, answer = fresh_check(everything, options.rlimit)
    if answer == z3.unknown:
        return done(Status.UNKNOWN, why_unknown(GOAL_STAGE))
    if formula.mode == "sat":
        if answer == z3.sat:
            return done(Status.PROVED)
        return done(Status.VACUOUS, formula.explain_unsat)
    if answer == z3.unsat:
        return done(Status.PROVED)
    used = units()  # the solvers' work: evaluating the model below counts too
    cex, replayed = _counterexample(ob, formula, solver.model())
    if cex is None:
        return done(Status.ERROR, "internal error: the solver's counterexample does not replay in the "
                                  "reference interpreter: " + "; ".join(replayed.findings),
                    replayed=replayed, used=used)
    return done(Status.FAILED, "; ".join(cex.failing), cex, replayed, used)


def _counterexample(ob: Obligation, formula: Formula, model: z3.ModelRef) -> tuple[Counterexample | None, Replay]:
    """The counterexample a model of the hypotheses and the negated goal gives, and what the
    reference interpreter made of it; None if the interpreter contradicts it (its hypotheses
    do not hold, or its goal does, on the concrete values)."""
    if model.ctx is not formula.ctx:  # a solver's of a context of its own
        model = model.translate(formula.ctx)
    if formula.completion is not None:
        linking.reinstate(model, formula.completion.linked)
    replayed = replay(ob, formula, model)  # before the counterexample is shown as one
    if replayed.outcome is Outcome.CONTRADICTED:
        return None, replayed
    return explain(ob, formula, model), replayed
