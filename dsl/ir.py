"""Typed, name-resolved intermediate representation handed on by the checker.

Every node carries its span; every expression its type. Constants are inlined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Union

from microverify.dsl.spans import Span
from microverify.dsl.types import Type


@dataclass(frozen=True, slots=True)
class Lit:
    value: int | bool
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Ref:
    """A name: kind is 'field' (state), 'local' (let), 'arg', 'bound' (quantifier), 'param'
    (the family parameter of an observation) or 'config' (a configuration constant: the same
    value in both runs and every layer)."""

    name: str
    kind: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class EnumVal:
    index: int
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class PrincipalVal:
    principal: str
    arg: Expr | None
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Index:
    base: Expr
    index: Expr
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Field:
    base: Expr
    name: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # not, neg, bnot
    operand: Expr
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    """op: and or implies iff eq ne ult ule ugt uge slt sle sgt sge add sub mul udiv urem
    sdiv srem band bor bxor shl lshr ashr."""

    op: str
    left: Expr
    right: Expr
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Ite:
    cond: Expr
    then: Expr
    other: Expr
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Quant:
    kind: str  # forall | exists
    binders: tuple[tuple[str, Type], ...]
    body: Expr
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Resize:
    """zext, sext: the operand widened to `type`; trunc, extract: the bits of the operand from
    `low` up, as many as `type` has (trunc: low is 0)."""

    kind: str  # zext | sext | trunc | extract
    operand: Expr
    type: Type
    span: Span
    low: int = 0


@dataclass(frozen=True, slots=True)
class Counter:
    oracle: str
    principal: Expr
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class ReadOracle:
    """`read o [for P]`; principal None means the operation's dom."""

    oracle: str
    principal: Expr | None
    type: Type
    span: Span


Expr = Union[Lit, Ref, EnumVal, PrincipalVal, Index, Field, Unary, Binary, Ite, Quant, Resize,
             Counter, ReadOracle]


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Assign:
    field: str
    path: tuple[Expr | str, ...]  # an Expr indexes a map, a str selects a record field
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Check:
    cond: Expr
    on_fail: Expr | None  # None: halt
    span: Span


@dataclass(frozen=True, slots=True)
class If:
    cond: Expr
    then: tuple[Stmt, ...]
    other: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Return:
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Halt:
    span: Span


@dataclass(frozen=True, slots=True)
class Bind:
    """The read of oracle `oracle` for `principal` (None: dom) that the refined layer makes
    here stands for `value`; the counter advances as for a read. `source` is the principal of
    the oracle's source family whose view must determine `value` (R-BIND)."""

    oracle: str
    value: Expr
    principal: Expr | None
    span: Span
    source: Expr


Stmt = Union[Let, Assign, Check, If, Return, Halt, Bind]


def statements(body: tuple[Stmt, ...]) -> Iterator[Stmt]:
    """Every statement of a body, those inside `if` branches included, in source order."""
    stack: list[Stmt] = list(reversed(body))
    while stack:
        s = stack.pop()
        yield s
        if isinstance(s, If):
            stack.extend(reversed(s.then + s.other))


