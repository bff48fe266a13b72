"""Every counterexample replayed by the reference interpreter before it is reported.

The model of a FAILED obligation gives concrete pre-states, arguments, an observer and ω
(prover/concrete.py). The replay runs them through layers/interpret.py, which shares no code
with the lowering, and checks the obligation's statement on them (docs/theory.md §2, §7): every
hypothesis holds and the goal fails. What that shows (the invariant that breaks, the views,
results or arguments that differ) is reported with the counterexample.

A replay that contradicts the model (a hypothesis false, or the goal true) means the lowering,
the encoding or the solver is wrong: an internal error, never shown as a leak. A replay that
cannot be done (a quantifier or an observation over a sort too large to enumerate) says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import z3

from microverify.dsl import ir
from microverify.dsl.ir import counter_field
from microverify.dsl.types import PRINCIPAL, Type
from microverify.layers.interpret import Interpreter, InterpretError, State, StepResult
from microverify.layers.values import EnumerationError, Principal, Value
from microverify.oracles.oracles import COUNTER_TYPE, field_label
from microverify.prover.concrete import Concretizer, ModelError, TooLarge
from microverify.prover.formula import Formula
from microverify.prover.obligations import Kind, Obligation


# The most values a replay's quantifiers, views and abstractions may enumerate inside others, in
# all (each is within values.ENUMERATION_LIMIT, but nested ones multiply): about 3 s of Python. A
# replay that would go past it is not done, and says so.
REPLAY_BUDGET = 1 << 20


class Outcome(Enum):
    CONFIRMED = "confirmed"
    NOT_REPLAYED = "not replayed"
    CONTRADICTED = "contradicted"


@dataclass(frozen=True)
class Replay:
    outcome: Outcome
    findings: tuple[str, ...]  # what the replay showed; or why it was not done, or what contradicts
    states: tuple[dict[str, object], ...] = ()  # {"label", "layer", "state": {field: {"type", "value"}}}
    arguments: dict[str, object] = field(default_factory=dict)  # name -> {"type", "value"}
    observer: str | None = None

    def line(self) -> str:
        """One line for a report: the outcome and its findings."""
        if self.outcome is Outcome.CONFIRMED:
            return "confirmed by the reference interpreter: " + "; ".join(self.findings)
        return f"{self.outcome.value}: " + "; ".join(self.findings)


class _Contradiction(Exception):
    pass


def replay(ob: Obligation, formula: Formula, model: z3.ModelRef) -> Replay:
    r = _Replayer(formula, model)
    try:
        r.start()
        _KINDS[ob.kind](r)
    except (EnumerationError, TooLarge) as exc:
        return r.result(Outcome.NOT_REPLAYED, [str(exc)])
    except ModelError as exc:
        return r.result(Outcome.CONTRADICTED, [f"the model cannot be read: {exc}"])
    except (InterpretError, AssertionError, KeyError) as exc:
        return r.result(Outcome.CONTRADICTED, [f"the interpreter cannot run the counterexample: {exc!r}"])
    except _Contradiction as exc:
        return r.result(Outcome.CONTRADICTED, [str(exc)])
    if r.wrong:
        return r.result(Outcome.CONTRADICTED, [f"{h} does not hold in the replay" for h in r.wrong])
    if not r.found:
        return r.result(Outcome.CONTRADICTED, ["the goal holds in the replay"])
    return r.result(Outcome.CONFIRMED, r.found)


class _Replayer:
    def __init__(self, formula: Formula, model: z3.ModelRef) -> None:
        self.formula = formula
        self.module = formula.layer.module
        self.layer = formula.layer.layer
        self.op = formula.op
        self.interp = Interpreter(self.module, REPLAY_BUDGET)
        self.universe = self.interp.universe
        self.c = Concretizer(formula, model, self.universe)
        self.omega = self.c.omega(formula.layer.oracles)
        self.wrong: list[str] = []  # hypotheses that do not hold
        self.found: list[str] = []  # how the goal fails
        self.shown: list[tuple[str, ir.Layer, State]] = []
        self.pre: dict[str, State] = {}
        self.args: dict[str, Value] = {}
        self.observer: Principal | None = None

    def start(self) -> None:
        f = self.formula
        for c in self.module.configs:  # the model's configuration, where the formula reads one
            if c.name in f.layer.enc.configs:
                self.universe.config[c.name] = self.c.value(c.type, f.layer.enc.configs[c.name])
        for r in f.runs:
            if not r.upper:
                self.pre[r.name] = self.c.state(f.layer.fields, r.pre)
                self.shown.append((r.name, self.layer, self.pre[r.name]))
        if self.op is not None:
            self.args = {n: self.c.value(t, f.args[n]) for n, t in self.op.params}
        if f.observer is not None:
            decl, param = f.observer
            index = None if param is None or decl.param_type is None else self.c.scalar(decl.param_type, param)
            assert not isinstance(index, Principal)
            self.observer = Principal(decl.name, index)  # type: ignore[arg-type]

    # -- helpers
    @property
    def upper(self) -> ir.Layer:
        assert self.layer.refines is not None
        return self.module.layer(self.layer.refines)

    @property
    def u(self) -> Principal:
        assert self.observer is not None
        return self.observer

    def need(self, holds: bool, hypothesis: str) -> None:
        if not holds:
            self.wrong.append(hypothesis)

    def show(self, t: Type, v: Value | None) -> str:
        return "none" if v is None else self.universe.show(t, v)

    def who(self, p: Principal) -> str:
        return self.universe.show(PRINCIPAL, p)

    def step(self, layer: ir.Layer, op: ir.Op, s: State, args: dict[str, Value], label: str) -> StepResult:
        r = self.interp.step(layer, op, s, args, self.omega)
        self.shown.append((label, layer, r.post))
        return r

    def alpha(self, s: State, label: str) -> State:
        a = self.interp.alpha(self.layer, s)
        self.shown.append((label, self.upper, a))
        return a

    def run(self, name: str) -> tuple[State, StepResult]:
        """Run `name` of the operation, from a state satisfying the invariant, not halting."""
        assert self.op is not None
        s = self.pre[name]
        self.need(self.interp.invariant(self.layer, s), f"I({name})")
        r = self.step(self.layer, self.op, s, self.args, f"step({name})")
        self.need(not r.halted, f"{name} does not halt")
        return s, r

    def differ(self, layer: ir.Layer, u: Principal, s: State, t: State) -> list[str]:
        """The components of u's view that differ between s and t."""
        a, b = self.interp.view(layer, u, s), self.interp.view(layer, u, t)
        return [f"`{text}`" for (text, x), (_, y) in zip(a.components, b.components) if x != y]

    def implemented(self, s: State) -> tuple[ir.Op, dict[str, Value]]:
        """The upper operation the lower step from s performs, and its arguments."""
        assert self.op is not None
        found = self.interp.implements(self.layer, self.op, s, self.args)
        assert found is not None, "a refinement step of an operation that implements none"
        upper_op = self.upper.op(found[0])
        assert upper_op is not None
        return upper_op, found[1]

    def dom(self, layer: ir.Layer, op: ir.Op, s: State, args: dict[str, Value]) -> Principal:
        return self.interp.dom(layer, op, s, args)

    def result(self, outcome: Outcome, findings: list[str]) -> Replay:
        states: tuple[dict[str, object], ...] = tuple(
            {"label": label, "layer": layer.name, "state": self._typed(layer, s)} for label, layer, s in self.shown)
        arguments: dict[str, object] = {}
        if self.op is not None:
            arguments = {n: {"type": str(t), "value": self.universe.to_json(t, self.args[n])}
                         for n, t in self.op.params if n in self.args}
        observer = None if self.observer is None else self.who(self.observer)
        return Replay(outcome, tuple(findings), states, arguments, observer)

    def _typed(self, layer: ir.Layer, s: State) -> dict[str, object]:
        fields: list[tuple[str, Type]] = [(f.name, f.type) for f in layer.fields]
        fields += [(counter_field(o.name), COUNTER_TYPE) for o in self.module.oracles]
        return {name: {"type": str(t), "value": self.universe.to_json(t, s[name])} for name, t in fields if name in s}


