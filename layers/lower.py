"""Pure expressions (typed IR) to Z3 terms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import z3

from microverify.dsl import ir
from microverify.dsl.types import BoolType, BVType, Type
from microverify.layers import terms
from microverify.layers.encoding import Encoder, MapVal, RecordVal, Value
from microverify.oracles.oracles import counter_field


class LoweringError(Exception):
    """An IR node the lowering does not handle: an internal error, never a silent fallback."""


@dataclass
class Env:
    """Values visible to an expression: the state, and locals/args/bound variables/params."""

    enc: Encoder
    state: dict[str, Value]
    vars: dict[str, Value] = field(default_factory=dict)

    def bind(self, extra: dict[str, Value]) -> Env:
        return Env(self.enc, self.state, {**self.vars, **extra})


_BV_BINARY: dict[str, Callable[[z3.BitVecRef, z3.BitVecRef], z3.ExprRef]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "udiv": z3.UDiv,
    "urem": z3.URem,
    "sdiv": lambda a, b: a / b,
    "srem": z3.SRem,
    "band": lambda a, b: a & b,
    "bor": lambda a, b: a | b,
    "bxor": lambda a, b: a ^ b,
    "shl": lambda a, b: a << b,
    "lshr": z3.LShR,
    "ashr": lambda a, b: a >> b,
    "ult": z3.ULT,
    "ule": z3.ULE,
    "ugt": z3.UGT,
    "uge": z3.UGE,
    "slt": lambda a, b: a < b,
    "sle": lambda a, b: a <= b,
    "sgt": lambda a, b: a > b,
    "sge": lambda a, b: a >= b,
}


def lower(e: ir.Expr, env: Env) -> Value:
    enc = env.enc
    ctx = enc.ctx
    if isinstance(e, ir.Lit):
        if isinstance(e.type, BoolType):
            return z3.BoolVal(bool(e.value), ctx)
        assert isinstance(e.type, BVType)
        return enc.numeral(int(e.value), e.type.width)
    if isinstance(e, ir.Ref):
        if e.kind == "field":
            return env.state[e.name]
        if e.kind == "config":
            return enc.config(e.name, e.type)
        return env.vars[e.name]
    if isinstance(e, ir.EnumVal):
        return z3.BitVecVal(e.index, enc.sort(e.type).size(), ctx)  # type: ignore[attr-defined]
    if isinstance(e, ir.PrincipalVal):
        arg = scalar(e.arg, env) if e.arg is not None else None
        return enc.principals.make(e.principal, arg, ctx)
    if isinstance(e, ir.Index):
        base = lower(e.base, env)
        assert isinstance(base, MapVal)
        return enc.select(base, scalar(e.index, env))
    if isinstance(e, ir.Field):
        rec = lower(e.base, env)
        assert isinstance(rec, RecordVal)
        return rec.fields[e.name]
    if isinstance(e, ir.Unary):
        x = scalar(e.operand, env)
        if e.op == "not":
            return terms.not_(x)  # type: ignore[arg-type]
        return -x if e.op == "neg" else ~x  # type: ignore[operator]
    if isinstance(e, ir.Binary):
        return _binary(e, env)
    if isinstance(e, ir.Ite):
        return enc.ite(scalar(e.cond, env), lower(e.then, env), lower(e.other, env))  # type: ignore[arg-type]
    if isinstance(e, ir.Quant):
        return _quant(e, env)
    if isinstance(e, ir.Resize):
        x = scalar(e.operand, env)
        assert isinstance(e.type, BVType) and isinstance(x, z3.BitVecRef)
        grow = e.type.width - x.size()
        if e.kind == "zext":
            return z3.ZeroExt(grow, x)
        if e.kind == "sext":
            return z3.SignExt(grow, x)
        return z3.Extract(e.low + e.type.width - 1, e.low, x)  # trunc, extract
    if isinstance(e, ir.Counter):
        counters = env.state[counter_field(e.oracle)]
        assert isinstance(counters, MapVal)
        return enc.select(counters, scalar(e.principal, env))
    raise LoweringError(f"cannot lower {type(e).__name__} at {e.span} here")


def scalar(e: ir.Expr, env: Env) -> z3.ExprRef:
    v = lower(e, env)
    assert isinstance(v, z3.ExprRef), f"expected a scalar at {e.span}"
    return v


def pred(e: ir.Expr, env: Env) -> z3.BoolRef:
    v = scalar(e, env)
    assert z3.is_bool(v)
    return v  # type: ignore[return-value]


def _binary(e: ir.Binary, env: Env) -> z3.ExprRef:
    op = e.op
    if op in ("eq", "ne"):
        t = e.left.type
        same = env.enc.equal(t, lower(e.left, env), lower(e.right, env))
        return same if op == "eq" else terms.not_(same)
    a, b = scalar(e.left, env), scalar(e.right, env)
    if op == "and":
        return terms.and_((a, b))  # type: ignore[arg-type]
    if op == "or":
        return terms.or_((a, b))  # type: ignore[arg-type]
    if op == "implies":
        return terms.implies(a, b)  # type: ignore[arg-type]
    if op == "iff":
        return terms.eq(a, b)
    if op == "concat":
        return z3.Concat(a, b)
    fn = _BV_BINARY.get(op)
    if fn is None:
        raise LoweringError(f"unknown operator {op} at {e.span}")
    return fn(a, b)  # type: ignore[arg-type]


def bound_vars(enc: Encoder, binders: tuple[tuple[str, Type], ...], prefix: str) -> tuple[list[z3.ExprRef], z3.BoolRef, dict[str, Value]]:
    """Fresh constants for binders: (consts, their domain guard, name -> value)."""
    consts = [z3.Const(enc.unique(f"{prefix}{name}"), enc.sort(t)) for name, t in binders]
    guard = terms.and_([enc.domain(t, c) for (_, t), c in zip(binders, consts)] + [z3.BoolVal(True, enc.ctx)])
    return consts, guard, {name: c for (name, _), c in zip(binders, consts)}


def _quant(e: ir.Quant, env: Env) -> z3.BoolRef:
    consts, guard, values = bound_vars(env.enc, e.binders, "")
    body = pred(e.body, env.bind(values))
    if e.kind == "forall":
        return z3.ForAll(consts, terms.implies(guard, body))
    return z3.Exists(consts, terms.and_((guard, body)))


def goal_pred(e: ir.Expr, env: Env, witnesses: dict[str, tuple[Type, z3.ExprRef]]) -> z3.BoolRef:
    """Lower a predicate used as a goal: outermost `forall`s (also under `&&`) become fresh
    witness constants, so a counterexample names the entry that breaks it. Sound because
    a goal `forall x. P(x)` is valid iff `P(w)` is valid for a fresh w."""
    if isinstance(e, ir.Quant) and e.kind == "forall":
        consts, guard, values = bound_vars(env.enc, e.binders, "w_")
        for (name, t), c in zip(e.binders, consts):
            witnesses[name] = (t, c)
        return z3.Implies(guard, goal_pred(e.body, env.bind(values), witnesses))
    if isinstance(e, ir.Binary) and e.op == "and":
        return z3.And(goal_pred(e.left, env, witnesses), goal_pred(e.right, env, witnesses))
    return pred(e, env)

