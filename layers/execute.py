"""Symbolic execution of one operation body: (state, args, oracles) -> (state', result) or halt.

Paths are merged eagerly: every assignment is guarded by the path condition under which it
runs, so the post-state is one term per field. A failed `check ... else return` rolls the
whole state back (oracle counters included) and yields its result; a failed
`check ... else halt` or a `halt` makes the step halt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import z3

from microverify.dsl import ir
from microverify.dsl.spans import Span
from microverify.dsl.types import BoolType, BVType, EnumType, PrincipalType, RecordType, Type
from microverify.layers import terms
from microverify.layers.encoding import Encoder, MapVal, RecordVal, Value
from microverify.layers.lower import Env, LoweringError, lower, pred, scalar
from microverify.oracles.oracles import Oracles, counter_field


@dataclass(frozen=True)
class Write:
    """An assignment, with the path condition under which it runs."""

    field: str
    path: tuple[str | tuple[Type, z3.ExprRef], ...]  # the record fields and map keys (with their types) written
    guard: z3.BoolRef
    span: Span


@dataclass(frozen=True)
class OracleUse:
    """A `read` of `oracle` for `principal` at `index` (yielding `value`), or a `bind`: the
    refined layer's read at (principal, index) stands for `value`."""

    oracle: str
    principal: z3.ExprRef
    index: z3.ExprRef
    value: Value
    guard: z3.BoolRef
    span: Span
    source: z3.ExprRef | None = None  # a bind's source principal (whose view determines value)
    bind: ir.Bind | None = None


@dataclass(frozen=True)
class Exit:
    """A `return` (or a failed check's return) with its path condition."""

    guard: z3.BoolRef
    span: Span


@dataclass
class Step:
    post: dict[str, Value]
    result: Value | None
    halted: z3.BoolRef
    failed: z3.BoolRef  # some check with `else return` failed; the state is unchanged
    writes: list[Write] = field(default_factory=list)
    reads: list[OracleUse] = field(default_factory=list)
    bindings: list[OracleUse] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    locals: dict[str, tuple[Type, Value]] = field(default_factory=dict)
    # what each statement evaluates, in the state and scope it runs in, under its path condition:
    # a counterexample shows the entries the executed path read (prover/counterexample.py)
    trace: list[tuple[tuple[ir.Expr, ...], Env, z3.BoolRef]] = field(default_factory=list)


def default_value(enc: Encoder, t: Type) -> Value:
    """A fixed value of type t, the result of a path that halts (never observed)."""
    ctx = enc.ctx
    if isinstance(t, BoolType):
        return z3.BoolVal(False, ctx)
    if isinstance(t, (BVType, EnumType)):
        return z3.BitVecVal(0, enc.sort(t).size(), ctx)  # type: ignore[attr-defined]
    if isinstance(t, PrincipalType):
        first = enc.module.principals[0]
        arg = default_value(enc, first.param_type) if first.param_type is not None else None
        return enc.principals.make(first.name, arg, ctx)  # type: ignore[arg-type]
    if isinstance(t, RecordType):
        return RecordVal({f: default_value(enc, ft) for f, ft in t.fields})
    raise LoweringError(f"no default value for {t}")


