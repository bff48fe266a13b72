"""Types as Z3 sorts, and structured symbolic values.

Everything is encoded in bit-vectors, booleans and arrays (AUFBV): enums and principals are
bit-vectors. Bit patterns that name no enum member or principal ("junk") are excluded by
well-formedness hypotheses on every free value the encoder creates (a state field, every
entry of a state map, an argument), collected in `Encoder.wellformed`; oracle outputs, which
are applications of uninterpreted functions, are *normalised* to a canonical value instead.
Z3 decides the well-formedness form far better than normalising every read.

A value of a record type is a `RecordVal`; of a map type, a `MapVal` whose inner value has
the shape of the map's value type with every leaf lifted to an array over the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import z3

from microverify.dsl import ir
from microverify.dsl.types import BoolType, BVType, EnumType, MapType, PrincipalType, RecordType, Type
from microverify.layers import terms


@dataclass(frozen=True)
class RecordVal:
    fields: dict[str, Value]


@dataclass(frozen=True)
class MapVal:
    type: MapType
    inner: Value  # leaves are arrays indexed by type.key


Value = Union[z3.ExprRef, RecordVal, MapVal]


def _bits(n: int) -> int:
    """Bits needed to tell n values apart (at least 1)."""
    return max(1, (n - 1).bit_length())


class PrincipalEncoding:
    """A principal is a bit-vector: a tag (which declaration) above a payload (the index)."""

    def __init__(self, principals: tuple[ir.Principal, ...]) -> None:
        self.principals = principals
        self.tag_bits = _bits(len(principals))
        self.payload_bits = max((_width(p.param_type) for p in principals if p.param_type), default=0)
        self.width = self.tag_bits + self.payload_bits
        self.tags = {p.name: i for i, p in enumerate(principals)}

    def sort(self, ctx: z3.Context) -> z3.BitVecSortRef:
        return z3.BitVecSort(self.width, ctx)

    def make(self, name: str, arg: z3.ExprRef | None, ctx: z3.Context) -> z3.BitVecRef:
        tag = self.tags[name]
        value = z3.BitVecVal(tag << self.payload_bits, self.width, ctx)
        if arg is None:
            return value
        payload = _to_bv(arg, ctx)
        if payload.size() < self.width:
            payload = z3.ZeroExt(self.width - payload.size(), payload)
        return value | payload

    def is_(self, name: str, term: z3.ExprRef) -> z3.BoolRef:
        tag = self.tags[name]
        return z3.Extract(self.width - 1, self.payload_bits, term) == tag

    def param(self, name: str, term: z3.ExprRef) -> z3.ExprRef:
        p = self.principals[self.tags[name]]
        assert p.param_type is not None
        raw = z3.Extract(_width(p.param_type) - 1, 0, term)
        return _from_bv(raw, p.param_type)

    def normalise(self, term: z3.ExprRef) -> z3.ExprRef:
        """Map every bit pattern to a canonical principal: unknown tags become the last one,
        payload bits above the family's index width are cleared."""
        ctx = term.ctx
        result = self._canonical(len(self.principals) - 1, term, ctx)
        for i in reversed(range(len(self.principals) - 1)):
            p = self.principals[i]
            result = z3.If(self.is_(p.name, term), self._canonical(i, term, ctx), result)
        return result

    def _canonical(self, i: int, term: z3.ExprRef, ctx: z3.Context) -> z3.ExprRef:
        p = self.principals[i]
        if p.param_type is None:
            return self.make(p.name, None, ctx)
        return self.make(p.name, self.param(p.name, term), ctx)

    def wellformed(self, term: z3.ExprRef) -> z3.BoolRef:
        """The canonical bit patterns: a declared tag, and no payload bits beyond the family's."""
        ctx = term.ctx
        cases = []
        for p in self.principals:
            if p.param_type is None:
                cases.append(term == self.make(p.name, None, ctx))
                continue
            used = _width(p.param_type)
            case = [self.is_(p.name, term)]
            if used < self.payload_bits:
                case.append(z3.Extract(self.payload_bits - 1, used, term) == 0)
            if isinstance(p.param_type, EnumType) and has_junk(p.param_type):
                # an index that names no member of the enum is no principal (Timer(<3>))
                case.append(z3.ULT(z3.Extract(used - 1, 0, term), len(p.param_type.members)))
            cases.append(z3.And(case))
        return z3.Or(cases)


def _width(t: Type) -> int:
    if isinstance(t, BoolType):
        return 1
    if isinstance(t, BVType):
        return t.width
    if isinstance(t, EnumType):
        return _bits(len(t.members))
    raise AssertionError(f"{t} has no fixed bit width")


