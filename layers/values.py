"""Concrete values of the language, for the reference interpreter (docs/theory.md §1). No Z3.

- `bool` is a Python bool; `bv[N]` an int in [0, 2^N); an enum the index of its member.
- A principal is a `Principal` (declaration name, index or None); a family index is the
  index's own value (a bool, an int or an enum member's index).
- A record is a `Record` (fields sorted by name, so equality is field by field).
- A map is a `MapValue`: a default plus a dict of exceptions, so a map over `bv[64]` keys is
  finite to represent. Its equality is semantic: two maps are equal when they agree at every
  key of the key type, whatever default and exceptions represent them.

`Universe` knows the declared principals: it enumerates the values of scalar types (what
quantifiers, observation binders and map keys range over), and converts between values and
the raw bit patterns of the symbolic encoding (layers/encoding.py): enums are
`⌈log2 n⌉`-bit words, a principal is a tag (its declaration) above a payload (its index), and
`normalise` maps a raw oracle output to a canonical value exactly as the lowering does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Union

from microverify.dsl import ir
from microverify.dsl.types import BoolType, BVType, EnumType, MapType, PrincipalType, RecordType, Type

ENUMERATION_LIMIT = 1 << 16  # the most values a quantifier, binder or abstraction may range over


class EnumerationError(Exception):
    """A domain too large to enumerate (a quantifier over `bv[64]`, say)."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    index: bool | int | None = None

    def __str__(self) -> str:
        return self.name if self.index is None else f"{self.name}({self.index})"


@dataclass(frozen=True, slots=True)
class Record:
    fields: tuple[tuple[str, Value], ...]  # sorted by name

    @staticmethod
    def of(fields: Mapping[str, Value]) -> Record:
        return Record(tuple(sorted(fields.items())))

    def __getitem__(self, name: str) -> Value:
        for n, v in self.fields:
            if n == name:
                return v
        raise KeyError(name)

    def replace(self, name: str, value: Value) -> Record:
        self[name]  # a KeyError for an unknown field
        return Record(tuple((n, value if n == name else v) for n, v in self.fields))


Scalar = Union[bool, int, Principal]


@dataclass(frozen=True, eq=False)
class MapValue:
    """A total map over the `size` canonical values of `key`: `default` except at `entries`."""

    key: Type
    size: int
    default: Value
    entries: Mapping[Scalar, Value]

    def __getitem__(self, k: Scalar) -> Value:
        return self.entries.get(k, self.default)

    def set(self, k: Scalar, value: Value) -> MapValue:
        entries = dict(self.entries)
        if value == self.default:
            entries.pop(k, None)
        else:
            entries[k] = value
        return MapValue(self.key, self.size, self.default, MappingProxyType(entries))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MapValue):
            return NotImplemented
        if self.key != other.key:
            return False
        keys = self.entries.keys() | other.entries.keys()
        if any(self[k] != other[k] for k in keys):
            return False
        return len(keys) >= self.size or self.default == other.default  # some key has the defaults

    def __hash__(self) -> int:
        return hash(self.key)  # coarse, but consistent with the semantic equality

    def __repr__(self) -> str:
        return f"MapValue({self.key}, default={self.default!r}, {dict(self.entries)!r})"


Value = Union[bool, int, Principal, Record, MapValue]
Raw = Union[int, Mapping[str, "Raw"]]  # an oracle's raw output: a bit pattern, or a record of them


def as_index(v: Value) -> bool | int:
    """A value used as a family index (a bool, a bit-vector or an enum member's index)."""
    assert isinstance(v, int), f"{v!r} is not a family index"
    return v


# -- bit-vector arithmetic on unsigned ints (SMT-LIB semantics, as Z3 has them)

def mask(width: int) -> int:
    return (1 << width) - 1


def signed(a: int, width: int) -> int:
    return a - (1 << width) if a >> (width - 1) else a


def udiv(a: int, b: int, width: int) -> int:
    return mask(width) if b == 0 else a // b