# -- one function per kind: the hypotheses (need) and how the goal fails (found)

def _init(r: _Replayer) -> None:
    s = r.pre["s"]
    r.need(r.interp.init(r.layer, s), "init(s)")
    r.found += [f"invariant `{n}` does not hold in s" for n, ok in r.interp.invariants(r.layer, s).items() if not ok]


def _inductive(r: _Replayer) -> None:
    _, step = r.run("s")
    r.found += [f"invariant `{n}` does not hold after the step"
                for n, ok in r.interp.invariants(r.layer, step.post).items() if not ok]


def _same_dom_view(r: _Replayer, s: State, t: State) -> Principal:
    """s ~dom t, and for a stutter operation α(s) ~dom α(t) too (refinement.stutter_consistency)."""
    assert r.op is not None
    d = r.dom(r.layer, r.op, s, r.args)
    r.need(r.interp.equiv(r.layer, d, s, t), "s ~dom t")
    if r.layer.refines is not None:
        r.need(r.interp.equiv(r.upper, d, r.alpha(s, "α(s)"), r.alpha(t, "α(t)")), "α(s) ~dom α(t)")
    return d


def _output(r: _Replayer) -> None:
    assert r.op is not None and r.op.result is not None
    (s, rs), (t, rt) = r.run("s"), r.run("t")
    _same_dom_view(r, s, t)
    if rs.result != rt.result:
        r.found.append(f"`{r.op.name}` returns {r.show(r.op.result, rs.result)} in run s and "
                       f"{r.show(r.op.result, rt.result)} in run t")


