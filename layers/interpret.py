"""A reference interpreter of the typed IR: docs/theory.md §1 executed on concrete values.

It is independent of the Z3 lowering (no Z3 here) and agrees with it exactly
(tests/test_interpret.py checks it against `SymLayer.step`, `equiv_family` and `abstract`):

- a step runs the body on a copy of the state; a failed `check ... else return e` rolls the
  *whole* state back (oracle counters included) and returns `e`, evaluated where the check
  failed; `halt` and a failed `check ... else halt` halt the step, keeping the state as it was
  at that point (the lowering's post-state; a halting step has no result);
- `read o [for P]` returns `ω(o, P, n_o[P])` and advances `n_o[P]` modulo 2^32;
  `bind o = e [for P] [from Q]` advances it the same way. `e` and `P` are evaluated before the
  counter moves, the source `Q` after, as the lowering does. Both go to the step's trace (a
  rolled-back step keeps the reads it made before the check failed);
- ω values are taken as canonical; `Universe.normalise` turns raw bit patterns into them
  the way the lowering normalises oracle outputs.

Oracle counters are the state fields `#o : map[principal] -> bv[32]` (ir.counter_field).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from microverify.dsl import ir
from microverify.dsl.ir import counter_field
from microverify.dsl.types import COUNTER, PRINCIPAL, BVType, MapType, RecordType, Type
from microverify.layers import values
from microverify.layers.values import MapValue, Principal, Record, Scalar, Universe, Value

State = Mapping[str, Value]
OmegaFn = Callable[[str, Principal, int], Value]
Omega = Union[OmegaFn, Mapping[tuple[str, Principal, int], Value]]
COUNTER_MAP = MapType(PRINCIPAL, COUNTER)
COUNTER_LIMIT = 1 << 32


class InterpretError(Exception):
    """An IR node or value the interpreter cannot handle (an internal error)."""


# -- expressions

@dataclass(frozen=True)
class Env:
    universe: Universe
    state: State
    vars: Mapping[str, Value] = field(default_factory=dict)

    def bind(self, extra: Mapping[str, Value]) -> Env:
        return Env(self.universe, self.state, {**self.vars, **extra})


def evaluate(e: ir.Expr, env: Env) -> Value:
    handler = _EVAL.get(type(e))
    if handler is None:
        raise InterpretError(f"cannot evaluate {type(e).__name__} at {e.span}")
    return handler(e, env)


def _scalar(e: ir.Expr, env: Env) -> Scalar:
    v = evaluate(e, env)
    assert isinstance(v, (bool, int, Principal)), f"expected a scalar at {e.span}"
    return v


def _int(e: ir.Expr, env: Env) -> int:
    v = evaluate(e, env)
    assert isinstance(v, int) and not isinstance(v, bool), f"expected a bit-vector at {e.span}"
    return v


def truth(e: ir.Expr, env: Env) -> bool:
    v = evaluate(e, env)
    assert isinstance(v, bool), f"expected a bool at {e.span}"
    return v


def _width(t: Type) -> int:
    assert isinstance(t, BVType), f"{t} is not a bit-vector type"
    return t.width


def _ref(e: ir.Ref, env: Env) -> Value:
    if e.kind == "field":
        return env.state[e.name]
    if e.kind == "config":
        return env.universe.config[e.name]
    return env.vars[e.name]


def _principal(e: ir.PrincipalVal, env: Env) -> Value:
    return Principal(e.principal, None if e.arg is None else values.as_index(evaluate(e.arg, env)))


def _index(e: ir.Index, env: Env) -> Value:
    m = evaluate(e.base, env)
    assert isinstance(m, MapValue)
    return m[_scalar(e.index, env)]


def _field(e: ir.Field, env: Env) -> Value:
    r = evaluate(e.base, env)
    assert isinstance(r, Record)
    return r[e.name]


def _unary(e: ir.Unary, env: Env) -> Value:
    if e.op == "not":
        return not truth(e.operand, env)
    w = _width(e.type)
    x = _int(e.operand, env)
    return -x & values.mask(w) if e.op == "neg" else ~x & values.mask(w)


_ARITH: dict[str, Callable[[int, int, int], int]] = {
    "add": lambda a, b, w: (a + b) & values.mask(w),
    "sub": lambda a, b, w: (a - b) & values.mask(w),
    "mul": lambda a, b, w: (a * b) & values.mask(w),
    "udiv": values.udiv, "urem": values.urem, "sdiv": values.sdiv, "srem": values.srem,
    "band": lambda a, b, w: a & b, "bor": lambda a, b, w: a | b, "bxor": lambda a, b, w: a ^ b,
    "shl": values.shl, "lshr": values.lshr, "ashr": values.ashr,
}
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "ult": lambda a, b: a < b, "ule": lambda a, b: a <= b,
    "ugt": lambda a, b: a > b, "uge": lambda a, b: a >= b,
}
_SIGNED = {"slt": "ult", "sle": "ule", "sgt": "ugt", "sge": "uge"}


def _binary(e: ir.Binary, env: Env) -> Value:
    op = e.op
    if op in ("and", "or", "implies", "iff"):
        return _logic(op, e, env)
    if op in ("eq", "ne"):
        return (evaluate(e.left, env) == evaluate(e.right, env)) == (op == "eq")
    a, b = _int(e.left, env), _int(e.right, env)
    if op == "concat":
        return (a << _width(e.right.type)) | b
    if op in _ARITH:
        return _ARITH[op](a, b, _width(e.type))
    if op in _COMPARE:
        return _COMPARE[op](a, b)
    if op in _SIGNED:
        w = _width(e.left.type)
        return _COMPARE[_SIGNED[op]](values.signed(a, w), values.signed(b, w))
    raise InterpretError(f"unknown operator {op} at {e.span}")


def _logic(op: str, e: ir.Binary, env: Env) -> bool:
    a = truth(e.left, env)
    if op == "and":
        return a and truth(e.right, env)
    if op == "or":
        return a or truth(e.right, env)
    if op == "implies":
        return not a or truth(e.right, env)
    return a == truth(e.right, env)


def _ite(e: ir.Ite, env: Env) -> Value:
    return evaluate(e.then if truth(e.cond, env) else e.other, env)


def _quant(e: ir.Quant, env: Env) -> Value:
    names = [n for n, _ in e.binders]
    points = env.universe.enumerate((t for _, t in e.binders), f"the quantifier at {e.span}")
    holds = (truth(e.body, env.bind(dict(zip(names, p)))) for p in points)
    return all(holds) if e.kind == "forall" else any(holds)


def _resize(e: ir.Resize, env: Env) -> Value:
    x = _int(e.operand, env)
    w, old = _width(e.type), _width(e.operand.type)
    if e.kind == "sext":
        return values.signed(x, old) & values.mask(w)
    return (x >> e.low) & values.mask(w)  # zext keeps the value; trunc, extract keep bits from low up


def _counter(e: ir.Counter, env: Env) -> Value:
    counters = env.state[counter_field(e.oracle)]
    assert isinstance(counters, MapValue)
    return counters[_scalar(e.principal, env)]


_EVAL: dict[type, Callable[[Any, Env], Value]] = {
    ir.Lit: lambda e, env: e.value,
    ir.Ref: _ref,
    ir.EnumVal: lambda e, env: e.index,
    ir.PrincipalVal: _principal,
    ir.Index: _index,
    ir.Field: _field,
    ir.Unary: _unary,
    ir.Binary: _binary,
    ir.Ite: _ite,
    ir.Quant: _quant,
    ir.Resize: _resize,
    ir.Counter: _counter,
}


# -- statements

@dataclass(frozen=True)
class OracleEvent:
    """A `read` (value = what ω gave) or a `bind` (value = the bound value, with its source)
    of `oracle` for `principal` at counter `index`."""

    kind: str  # read | bind
    oracle: str
    principal: Principal
    index: int
    value: Value
    source: Principal | None = None


@dataclass(frozen=True)
class StepResult:
    post: State
    result: Value | None  # None: no result type, or the step halted
    halted: bool
    failed: bool  # a `check ... else return` failed: post is the pre-state
    trace: tuple[OracleEvent, ...]


@dataclass(frozen=True)
class _Exit:
    kind: str  # return | fail | halt
    value: Value | None = None


def _omega_fn(omega: Omega) -> OmegaFn:
    if callable(omega):
        return omega
    table = omega

    def lookup(oracle: str, principal: Principal, index: int) -> Value:
        try:
            return table[(oracle, principal, index)]
        except KeyError:
            raise InterpretError(f"ω has no value for {oracle}({principal}, #{index})") from None
    return lookup


class _Run:
    """One execution of an operation body; `state` is updated as statements run."""

    def __init__(self, universe: Universe, pre: State, args: Mapping[str, Value],
                 dom: Principal, omega: OmegaFn) -> None:
        self.universe = universe
        self.state: dict[str, Value] = dict(pre)
        self.vars: dict[str, Value] = dict(args)
        self.dom = dom
        self.omega = omega
        self.trace: list[OracleEvent] = []

    def env(self) -> Env:
        return Env(self.universe, self.state, self.vars)

    def block(self, stmts: tuple[ir.Stmt, ...]) -> _Exit | None:
        for s in stmts:
            out = self.stmt(s)
            if out is not None:
                return out
        return None

    def stmt(self, s: ir.Stmt) -> _Exit | None:
        if isinstance(s, ir.Let):
            self.vars[s.name] = self.rhs(s.value)
        elif isinstance(s, ir.Assign):
            self.assign(s)
        elif isinstance(s, ir.Check):
            return self.check(s)
        elif isinstance(s, ir.If):
            return self.block(s.then if truth(s.cond, self.env()) else s.other)
        elif isinstance(s, ir.Return):
            return _Exit("return", evaluate(s.value, self.env()))
        elif isinstance(s, ir.Halt):
            return _Exit("halt")
        elif isinstance(s, ir.Bind):
            self.bind(s)
        else:
            raise InterpretError(f"cannot execute {type(s).__name__} at {s.span}")
        return None

    def check(self, s: ir.Check) -> _Exit | None:
        if truth(s.cond, self.env()):
            return None
        if s.on_fail is None:
            return _Exit("halt")
        return _Exit("fail", evaluate(s.on_fail, self.env()))

    def assign(self, s: ir.Assign) -> None:
        path = [p if isinstance(p, str) else _scalar(p, self.env()) for p in s.path]  # before the rhs
        value = self.rhs(s.value)
        self.state[s.field] = _update(self.state[s.field], path, value)

    def rhs(self, e: ir.Expr) -> Value:
        if not isinstance(e, ir.ReadOracle):
            return evaluate(e, self.env())
        who = self.principal(e.principal)
        index = self.advance(e.oracle, who)
        value = self.omega(e.oracle, who, index)
        self.trace.append(OracleEvent("read", e.oracle, who, index, value))
        return value

    def bind(self, s: ir.Bind) -> None:
        value = evaluate(s.value, self.env())
        who = self.principal(s.principal)
        index = self.advance(s.oracle, who)
        source = _scalar(s.source, self.env())  # after the advance, as the lowering does
        assert isinstance(source, Principal)
        self.trace.append(OracleEvent("bind", s.oracle, who, index, value, source))

    def principal(self, e: ir.Expr | None) -> Principal:
        who = self.dom if e is None else _scalar(e, self.env())
        assert isinstance(who, Principal)
        return who

    def advance(self, oracle: str, who: Principal) -> int:
        name = counter_field(oracle)
        counters = self.state[name]
        assert isinstance(counters, MapValue)
        index = counters[who]
        assert isinstance(index, int)
        self.state[name] = counters.set(who, (index + 1) % COUNTER_LIMIT)
        return index


def _update(old: Value, path: list[Scalar | str], value: Value) -> Value:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, str):
        assert isinstance(old, Record)
        return old.replace(head, _update(old[head], rest, value))
    assert isinstance(old, MapValue)
    return old.set(head, _update(old[head], rest, value))


# -- layers

Observed = tuple[tuple[tuple[Scalar, ...], Value], ...]  # the points where a component is defined


@dataclass(frozen=True)
class View:
    """What `principal` observes of a state: per component `e for x̄ where c`, the partial
    function x̄ ↦ (c ? e : ⊥) as its defined points in a fixed order; then its own counters."""

    principal: Principal
    components: tuple[tuple[str, Observed], ...]


class Interpreter:
    """The layers of one module as concrete state machines."""

    def __init__(self, module: ir.Module, budget: int | None = None) -> None:
        """`budget`: the most values its quantifiers, views and abstractions may enumerate in all
        (Universe.enumerate); unbounded if None."""
        self.module = module
        self.universe = Universe(module.principals, budget)
        # a configuration constant is any value, the same in both runs: 0 until a replay sets it
        self.universe.config = {c.name: self.universe.zero(c.type) for c in module.configs}

    def _layer(self, layer: ir.Layer | str) -> ir.Layer:
        return self.module.layer(layer) if isinstance(layer, str) else layer

    def _op(self, layer: ir.Layer, op: ir.Op | str) -> ir.Op:
        found = layer.op(op) if isinstance(op, str) else op
        if found is None:
            raise KeyError(f"{layer.name} has no operation {op}")
        return found

    def env(self, state: State, vars: Mapping[str, Value] | None = None) -> Env:
        return Env(self.universe, state, dict(vars or {}))

    # -- states
    def fields(self, layer: ir.Layer | str) -> tuple[tuple[str, Type], ...]:
        """The state fields of a layer, oracle counters included (as in SymLayer.fields)."""
        counters = tuple((counter_field(o.name), COUNTER_MAP) for o in self.module.oracles)
        return tuple((f.name, f.type) for f in self._layer(layer).fields) + counters

    def zero_state(self, layer: ir.Layer | str) -> dict[str, Value]:
        return {name: self.universe.zero(t) for name, t in self.fields(layer)}

    def init(self, layer: ir.Layer | str, s: State) -> bool:
        return all(truth(e, self.env(s)) for e in self._layer(layer).init)

    def invariants(self, layer: ir.Layer | str, s: State) -> dict[str, bool]:
        return {inv.name: truth(inv.pred, self.env(s)) for inv in self._layer(layer).invariants}

    def invariant(self, layer: ir.Layer | str, s: State) -> bool:
        return all(self.invariants(layer, s).values())

    # -- operations
    def dom(self, layer: ir.Layer | str, op: ir.Op | str, s: State, args: Mapping[str, Value]) -> Principal:
        who = evaluate(self._op(self._layer(layer), op).dom, self.env(s, args))
        assert isinstance(who, Principal)
        return who

    def step(self, layer: ir.Layer | str, op: ir.Op | str, s: State, args: Mapping[str, Value],
             omega: Omega) -> StepResult:
        lay = self._layer(layer)
        o = self._op(lay, op)
        run = _Run(self.universe, s, args, self.dom(lay, o, s, args), _omega_fn(omega))
        out = run.block(o.body)
        trace = tuple(run.trace)
        if out is not None and out.kind == "fail":
            return StepResult(dict(s), out.value, False, True, trace)
        if out is not None and out.kind == "halt":
            return StepResult(run.state, None, True, False, trace)
        return StepResult(run.state, out.value if out is not None else None, False, False, trace)

    # -- principals, policy, observation
    def principals(self) -> list[Principal]:
        return [p for p in self.universe.members(PRINCIPAL) if isinstance(p, Principal)]

    def flows(self, source: Principal, target: Principal) -> bool:
        """source ~> target: reflexive, plus the policy's flows, each for the members its
        condition admits (not transitive)."""
        if source == target:
            return True
        for f in self.module.flows:
            if (f.source, f.target) != (source.name, target.name):
                continue
            bound = {var: p.index for var, p in ((f.source_var, source), (f.target_var, target))
                     if var is not None and p.index is not None}
            if f.cond is None or truth(f.cond, Env(self.universe, {}, bound)):
                return True
        return False

    def view(self, layer: ir.Layer | str, u: Principal, s: State) -> View:
        obs = self._layer(layer).observation(u.name)
        params: dict[str, Value] = {}
        if obs is not None and obs.param is not None and u.index is not None:
            params[obs.param] = u.index  # the observation's own name for the index
        comps = [(c.text, self._observe(c, self.env(s, params))) for c in (obs.components if obs else ())]
        declared = self.module.principal(u.name)
        param = obs.param if obs is not None and obs.param is not None else declared.param
        who = u.name + (f"({param})" if declared.param_type is not None else "")  # as the view's text names it
        for o in self.module.oracles:
            counters = s[counter_field(o.name)]
            assert isinstance(counters, MapValue)
            comps.append((f"counter({o.name}, {who})", (((), counters[u]),)))
        return View(u, tuple(comps))

    def _observe(self, c: ir.ObsComponent, env: Env) -> Observed:
        names = [n for n, _ in c.binders]
        points = self.universe.enumerate((t for _, t in c.binders), f"the observation `{c.text}`")
        seen = []
        for p in points:
            at = env.bind(dict(zip(names, p)))
            if c.where is None or truth(c.where, at):
                seen.append((p, evaluate(c.expr, at)))
        return tuple(seen)

    def equiv(self, layer: ir.Layer | str, u: Principal, s: State, t: State) -> bool:
        return self.view(layer, u, s) == self.view(layer, u, t)

    # -- refinement
    def _upper(self, layer: ir.Layer) -> ir.Layer:
        if layer.refines is None:
            raise ValueError(f"layer {layer.name} refines no layer")
        return self.module.layer(layer.refines)

    def implements(self, layer: ir.Layer | str, op: ir.Op | str, s: State,
                   args: Mapping[str, Value]) -> tuple[str, dict[str, Value]] | None:
        """The upper operation and its arguments a lower step performs; None for a stutter."""
        lay = self._layer(layer)
        upper, o = self._upper(lay), self._op(lay, op)
        if o.implements is None:
            return None
        target = self._op(upper, o.implements.op)
        env = self.env(s, args)
        return target.name, {n: evaluate(e, env) for (n, _), e in zip(target.params, o.implements.args)}

    def alpha(self, layer: ir.Layer | str, s: State) -> dict[str, Value]:
        """The abstraction function: the upper state of a lower state (counters identically)."""
        lay = self._layer(layer)
        out: dict[str, Value] = {}
        for f in self._upper(lay).fields:
            out[f.name] = self._build(f.type, [(d.path, d, {}) for d in lay.abstraction if d.field == f.name], s)
        for o in self.module.oracles:
            out[counter_field(o.name)] = s[counter_field(o.name)]
        return out

    def _build(self, t: Type, defs: list[_Def], s: State) -> Value:
        """The value of type t that the definitions (each with the path still to walk and the
        binders met so far) give."""
        for path, d, bound in defs:
            if not path:
                return evaluate(d.value, self.env(s, bound))
        if isinstance(t, RecordType):
            return Record.of({n: self._build(ft, [(p[1:], d, b) for p, d, b in defs if p[0] == n], s)
                              for n, ft in t.fields})
        if isinstance(t, MapType):
            keys = self.universe.enumerate([t.key], f"the abstraction of a map over {t.key}")
            return self.universe.tabulate(t, ((k, self._build(t.value, list(_at(defs, k)), s)) for (k,) in keys))
        raise InterpretError(f"the abstraction does not define a value of type {t}")


_Def = tuple[tuple[Union[tuple[str, Type], str], ...], ir.AbsDef, dict[str, Value]]


def _at(defs: list[_Def], key: Scalar) -> Iterator[_Def]:
    """The definitions one map level down, each binding its own name for the key."""
    for path, d, bound in defs:
        binder = path[0]
        assert not isinstance(binder, str)
        yield path[1:], d, {**bound, binder[0]: key}