def urem(a: int, b: int, width: int) -> int:
    return a if b == 0 else a % b


def _neg(a: int, width: int) -> int:
    return -a & mask(width)


def sdiv(a: int, b: int, width: int) -> int:
    """bvsdiv: udiv on magnitudes, negated when the signs differ (so sdiv(a, 0) is -1 or 1)."""
    neg_a, neg_b = bool(a >> (width - 1)), bool(b >> (width - 1))
    q = udiv(_neg(a, width) if neg_a else a, _neg(b, width) if neg_b else b, width)
    return _neg(q, width) if neg_a != neg_b else q


def srem(a: int, b: int, width: int) -> int:
    """bvsrem: urem on magnitudes, with the sign of the dividend (so srem(a, 0) is a)."""
    neg_a, neg_b = bool(a >> (width - 1)), bool(b >> (width - 1))
    r = urem(_neg(a, width) if neg_a else a, _neg(b, width) if neg_b else b, width)
    return _neg(r, width) if neg_a else r


def shl(a: int, b: int, width: int) -> int:
    return 0 if b >= width else (a << b) & mask(width)


def lshr(a: int, b: int, width: int) -> int:
    return 0 if b >= width else a >> b


def ashr(a: int, b: int, width: int) -> int:
    return (signed(a, width) >> min(b, width)) & mask(width)


def bits(n: int) -> int:
    """Bits needed to tell n values apart (at least 1), as in layers/encoding.py."""
    return max(1, (n - 1).bit_length())