def _weak_step(r: _Replayer) -> None:
    (s, rs), (t, rt) = r.run("s"), r.run("t")
    r.need(r.interp.equiv(r.layer, r.u, s, t), "s ~u t")
    _same_dom_view(r, s, t)
    diff = r.differ(r.layer, r.u, rs.post, rt.post)
    if diff:
        r.found.append(f"{r.who(r.u)}'s view differs after the step: {', '.join(diff)}")


def _local_respect(r: _Replayer) -> None:
    assert r.op is not None
    s, rs = r.run("s")
    d = r.dom(r.layer, r.op, s, r.args)
    if r.interp.flows(d, r.u):
        return  # the goal asks nothing of a step whose principal may flow to the observer
    diff = r.differ(r.layer, r.u, s, rs.post)
    if diff:
        r.found.append(f"a step by {r.who(d)}, which may not flow to {r.who(r.u)}, changes "
                       f"{r.who(r.u)}'s view: {', '.join(diff)}")


def _domain(r: _Replayer) -> None:
    assert r.op is not None
    (s, _), (t, _) = r.run("s"), r.run("t")
    ds = _same_dom_view(r, s, t)
    dt = r.dom(r.layer, r.op, t, r.args)
    if ds != dt:
        r.found.append(f"`{r.op.name}` runs for {r.who(ds)} in run s and {r.who(dt)} in run t")


def _domain_respect(r: _Replayer) -> None:
    assert r.op is not None
    (s, _), (t, _) = r.run("s"), r.run("t")
    r.need(r.interp.equiv(r.layer, r.u, s, t), "s ~u t")
    ds, dt = r.dom(r.layer, r.op, s, r.args), r.dom(r.layer, r.op, t, r.args)
    if r.interp.flows(ds, r.u) != r.interp.flows(dt, r.u):
        r.found.append(f"`{r.op.name}` runs for {r.who(ds)} in run s and {r.who(dt)} in run t, and only one "
                       f"of them may flow to {r.who(r.u)}")


def _refined_init(r: _Replayer) -> None:
    s = r.pre["s"]
    r.need(r.interp.init(r.layer, s), "init_L(s)")
    if not r.interp.init(r.upper, r.alpha(s, "α(s)")):
        r.found.append(f"the init of {r.upper.name} does not hold at α(s)")


def _refined_invariant(r: _Replayer) -> None:
    s = r.pre["s"]
    r.need(r.interp.invariant(r.layer, s), "I_L(s)")
    r.found += [f"invariant `{n}` of {r.upper.name} does not hold at α(s)"
                for n, ok in r.interp.invariants(r.upper, r.alpha(s, "α(s)")).items() if not ok]


@dataclass
class _Steps:
    """A lower step and the upper step it implements, from α of the same state."""

    low: StepResult
    up: StepResult
    upper_op: ir.Op
    after: State  # α(step_L(s))


def _steps(r: _Replayer) -> _Steps:
    assert r.op is not None
    s, low = r.run("s")
    upper_op, upper_args = r.implemented(s)
    up = r.step(r.upper, upper_op, r.alpha(s, "α(s)"), upper_args, "step_U(α(s))")
    for e in low.trace:  # B: every lower bind fixes ω where it binds
        if e.kind == "bind":
            r.need(r.omega(e.oracle, e.principal, e.index) == e.value,
                   f"the binding of `{e.oracle}` at ({r.who(e.principal)}, #{e.index})")
    return _Steps(low, up, upper_op, r.alpha(low.post, "α(step_L(s))"))


def _refined_step(r: _Replayer) -> None:
    assert r.op is not None
    st = _steps(r)
    if st.up.halted:
        r.found.append(f"the upper `{st.upper_op.name}` halts where the lower `{r.op.name}` does not")
        return
    r.found += [f"α(step_L(s)) and step_U(α(s)) differ in `{f.name}`" for f in r.upper.fields
                if st.after[f.name] != st.up.post[f.name]]
    if r.op.result is not None and st.low.result != st.up.result:
        r.found.append(f"the lower step returns {r.show(r.op.result, st.low.result)} and the upper "
                       f"{r.show(r.op.result, st.up.result)}")


def _refined_oracles(r: _Replayer) -> None:
    st = _steps(r)
    r.found += [f"the counters of `{o.name}` advance differently" for o in r.module.oracles
                if st.after[counter_field(o.name)] != st.up.post[counter_field(o.name)]]
    t = {o.name: o.type for o in r.module.oracles}
    r.found += [f"the upper layer binds `{e.oracle}` at ({r.who(e.principal)}, #{e.index}) to "
                f"{r.show(t[e.oracle], e.value)}, the lower step to {r.show(t[e.oracle], r.omega(e.oracle, e.principal, e.index))}"
                for e in st.up.trace if e.kind == "bind" and r.omega(e.oracle, e.principal, e.index) != e.value]


