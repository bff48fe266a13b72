"""A model of a failed obligation read as concrete values: the reference interpreter's inputs.

- Scalars are decoded strictly: pre-states and arguments are well-formed by hypothesis, so a
  junk bit pattern there means that the model and the formula disagree (`ModelError`).
- An array is read from its value in the model (a constant array, stores, an `as-array`
  function or a lambda) as a default and exceptions, not entry by entry over its whole sort.
- In the qf encoding the model is completed first, as the fragment argument of prover/qf.py
  says (`qf.Completion`): at an index outside I, in a region of its sort that a λ stands for,
  every array is read where it is read at λ. Without this a model of the instances need not
  satisfy the quantifiers it came from.
- ω is the model's oracle functions, normalised the way the lowering normalises them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Union

import z3

from microverify.dsl import ir
from microverify.dsl.types import COUNTER, PRINCIPAL, MapType, RecordType, Type
from microverify.layers import values
from microverify.layers.encoding import MapVal, RecordVal, Value as Symbolic
from microverify.layers.interpret import OmegaFn
from microverify.layers.values import MapValue, Principal, Raw, Record, Universe, Value
from microverify.oracles.oracles import Oracles
from microverify.prover.formula import Formula
from microverify.prover.linking import Linked

TABULATE_LIMIT = 4096  # a map over at most this many keys is read at each of them


def numeral(v: z3.ExprRef) -> int | None:
    """The number a model value is (true 1, false 0, a bit-vector), or None."""
    if z3.is_true(v):
        return 1
    if z3.is_false(v):
        return 0
    if z3.is_bv_value(v):
        return int(v.as_long())  # type: ignore[attr-defined]
    return None  # an array, a function application, a quantifier: not a scalar value


class ModelError(Exception):
    """The model cannot be read as concrete values: an internal error."""


class TooLarge(Exception):
    """A map this module cannot represent concretely (the replay is not done)."""


@dataclass
class _Array:
    """An array's value in the model: `default` except at `entries` (raw index -> value)."""

    default: Parsed
    entries: dict[int, Parsed] = field(default_factory=dict)

    def at(self, key: int) -> Parsed:
        return self.entries.get(key, self.default)


@dataclass
class _Lazy:
    """An array value of another shape (a lambda with conditions other than index tests):
    read key by key through the model's evaluator."""

    term: z3.ExprRef
    reader: Concretizer

    def at(self, key: int) -> Parsed:
        domain = self.term.sort().domain()  # type: ignore[attr-defined]
        return self.reader.parse(z3.Select(self.term, z3.BitVecVal(key, domain.size(), domain.ctx)
                                           if domain.kind() == z3.Z3_BV_SORT else z3.BoolVal(bool(key), domain.ctx)))


Parsed = Union[int, _Array, _Lazy]


@dataclass
class _Linked:
    """An array the qf encoding substituted away (prover/linking.py): e(f⁻¹(key)) at a key in
    the definition's range, elsewhere the fresh array it stands for there, read where the
    completion reads it."""

    linked: Linked
    rest: Parsed | None
    reader: Concretizer

    def at(self, raw: int, key: Callable[[int], int], outside: bool = False) -> Parsed:
        d = self.linked
        if d.lo <= raw <= d.hi and not outside:
            return self.reader.parse(d.at(z3.BitVecVal(raw, d.sort.size(), d.sort.ctx)))  # type: ignore[attr-defined]
        if self.rest is None:
            raise TooLarge("a map is defined at every key by an index-linking hypothesis")
        if isinstance(self.rest, int):
            raise ModelError("a map's value in the model is not an array")
        return self.rest.at(key(raw))


Shape = Union[Parsed, _Linked, dict[str, "Shape"]]  # a symbolic value's structure with parsed leaves