class Universe:
    """The scalar domains of one module, and raw bit patterns <-> values."""

    def __init__(self, principals: tuple[ir.Principal, ...], budget: int | None = None) -> None:
        self.principals = principals
        # The most values enumerate() may give inside other enumerations, in all, or None. Each
        # quantifier is within ENUMERATION_LIMIT, but nested ones multiply (`forall p: bv[16].
        # exists q: bv[16]. ...` ranges over 2^32 points, hours of Python); side by side they
        # only add up.
        self.budget = budget
        self.tag_bits = bits(len(principals))
        self.payload_bits = max((self.width(p.param_type) for p in principals if p.param_type), default=0)
        self.principal_width = self.tag_bits + self.payload_bits
        self._tags = {p.name: i for i, p in enumerate(principals)}
        self.config: dict[str, Value] = {}  # the configuration constants' values in the runs interpreted
        self.enumerated = 0  # values enumerated inside other enumerations so far, against the budget
        self._open = 0  # enumerations under way (one inside the other)
        self._domains: dict[Type, tuple[Scalar, ...]] = {}  # members of each type enumerated

    # -- domains
    def width(self, t: Type) -> int:
        """The bit width of a scalar type in the encoding."""
        if isinstance(t, BoolType):
            return 1
        if isinstance(t, BVType):
            return t.width
        if isinstance(t, EnumType):
            return bits(len(t.members))
        if isinstance(t, PrincipalType):
            return self.principal_width
        raise TypeError(f"{t} is not a scalar type")

    def size(self, t: Type) -> int:
        """How many canonical values a scalar type has."""
        if isinstance(t, BoolType):
            return 2
        if isinstance(t, BVType):
            return 1 << t.width
        if isinstance(t, EnumType):
            return len(t.members)
        if isinstance(t, PrincipalType):
            return sum(self.size(p.param_type) if p.param_type else 1 for p in self.principals)
        raise TypeError(f"{t} is not a scalar type")

    def members(self, t: Type) -> Iterator[Scalar]:
        """The canonical values of a scalar type, in a fixed order (no size limit: lazy)."""
        if isinstance(t, BoolType):
            yield from (False, True)
        elif isinstance(t, (BVType, EnumType)):
            yield from range(self.size(t))
        elif isinstance(t, PrincipalType):
            for p in self.principals:
                if p.param_type is None:
                    yield Principal(p.name)
                else:
                    yield from (Principal(p.name, as_index(i)) for i in self.members(p.param_type))
        else:
            raise TypeError(f"{t} is not a scalar type")

    def enumerate(self, types: Iterable[Type], what: str) -> Iterator[tuple[Scalar, ...]]:
        """Every combination of values of `types`, or EnumerationError if there are too many."""
        types = tuple(types)
        total = 1
        for t in types:
            total *= self.size(t)
        if total > ENUMERATION_LIMIT:
            shown = ", ".join(str(t) for t in types)
            raise EnumerationError(f"{what} ranges over {total} values ({shown}); the interpreter "
                                   f"enumerates at most {ENUMERATION_LIMIT}")
        points = itertools.product(*(self._domain(t) for t in types))
        return points if self.budget is None else self._counted(points, self.budget, what)

    def _domain(self, t: Type) -> tuple[Scalar, ...]:
        """members(t), made once: an inner quantifier is enumerated again at each outer value."""
        found = self._domains.get(t)
        if found is None:
            found = self._domains[t] = tuple(self.members(t))
        return found

    def _counted(self, points: Iterator[tuple[Scalar, ...]], budget: int, what: str) -> Iterator[tuple[Scalar, ...]]:
        """The points, counted against the budget when this enumeration is inside another. An
        enumeration is under way until its generator ends or is closed (when the caller drops it,
        as `all` and `any` do when they stop early)."""
        inner = self._open > 0
        self._open += 1
        try:
            for point in points:
                if inner:
                    self.enumerated += 1
                    if self.enumerated > budget:
                        raise EnumerationError(f"{what}, inside another, takes the interpreter past {budget} "
                                               "values enumerated inside others, its limit (nested quantifiers "
                                               "multiply)")
                yield point
        finally:
            self._open -= 1

    # -- values
    def zero(self, t: Type) -> Value:
        """A fixed value of t (execute.default_value's choice; maps are constant)."""
        if isinstance(t, BoolType):
            return False
        if isinstance(t, (BVType, EnumType)):
            return 0
        if isinstance(t, PrincipalType):
            first = self.principals[0]
            return Principal(first.name, None if first.param_type is None else as_index(self.zero(first.param_type)))
        if isinstance(t, RecordType):
            return Record.of({n: self.zero(ft) for n, ft in t.fields})
        return self.constant_map(t, self.zero(t.value))

    def constant_map(self, t: MapType, value: Value) -> MapValue:
        return MapValue(t.key, self.size(t.key), value, MappingProxyType({}))

    def tabulate(self, t: MapType, values: Iterable[tuple[Scalar, Value]]) -> MapValue:
        """The map with the given value at each key (the first one's value is the default)."""
        result: MapValue | None = None
        for k, v in values:
            result = (result or self.constant_map(t, v)).set(k, v)
        return result if result is not None else self.constant_map(t, self.zero(t.value))

    # -- raw bit patterns
    def encode(self, t: Type, value: Value) -> int:
        """The bit pattern of a scalar value in the symbolic encoding."""
        if isinstance(t, PrincipalType):
            assert isinstance(value, Principal)
            payload = 0 if value.index is None else int(value.index)
            return self._tags[value.name] << self.payload_bits | payload
        assert isinstance(value, int)
        return int(value)

    def decode(self, t: Type, raw: int) -> Value:
        """The value of a canonical bit pattern of scalar type t (ValueError for junk: a
        pattern well-formedness excludes, such as `Timer(<3>)`)."""
        if raw < 0 or raw >> self.width(t):
            raise ValueError(f"{raw} does not fit {t}")
        if isinstance(t, BoolType):
            return raw == 1
        if isinstance(t, EnumType):
            if raw >= len(t.members):
                raise ValueError(f"{raw} names no member of {t}")
            return raw
        if isinstance(t, PrincipalType):
            tag, payload = raw >> self.payload_bits, raw & mask(self.payload_bits)
            if tag >= len(self.principals):
                raise ValueError(f"{raw} names no principal")
            p = self.principals[tag]
            if p.param_type is None:
                if payload:
                    raise ValueError(f"{raw} is {p.name} with an index")
                return Principal(p.name)
            if payload >> self.width(p.param_type):
                raise ValueError(f"{raw} is {p.name} with an index wider than its type")
            return Principal(p.name, as_index(self.decode(p.param_type, payload)))
        return raw

    def normalise(self, t: Type, raw: Raw) -> Value:
        """The canonical value the lowering makes of a raw oracle output (Oracles._apply):
        junk enum patterns become member 0; principals as in PrincipalEncoding.normalise. A
        record oracle's raw value is a mapping from field names to raw fields."""
        if isinstance(t, RecordType):
            assert isinstance(raw, Mapping)
            return Record.of({n: self.normalise(ft, raw[n]) for n, ft in t.fields})
        assert isinstance(raw, int)
        raw &= mask(self.width(t))
        if isinstance(t, BoolType):
            return raw == 1
        if isinstance(t, EnumType):
            return raw if raw < len(t.members) else 0
        if isinstance(t, PrincipalType):
            return self._principal(raw)
        return raw

    def _principal(self, raw: int) -> Principal:
        tag = raw >> self.payload_bits
        p = self.principals[min(tag, len(self.principals) - 1)]  # unknown tags: the last one
        if p.param_type is None:
            return Principal(p.name)
        return Principal(p.name, as_index(self.normalise(p.param_type, raw & mask(self.width(p.param_type)))))

    # -- presentation
    def show(self, t: Type, v: Value) -> str:
        """A value in the language's notation (maps as their entries and default)."""
        if isinstance(t, BoolType):
            return "true" if v else "false"
        if isinstance(t, BVType):
            assert isinstance(v, int)
            return str(v) if t.width < 8 else f"0x{v:0{(t.width + 3) // 4}x}"
        if isinstance(t, EnumType):
            assert isinstance(v, int)
            return t.members[v]
        if isinstance(t, PrincipalType):
            assert isinstance(v, Principal)
            param = self._param_type(v.name)
            if param is None or v.index is None:
                return v.name
            index = str(v.index) if isinstance(param, BVType) else self.show(param, v.index)
            return f"{v.name}({index})"  # a member's index in decimal at any width: VM(1), not VM(0x0001)
        if isinstance(t, RecordType):
            assert isinstance(v, Record)
            return "{" + ", ".join(f"{n}: {self.show(ft, v[n])}" for n, ft in t.fields) + "}"
        assert isinstance(t, MapType) and isinstance(v, MapValue)
        entries = [f"{self.show(t.key, k)}: {self.show(t.value, x)}" for k, x in v.entries.items()]
        return "[" + ", ".join(entries + [f"_: {self.show(t.value, v.default)}"]) + "]"

    def to_json(self, t: Type, v: Value) -> object:
        """A value as JSON: bool, bit-vector (a number), enum (its member's name), principal
        ({"principal", "index"}), record (an object), map ({"default", "entries": [[k, v]]})."""
        if isinstance(t, (BoolType, BVType)):
            return v
        if isinstance(t, EnumType):
            assert isinstance(v, int)
            return t.members[v]
        if isinstance(t, PrincipalType):
            assert isinstance(v, Principal)
            param = self._param_type(v.name)
            index = None if param is None or v.index is None else self.to_json(param, v.index)
            return {"principal": v.name, "index": index}
        if isinstance(t, RecordType):
            assert isinstance(v, Record)
            return {n: self.to_json(ft, v[n]) for n, ft in t.fields}
        assert isinstance(t, MapType) and isinstance(v, MapValue)
        return {"default": self.to_json(t.value, v.default),
                "entries": [[self.to_json(t.key, k), self.to_json(t.value, x)] for k, x in v.entries.items()]}

    def _param_type(self, name: str) -> Type | None:
        return next(p.param_type for p in self.principals if p.name == name)