def _refined_dom(r: _Replayer) -> None:
    assert r.op is not None
    s = r.pre["s"]
    r.need(r.interp.invariant(r.layer, s), "I_L(s)")
    upper_op, upper_args = r.implemented(s)
    low, up = r.dom(r.layer, r.op, s, r.args), r.dom(r.upper, upper_op, r.alpha(s, "α(s)"), upper_args)
    if low != up:
        r.found.append(f"`{r.op.name}` runs for {r.who(low)} and `{upper_op.name}` for {r.who(up)}")


def _refined_args(r: _Replayer) -> None:
    assert r.op is not None
    (s, _), (t, _) = r.run("s"), r.run("t")
    d = r.dom(r.layer, r.op, s, r.args)
    r.need(r.interp.equiv(r.layer, d, s, t) and r.interp.equiv(r.upper, d, r.alpha(s, "α(s)"), r.alpha(t, "α(t)")),
           "s ~dom t and α(s) ~dom α(t)")
    (upper_op, xs), (_, xt) = r.implemented(s), r.implemented(t)
    r.found += [f"the argument `{n}` of `{upper_op.name}` is {r.show(pt, xs[n])} in run s and {r.show(pt, xt[n])} "
                f"in run t" for n, pt in upper_op.params if xs[n] != xt[n]]


def _refined_binds(r: _Replayer) -> None:
    (s, rs), (t, rt) = r.run("s"), r.run("t")
    abstract = (r.interp.alpha(r.layer, s), r.interp.alpha(r.layer, t))
    for b in (e for e in rs.trace if e.kind == "bind"):
        oracle = r.module.oracle(b.oracle)
        assert b.source is not None
        if b.source.name != oracle.source:
            r.found.append(f"`bind {b.oracle}` names {r.who(b.source)}, not a {oracle.source}")
            continue
        sees_same = r.interp.equiv(r.layer, b.source, s, t) and r.interp.equiv(r.upper, b.source, *abstract)
        for b2 in (e for e in rt.trace if e.kind == "bind"):
            if (b2.oracle, b2.principal, b2.index) == (b.oracle, b.principal, b.index) and sees_same \
                    and b2.value != b.value:
                r.found.append(f"`bind {b.oracle}` at ({r.who(b.principal)}, #{b.index}) binds "
                               f"{r.show(oracle.type, b.value)} in run s and {r.show(oracle.type, b2.value)} in "
                               f"run t, which {r.who(b.source)} cannot tell apart")


def _refined_observation(r: _Replayer) -> None:
    s, t = r.pre["s"], r.pre["t"]
    r.need(r.interp.invariant(r.layer, s), "I_L(s)")
    r.need(r.interp.invariant(r.layer, t), "I_L(t)")
    r.need(r.interp.equiv(r.upper, r.u, r.alpha(s, "α(s)"), r.alpha(t, "α(t)")), "α(s) ~u α(t)")
    diff = r.differ(r.layer, r.u, s, t)
    if diff:
        r.found.append(f"{r.who(r.u)} tells s and t apart at {r.layer.name} ({', '.join(diff)}) but not "
                       f"α(s) and α(t) at {r.upper.name}")


def _stutter(r: _Replayer) -> None:
    s, step = r.run("s")
    a, after = r.alpha(s, "α(s)"), r.alpha(step.post, "α(step(s))")
    names = [f.name for f in r.upper.fields] + [counter_field(o.name) for o in r.module.oracles]
    r.found += [f"the lower-only step changes `{field_label(n)}` of {r.upper.name}" for n in names if a[n] != after[n]]


def _unreplayable(r: _Replayer) -> None:
    raise _Contradiction("a non-vacuity obligation has no counterexample to replay")


_KINDS: dict[Kind, Callable[[_Replayer], None]] = {
    Kind.INIT: _init, Kind.INV: _inductive, Kind.VAC: _unreplayable, Kind.VIEW: _unreplayable,
    Kind.OC: _output, Kind.WSC: _weak_step, Kind.LR: _local_respect, Kind.DC: _domain, Kind.DR: _domain_respect,
    Kind.R_INIT: _refined_init, Kind.R_INV: _refined_invariant, Kind.R_STEP: _refined_step,
    Kind.R_ORACLE: _refined_oracles, Kind.R_DOM: _refined_dom, Kind.R_ARGS: _refined_args,
    Kind.R_BIND: _refined_binds, Kind.R_OBS: _refined_observation, Kind.R_STUTTER: _stutter,
}