class Concretizer:
    def __init__(self, formula: Formula, model: z3.ModelRef, universe: Universe) -> None:
        self.formula = formula
        self.model = model
        self.universe = universe
        self.enc = formula.layer.enc
        self.known: dict[int, set[int]] = {}  # per index sort (by its Z3 id): the values of I
        self.regions: dict[int, list[tuple[int, int, int]]] = {}  # (lo, hi, value of λ)
        completion = formula.completion
        self.linked = {d.array.get_id(): d for d in completion.linked} if completion is not None else {}
        if completion is not None:
            for sort, terms in completion.index.items():
                self.known[sort.get_id()] = {self.number(t) for t in terms}
            for sort, lo, hi, lam in completion.regions:
                self.regions.setdefault(sort.get_id(), []).append((lo, hi, self.number(lam)))
        self._omega: dict[tuple[str, Principal, int], Value] = {}

    # -- scalars
    def number(self, term: z3.ExprRef) -> int:
        v = self.model.eval(term, model_completion=True)
        n = numeral(v)
        if n is not None:
            return n
        raise ModelError(f"the model gives no value to {term.sexpr()[:120]} (it gives {v.sexpr()[:120]})")

    def scalar(self, t: Type, term: z3.ExprRef) -> Value:
        return self._decode(t, self.number(term))

    def _decode(self, t: Type, raw: int) -> Value:
        try:
            return self.universe.decode(t, raw)
        except ValueError as exc:
            raise ModelError(f"a value of type {t} in the model is no value of the language: {exc}") from None

    # -- arrays
    def parse(self, term: z3.ExprRef) -> Parsed:
        """The model's value of a scalar or array term."""
        return self._parse(self.model.eval(term, model_completion=True))

    def listed(self, term: z3.ExprRef) -> set[int]:
        """The indices at which the model's value of an array term lists an entry of its own (it
        is its default elsewhere); none for a value read key by key."""
        parsed = self.parse(term)
        return set(parsed.entries) if isinstance(parsed, _Array) else set()

    def _parse(self, v: z3.ExprRef) -> Parsed:
        n = numeral(v)
        if n is not None:
            return n
        if z3.is_const_array(v):
            return _Array(self._parse(v.arg(0)))  # type: ignore[attr-defined]
        if z3.is_store(v):
            base = self._parse(v.arg(0))  # type: ignore[attr-defined]
            if not isinstance(base, _Array):
                return _Lazy(v, self)
            entries = dict(base.entries)
            entries[self.number(v.arg(1))] = self._parse(v.arg(2))  # type: ignore[attr-defined]
            return _Array(base.default, entries)
        if z3.is_as_array(v):
            return self._function(v)
        if z3.is_quantifier(v) and v.is_lambda():  # type: ignore[attr-defined]
            return self._lambda(v)  # type: ignore[arg-type]
        raise ModelError(f"cannot read the model value {v.sexpr()[:160]}")

    def _function(self, v: z3.ExprRef) -> Parsed:
        interp = self.model[z3.get_as_array_func(v)]
        if not isinstance(interp, z3.FuncInterp) or interp.arity() != 1:
            return _Lazy(v, self)
        default = interp.else_value()
        if default is None or not _closed(default):
            return _Lazy(v, self)
        out = _Array(self._parse(default))
        for i in reversed(range(interp.num_entries())):  # the first entry for an index wins
            e = interp.entry(i)
            out.entries[self.number(e.arg_value(0))] = self._parse(e.value())
        return out

    def _lambda(self, v: z3.QuantifierRef) -> Parsed:
        """`lambda x. if x = c1 then v1 else if ... else d`, or read key by key."""
        if v.num_vars() != 1:
            return _Lazy(v, self)
        body = v.body()
        entries: dict[int, Parsed] = {}
        while z3.is_app_of(body, z3.Z3_OP_ITE):
            cond, then, other = body.children()
            key = _index_test(cond)
            if key is None or not _closed(then):
                return _Lazy(v, self)
            entries.setdefault(key, self._parse(then))
            body = other
        if not _closed(body):
            return _Lazy(v, self)
        return _Array(self._parse(body), entries)

    def _key(self, sort: z3.SortRef, key: int) -> int:
        """Where the completed model reads an array of this index sort at `key`."""
        sid = sort.get_id()
        if key in self.known.get(sid, ()):
            return key
        for lo, hi, lam in self.regions.get(sid, ()):
            if lo <= key < hi:
                return lam
        return key

    # -- values
    def shape(self, t: Type, v: Symbolic) -> Shape:
        if isinstance(t, RecordType):
            assert isinstance(v, RecordVal)
            return {f: self.shape(ft, v.fields[f]) for f, ft in t.fields}
        if isinstance(t, MapType):
            assert isinstance(v, MapVal)
            return self.shape(t.value, v.inner)
        assert isinstance(v, z3.ExprRef)
        d = self.linked.get(v.get_id())
        if d is not None:
            return _Linked(d, None if d.rest is None else self.parse(d.rest), self)
        return self.parse(v)

    def value(self, t: Type, v: Symbolic) -> Value:
        return self._build(t, self.shape(t, v))

    def _build(self, t: Type, shape: Shape) -> Value:
        """The concrete value of type t; for a map, shape's leaves are arrays over its key."""
        if isinstance(t, RecordType):
            assert isinstance(shape, dict)
            return Record.of({f: self._build(ft, shape[f]) for f, ft in t.fields})
        if isinstance(t, MapType):
            return self._map(t, shape)
        assert isinstance(shape, int)
        return self._decode(t, shape)

    def _map(self, t: MapType, shape: Shape) -> MapValue:
        sort = self.enc.sort(t.key)
        size = self.universe.size(t.key)
        if size <= TABULATE_LIMIT:
            return self.universe.tabulate(t, ((k, self._build(t.value, self._select(shape, sort, self.universe.encode(t.key, k))))
                                              for k in self.universe.members(t.key)))
        return self._sparse(t, sort, shape)

    def _sparse(self, t: MapType, sort: z3.SortRef, shape: Shape) -> MapValue:
        """A map over a large key sort: the default and the entries the model (completed) has."""
        regions = self.regions.get(sort.get_id(), [])
        width = self.universe.width(t.key)
        if len(regions) > 1:
            raise TooLarge(f"a map over {t.key} has {len(regions)} regions that differ")
        keys = set(_entry_keys(shape)) | self.known.get(sort.get_id(), set())
        if regions:
            lo, hi, lam = regions[0]
            outside = (1 << width) - (hi - lo)
            if outside > TABULATE_LIMIT:
                raise TooLarge(f"a map over {t.key} is read at {outside} indices outside its λ region")
            keys |= set(range(0, lo)) | set(range(hi, 1 << width))
            default = self._build(t.value, self._select(shape, sort, lam, outside=True))
        else:
            default = self._build(t.value, _defaults(shape))
        out = self.universe.constant_map(t, default)
        for raw in sorted(keys):
            try:
                k = self.universe.decode(t.key, raw)
            except ValueError:
                continue  # a junk index: no key of the map
            assert not isinstance(k, (Record, MapValue))
            out = out.set(k, self._build(t.value, self._select(shape, sort, raw)))
        return out

    def _select(self, shape: Shape, sort: z3.SortRef, raw: int, outside: bool = False) -> Shape:
        """The entry at raw of a map's value, as the completed model reads it; with `outside`,
        the entry the keys of raw's region outside every definition's range have (a map's
        default: the keys in a range are listed one by one)."""
        if isinstance(shape, dict):
            return {f: self._select(s, sort, raw, outside) for f, s in shape.items()}
        if isinstance(shape, int):
            raise ModelError("a map's value in the model is not an array")
        if isinstance(shape, _Linked):
            return shape.at(raw, lambda k: self._key(sort, k), outside)
        return shape.at(self._key(sort, raw))

    def state(self, fields: Iterable[ir.StateField], state: dict[str, Symbolic]) -> dict[str, Value]:
        return {f.name: self.value(f.type, state[f.name]) for f in fields}

    # -- oracles
    def omega(self, oracles: Oracles) -> OmegaFn:
        """ω as the model has it; each value asked for is remembered (`omega_values`)."""
        module = self.formula.layer.module

        def omega(oracle: str, principal: Principal, index: int) -> Value:
            key = (oracle, principal, index)
            if key not in self._omega:
                t = module.oracle(oracle).type
                who = z3.BitVecVal(self.universe.encode(PRINCIPAL, principal), self.universe.principal_width,
                                   self.enc.ctx)
                at = z3.BitVecVal(index, self.universe.width(COUNTER), self.enc.ctx)
                self._omega[key] = self.universe.normalise(t, _raw(self, oracles.raw(oracle, who, at)))
            return self._omega[key]
        return omega

    def omega_values(self) -> dict[tuple[str, Principal, int], Value]:
        return dict(self._omega)