def _to_bv(term: z3.ExprRef, ctx: z3.Context) -> z3.BitVecRef:
    if z3.is_bool(term):
        return z3.If(term, z3.BitVecVal(1, 1, ctx), z3.BitVecVal(0, 1, ctx))
    return term


def _from_bv(raw: z3.ExprRef, t: Type) -> z3.ExprRef:
    if isinstance(t, BoolType):
        return raw == 1
    if isinstance(t, EnumType):
        return normalise_enum(raw, t)
    return raw


def has_junk(t: EnumType) -> bool:
    return len(t.members) != 1 << _bits(len(t.members))


def normalise_enum(term: z3.ExprRef, t: EnumType) -> z3.ExprRef:
    n = len(t.members)
    if not has_junk(t):
        return term
    return z3.If(z3.ULT(term, n), term, z3.BitVecVal(0, _bits(n), term.ctx))


class Encoder:
    """Sorts, fresh values, normalisation and structural operations for one module in one context."""

    def __init__(self, module: ir.Module, ctx: z3.Context, suffix: str = "") -> None:
        """`suffix` ends every name `unique` makes: an encoder whose terms go into another
        encoder's formulas names its constants, bound ones included, apart from that one's
        (prover/shared.py), which otherwise a printed formula would confuse."""
        self.module = module
        self.ctx = ctx
        self.suffix = suffix
        self.principals = PrincipalEncoding(module.principals)
        self._fresh_ids: dict[str, int] = {}
        self.wellformed: list[z3.BoolRef] = []  # hypotheses excluding junk in fresh values
        self._numerals: dict[tuple[int, int], z3.BitVecNumRef] = {}
        self.configs: dict[str, Value] = {}  # each configuration constant read: one value, shared
        self._sorts: dict[tuple[Type, tuple[Type, ...]], z3.SortRef] = {}

    def config(self, name: str, t: Type) -> Value:
        """The configuration constant `name`: one symbolic value per obligation, the same in both
        runs and in every layer (so every check of the obligation is for the same, arbitrary,
        configuration)."""
        if name not in self.configs:
            self.configs[name] = self.fresh(t, f"config!{name}")
        return self.configs[name]

    def numeral(self, value: int, width: int) -> z3.BitVecNumRef:
        """z3.BitVecVal(value, width), made once per value and width."""
        key = (value, width)
        if key not in self._numerals:
            self._numerals[key] = z3.BitVecVal(value, width, self.ctx)
        return self._numerals[key]

    # -- sorts
    def sort(self, t: Type, keys: tuple[Type, ...] = ()) -> z3.SortRef:
        """The sort of a scalar type t; with keys, of arrays over them (the outermost first)
        with t's sort as the innermost range. Made once per encoder (z3py's sort constructors
        cost more than the constants made with them)."""
        found = self._sorts.get((t, keys))
        if found is not None:
            return found
        if keys:
            made: z3.SortRef = z3.ArraySort(self.sort(keys[0]), self.sort(t, keys[1:]))
        elif isinstance(t, BoolType):
            made = z3.BoolSort(self.ctx)
        elif isinstance(t, (BVType, EnumType)):
            made = z3.BitVecSort(_width(t), self.ctx)
        elif isinstance(t, PrincipalType):
            made = self.principals.sort(self.ctx)
        else:
            raise AssertionError(f"{t} is not a scalar type")
        self._sorts[(t, keys)] = made
        return made

    def normalise(self, t: Type, term: z3.ExprRef) -> z3.ExprRef:
        if isinstance(t, EnumType):
            return normalise_enum(term, t)
        if isinstance(t, PrincipalType):
            return self.principals.normalise(term)
        return term

    def domain(self, t: Type, term: z3.ExprRef) -> z3.BoolRef:
        """Which raw values of a scalar type are canonical (no junk)."""
        if isinstance(t, EnumType) and has_junk(t):
            return z3.ULT(term, len(t.members))
        if isinstance(t, PrincipalType):
            return self.principals.wellformed(term)
        return z3.BoolVal(True, self.ctx)

    def unique(self, name: str) -> str:
        n = self._fresh_ids.get(name, 0)
        self._fresh_ids[name] = n + 1
        return (name if n == 0 else f"{name}!{n}") + self.suffix

    # -- values
    def fresh(self, t: Type, name: str, keys: tuple[Type, ...] = ()) -> Value:
        """A fresh symbolic value of type t; its well-formedness goes to `self.wellformed`."""
        if isinstance(t, RecordType):
            return RecordVal({f: self.fresh(ft, f"{name}.{f}", keys) for f, ft in t.fields})
        if isinstance(t, MapType):
            return MapVal(t, self.fresh(t.value, name, keys + (t.key,)))
        const = z3.Const(self.unique(name), self.sort(t, keys))
        if isinstance(t, PrincipalType) or (isinstance(t, EnumType) and has_junk(t)):
            bound = [z3.Const(self.unique(f"{name}_k"), self.sort(k)) for k in keys]
            entry = const
            for b in bound:
                entry = z3.Select(entry, b)
            ok = self.domain(t, entry)
            self.wellformed.append(z3.ForAll(bound, ok) if bound else ok)
        return const

    def select(self, m: MapVal, key: z3.ExprRef) -> Value:
        return map_leaves(m.type.value, m.inner, lambda leaf, t, nested: terms.select(
            leaf, key, z3.ArrayRef if nested else z3.BoolRef if isinstance(t, BoolType) else z3.BitVecRef))

    def store(self, m: MapVal, key: z3.ExprRef, value: Value) -> MapVal:
        inner = _zip_leaves(m.inner, value, lambda arr, v: terms.store(arr, key, v))  # type: ignore[arg-type]
        return MapVal(m.type, inner)

    def ite(self, cond: z3.BoolRef, a: Value, b: Value) -> Value:
        if z3.is_true(cond):
            return a
        if z3.is_false(cond):
            return b
        return _zip_leaves(a, b, lambda x, y: x if x.eq(y) else terms.ite(cond, x, y))

    def equal(self, t: Type, a: Value, b: Value, witness: Callable[[Type], z3.ExprRef] | None = None) -> z3.BoolRef:
        """Equality of two values of type t. Maps are compared entry by entry: with `witness`,
        at one fresh key per map (for goals); otherwise for all keys."""
        if isinstance(t, RecordType):
            assert isinstance(a, RecordVal) and isinstance(b, RecordVal)
            return terms.and_([self.equal(ft, a.fields[f], b.fields[f], witness) for f, ft in t.fields]
                              + [z3.BoolVal(True, self.ctx)])
        if isinstance(t, MapType):
            assert isinstance(a, MapVal) and isinstance(b, MapVal)
            if witness is not None:
                k = witness(t.key)
                same = self.equal(t.value, self.select(a, k), self.select(b, k), witness)
                return terms.implies(self.domain(t.key, k), same)
            k = z3.Const(self.unique("k"), self.sort(t.key))
            body = self.equal(t.value, self.select(a, k), self.select(b, k))
            return z3.ForAll([k], terms.implies(self.domain(t.key, k), body))
        assert isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef)
        return terms.eq(a, b)