class Executor:
    def __init__(self, enc: Encoder, oracles: Oracles, op: ir.Op, pre: dict[str, Value],
                 args: dict[str, Value], dom: z3.ExprRef) -> None:
        self.enc = enc
        self.oracles = oracles
        self.op = op
        self.pre = pre
        self.state = dict(pre)
        self.vars: dict[str, Value] = dict(args)
        self.dom = dom
        ctx = enc.ctx
        false = z3.BoolVal(False, ctx)
        self.result = default_value(enc, op.result) if op.result is not None else None
        self.step = Step(post={}, result=None, halted=false, failed=false)

    def env(self) -> Env:
        return Env(self.enc, self.state, self.vars)

    def scope(self, evaluated: tuple[ir.Expr, ...]) -> Env:
        """The state fields and names these expressions read, as they are now: a copy of the
        whole state and scope at every statement made memory quadratic in an operation's length
        (6000 `let`s took 2 GB)."""
        fields: set[str] = set()
        names: set[str] = set()
        for e in evaluated:
            ir.collect_fields(e, fields, counter_field)
            names.update(n.name for n in ir.nodes(e) if isinstance(n, ir.Ref) and n.kind != "field")
        return Env(self.enc, {f: self.state[f] for f in fields if f in self.state},
                   {n: self.vars[n] for n in names if n in self.vars})

    def run(self) -> Step:
        self.block(self.op.body, z3.BoolVal(True, self.enc.ctx))
        step = self.step
        step.post = {f: self.enc.ite(step.failed, self.pre[f], v) for f, v in self.state.items()}
        step.result = self.result
        return step

    def block(self, stmts: tuple[ir.Stmt, ...], guard: z3.BoolRef) -> z3.BoolRef:
        for s in stmts:
            if z3.is_false(guard):
                break
            guard = self.stmt(s, guard)
        return guard

    def rhs(self, e: ir.Expr, guard: z3.BoolRef) -> Value:
        if isinstance(e, ir.ReadOracle):
            principal = scalar(e.principal, self.env()) if e.principal is not None else self.dom
            value, index, self.state = self.oracles.read(self.state, e.oracle, principal, guard)
            self.step.reads.append(OracleUse(e.oracle, principal, index, value, guard, e.span))
            return value
        return lower(e, self.env())

    def stmt(self, s: ir.Stmt, guard: z3.BoolRef) -> z3.BoolRef:
        enc, step = self.enc, self.step
        evaluated = ir.evaluated(s)
        if evaluated:
            step.trace.append((evaluated, self.scope(evaluated), guard))
        if isinstance(s, ir.Let):
            value = self.rhs(s.value, guard)
            self.vars[s.name] = value
            step.locals[s.name] = (s.value.type, value)
            return guard
        if isinstance(s, ir.Assign):
            steps = tuple(p if isinstance(p, str) else (p.type, scalar(p, self.env())) for p in s.path)
            path = [p if isinstance(p, str) else p[1] for p in steps]
            value = self.rhs(s.value, guard)
            old = self.state[s.field]
            self.state[s.field] = enc.ite(guard, self.update(old, path, value), old)
            step.writes.append(Write(s.field, steps, guard, s.span))
            return guard
        if isinstance(s, ir.Check):
            cond = pred(s.cond, self.env())
            fail = terms.and_((guard, terms.not_(cond)))
            if s.on_fail is not None:
                self.result = enc.ite(fail, lower(s.on_fail, self.env()), self.result)  # type: ignore[arg-type]
                step.failed = terms.or_((step.failed, fail))
                step.exits.append(Exit(fail, s.span))
            else:
                step.halted = terms.or_((step.halted, fail))
            return terms.and_((guard, cond))
        if isinstance(s, ir.If):
            cond = pred(s.cond, self.env())
            then_out = self.block(s.then, terms.and_((guard, cond)))
            other_out = self.block(s.other, terms.and_((guard, terms.not_(cond))))
            return terms.or_((then_out, other_out))
        if isinstance(s, ir.Return):
            self.result = enc.ite(guard, lower(s.value, self.env()), self.result)  # type: ignore[arg-type]
            step.exits.append(Exit(guard, s.span))
            return z3.BoolVal(False, enc.ctx)
        if isinstance(s, ir.Halt):
            step.halted = terms.or_((step.halted, guard))
            return z3.BoolVal(False, enc.ctx)
        if isinstance(s, ir.Bind):
            value = lower(s.value, self.env())
            principal = scalar(s.principal, self.env()) if s.principal is not None else self.dom
            index, self.state = self.oracles.advance(self.state, s.oracle, principal, guard)
            source = scalar(s.source, self.env())
            step.bindings.append(OracleUse(s.oracle, principal, index, value, guard, s.span, source, s))
            return guard
        raise LoweringError(f"cannot execute {type(s).__name__} at {s.span}")

    def update(self, old: Value, path: list[z3.ExprRef | str], value: Value) -> Value:
        if not path:
            return value
        head, rest = path[0], path[1:]
        if isinstance(head, str):
            assert isinstance(old, RecordVal)
            fields = dict(old.fields)
            fields[head] = self.update(fields[head], rest, value)
            return RecordVal(fields)
        assert isinstance(old, MapVal)
        return self.enc.store(old, head, self.update(self.enc.select(old, head), rest, value))


def execute(enc: Encoder, oracles: Oracles, op: ir.Op, pre: dict[str, Value],
            args: dict[str, Value], dom: z3.ExprRef) -> Step:
    return Executor(enc, oracles, op, pre, args, dom).run()

