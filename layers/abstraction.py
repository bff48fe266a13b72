"""The abstraction function α of a refining layer: the upper state as terms of the lower one.

A definition `f[x: K][y: K2].g = e` becomes, for every leaf of `e`, the nested array
`λx. λy. leaf` — the same layout the encoder gives a map (an array per leaf, one level per
key), so reads of α(s) are ordinary selects that Z3 beta-reduces. Oracle counters are mapped
identically: the upper and lower layers count the same reads.
"""

from __future__ import annotations

import z3

from microverify.dsl import ir
from microverify.dsl.types import MapType, RecordType, Type
from microverify.layers.encoding import Encoder, MapVal, RecordVal, Value, map_leaves
from microverify.layers.lower import Env, LoweringError, lower
from microverify.oracles.oracles import counter_fields

Def = tuple[tuple[tuple[str, Type] | str, ...], ir.AbsDef]  # (path still to walk, definition)


def abstract(enc: Encoder, lower: ir.Layer, upper: ir.Layer, s: dict[str, Value]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for f in upper.fields:
        defs = [(d.path, d) for d in lower.abstraction if d.field == f.name]
        out[f.name] = _build(enc, f.type, defs, s)
    for c in counter_fields(enc.module):
        out[c.name] = s[c.name]
    return out


def _build(enc: Encoder, t: Type, defs: list[Def], s: dict[str, Value]) -> Value:
    whole = [d for path, d in defs if not path]
    if whole:
        return _define(enc, t, whole[0], s)
    if isinstance(t, RecordType):
        return RecordVal({name: _build(enc, ft, [(p[1:], d) for p, d in defs if p[0] == name], s)
                          for name, ft in t.fields})
    if isinstance(t, MapType):
        return MapVal(t, _build(enc, t.value, [(p[1:], d) for p, d in defs], s))
    raise LoweringError(f"the abstraction does not define a value of type {t}")  # the checker rules this out


def _define(enc: Encoder, t: Type, d: ir.AbsDef, s: dict[str, Value]) -> Value:
    """The value of one definition, lifted over its binders into nested arrays."""
    binders = [step for step in d.path if not isinstance(step, str)]
    consts = [z3.Const(enc.unique(f"abs_{name}"), enc.sort(key)) for name, key in binders]
    value = lower(d.value, Env(enc, s, {name: c for (name, _), c in zip(binders, consts)}))
    if not consts:
        return value

    def lift(leaf: z3.ExprRef, _: Type, __: bool) -> z3.ExprRef:
        for c in reversed(consts):
            leaf = z3.Lambda([c], leaf)
        return leaf

    return map_leaves(t, value, lift)