@dataclass(frozen=True, slots=True)
class ObsComponent:
    binders: tuple[tuple[str, Type], ...]
    where: Expr | None
    expr: Expr
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Observation:
    principal: str
    param: str | None
    components: tuple[ObsComponent, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Implements:
    """The upper operation a lower one refines, with the upper arguments as expressions of the
    lower arguments and pre-state."""

    op: str
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Op:
    name: str
    params: tuple[tuple[str, Type], ...]
    dom: Expr
    result: Type | None
    body: tuple[Stmt, ...]
    span: Span
    implements: Implements | None = None  # in a refining layer; None there: a stutter step


@dataclass(frozen=True, slots=True)
class Invariant:
    name: str
    pred: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class StateField:
    name: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class AbsDef:
    """Part of the abstraction function: upper `field`, along `path` (a (binder, key type)
    pair for each map level, a name for each record field), is `value` of the lower state."""

    field: str
    path: tuple[tuple[str, Type] | str, ...]
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    fields: tuple[StateField, ...]
    init: tuple[Expr, ...]
    invariants: tuple[Invariant, ...]
    observations: tuple[Observation, ...]
    ops: tuple[Op, ...]
    span: Span
    refines: str | None = None
    via: str | None = None
    abstraction: tuple[AbsDef, ...] = ()

    def op(self, name: str) -> Op | None:
        return next((o for o in self.ops if o.name == name), None)

    def field_type(self, name: str) -> Type:
        for f in self.fields:
            if f.name == name:
                return f.type
        raise KeyError(name)

    def observation(self, principal: str) -> Observation | None:
        for o in self.observations:
            if o.principal == principal:
                return o
        return None


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    param: str | None
    param_type: Type | None
    span: Span


@dataclass(frozen=True, slots=True)
class Oracle:
    name: str
    type: Type
    span: Span
    source: str  # the principal (or family) whose choice or data the values carry


@dataclass(frozen=True, slots=True)
class Flow:
    """`source -> target` in the policy: every member of source may flow to every member of target
    for which `cond` holds, with `source_var` and `target_var` (when not None) bound to the two
    members' indices in it; `cond` None: every member."""

    source: str
    target: str
    source_var: str | None
    target_var: str | None
    cond: Expr | None
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Config:
    """`const name: type` without a value: any value, the same in every run and every layer; the
    theorem holds for each."""

    name: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True)
class Module:
    file: str
    principals: tuple[Principal, ...]
    flows: tuple[Flow, ...]  # the policy's explicit flows; reflexivity is implicit
    oracles: tuple[Oracle, ...]
    layers: tuple[Layer, ...]
    defines: tuple[str, ...] = ()  # the `-D NAME=VALUE` it was checked under (dsl/defines.py)
    configs: tuple[Config, ...] = ()  # its configuration constants

    def principal(self, name: str) -> Principal:
        for p in self.principals:
            if p.name == name:
                return p
        raise KeyError(name)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def oracle(self, name: str) -> Oracle:
        for o in self.oracles:
            if o.name == name:
                return o
        raise KeyError(name)


def evaluated(s: Stmt) -> tuple[Expr, ...]:
    """The expressions a statement evaluates itself (not those of its branches)."""
    if isinstance(s, Assign):
        return (*(p for p in s.path if not isinstance(p, str)), s.value)
    if isinstance(s, Check):
        return (s.cond,) if s.on_fail is None else (s.cond, s.on_fail)
    if isinstance(s, If):
        return (s.cond,)
    if isinstance(s, (Let, Return)):
        return (s.value,)
    if isinstance(s, Bind):
        return (s.value, s.source) if s.principal is None else (s.value, s.source, s.principal)
    return ()


def op_fields(op: Op, oracle_field: Callable[[str], str] | None = None, binds: bool = False) -> set[str]:
    """State fields an operation mentions in its dom, conditions, assignments and results, and
    with `binds` in its binds; with `oracle_field`, also the field it names for each oracle read
    or counter."""
    found: set[str] = set()
    collect_fields(op.dom, found, oracle_field)
    for s in statements(op.body):
        if isinstance(s, Bind) and not binds:
            continue
        if isinstance(s, Assign):
            found.add(s.field)
        for e in evaluated(s):
            collect_fields(e, found, oracle_field)
    return found


def counter_field(oracle: str) -> str:
    """The state field holding oracle `oracle`'s counters (not a legal source-level name): the
    one convention the encoding (oracles/oracles.py) and the reference interpreter share."""
    return f"#{oracle}"


def is_counter_field(name: str) -> bool:
    return name.startswith("#")


def collect_fields(e: Expr, found: set[str], oracle_field: Callable[[str], str] | None = None) -> None:
    """Add the state fields `e` mentions to `found`; with `oracle_field`, also the field it
    names for each oracle read or counter."""
    for node in nodes(e):
        if isinstance(node, Ref) and node.kind == "field":
            found.add(node.name)
        elif oracle_field is not None and isinstance(node, (Counter, ReadOracle)):
            found.add(oracle_field(node.oracle))


def nodes(e: Expr) -> Iterator[object]:
    """`e` and every expression under it, quantifier bodies included."""
    stack: list[object] = [e]
    while stack:
        node = stack.pop()
        yield node
        for attr in ("base", "index", "operand", "left", "right", "cond", "then", "other", "body",
                     "arg", "principal"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int, tuple)):
                stack.append(child)