def map_leaves(t: Type, v: Value, f: Callable[[z3.ExprRef, Type, bool], z3.ExprRef], nested: bool = False) -> Value:
    """Apply f to every leaf of v, passing the scalar type of that leaf and whether the leaf is
    inside a map-typed part of v (then, in a map's value, it is an array over the inner keys
    too)."""
    if isinstance(t, RecordType):
        assert isinstance(v, RecordVal)
        return RecordVal({name: map_leaves(ft, v.fields[name], f, nested) for name, ft in t.fields})
    if isinstance(t, MapType):
        assert isinstance(v, MapVal)
        return MapVal(v.type, map_leaves(t.value, v.inner, f, True))
    assert isinstance(v, z3.ExprRef)  # in a map's value: an array, or a lambda (prover/linking.py)
    return f(v, t, nested)


def leaves(v: Value) -> list[z3.ExprRef]:
    """The terms a value is made of, in a fixed order (a record's by field, a map's inner value's)."""
    if isinstance(v, RecordVal):
        return [leaf for f in v.fields.values() for leaf in leaves(f)]
    if isinstance(v, MapVal):
        return leaves(v.inner)
    return [v]


def each_leaf(v: Value, f: Callable[[z3.ExprRef], z3.ExprRef]) -> Value:
    """v with f applied to each of its terms."""
    return _zip_leaves(v, v, lambda a, _: f(a))


def _zip_leaves(a: Value, b: Value, f: Callable[[z3.ExprRef, z3.ExprRef], z3.ExprRef]) -> Value:
    if isinstance(a, RecordVal):
        assert isinstance(b, RecordVal)
        return RecordVal({name: _zip_leaves(a.fields[name], b.fields[name], f) for name in a.fields})
    if isinstance(a, MapVal):
        assert isinstance(b, MapVal)
        return MapVal(a.type, _zip_leaves(a.inner, b.inner, f))
    assert isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef)
    return f(a, b)