def _raw(c: Concretizer, v: Symbolic) -> Raw:
    if isinstance(v, RecordVal):
        return {f: _raw(c, x) for f, x in v.fields.items()}
    assert isinstance(v, z3.ExprRef)
    return c.number(v)




def _defaults(shape: Shape) -> Shape:
    if isinstance(shape, dict):
        return {f: _defaults(s) for f, s in shape.items()}
    if isinstance(shape, _Linked) and isinstance(shape.rest, _Array):
        return shape.rest.default
    if not isinstance(shape, _Array):
        raise TooLarge("a map over a large sort has a value in the model that is no list of entries")
    return shape.default


def _entry_keys(shape: Shape) -> Iterable[int]:
    if isinstance(shape, dict):
        for s in shape.values():
            yield from _entry_keys(s)
    elif isinstance(shape, _Array):
        yield from shape.entries
    elif isinstance(shape, _Linked):
        d = shape.linked
        if d.hi - d.lo >= TABULATE_LIMIT:
            raise TooLarge(f"a map is defined at {d.hi - d.lo + 1} keys by an index-linking hypothesis")
        yield from range(d.lo, d.hi + 1)
        if shape.rest is not None:
            yield from _entry_keys(shape.rest)
    elif isinstance(shape, _Lazy):
        raise TooLarge("a map over a large sort has a value in the model that is no list of entries")


def _closed(t: z3.ExprRef) -> bool:
    """No bound variable in t."""
    if z3.is_var(t):
        return False
    return all(_closed(c) for c in t.children()) if z3.is_app(t) else not z3.is_quantifier(t)


def _index_test(cond: z3.ExprRef) -> int | None:
    """c for a condition `x = c` (either way round) on the lambda's variable, else None."""
    if not z3.is_eq(cond):
        return None
    a, b = cond.children()
    if z3.is_var(a) and z3.is_bv_value(b):
        return int(b.as_long())  # type: ignore[attr-defined]
    if z3.is_var(b) and z3.is_bv_value(a):
        return int(a.as_long())  # type: ignore[attr-defined]
    return None
