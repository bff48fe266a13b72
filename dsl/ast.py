"""Untyped syntax tree, as parsed. Frozen, slotted, every node with a span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from microverify.dsl.spans import Span

# ---------------------------------------------------------------- type expressions


@dataclass(frozen=True, slots=True)
class TBool:
    span: Span


@dataclass(frozen=True, slots=True)
class TBV:
    width: int
    span: Span


@dataclass(frozen=True, slots=True)
class TEnum:
    members: tuple[tuple[str, Span], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TRecord:
    fields: tuple[tuple[str, TypeExpr, Span], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TMap:
    key: TypeExpr
    value: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class TPrincipal:
    span: Span


@dataclass(frozen=True, slots=True)
class TName:
    name: str
    span: Span


TypeExpr = Union[TBool, TBV, TEnum, TRecord, TMap, TPrincipal, TName]

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True, slots=True)
class Index:
    base: Expr
    index: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class FieldGet:
    base: Expr
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "!", "-", "~"
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # "&&", "||", "==>", "<==>", "==", "!=", "<", ..., "+", "<<", ...
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Ite:
    cond: Expr
    then: Expr
    other: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Binder:
    name: str
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class Quant:
    kind: str  # "forall" | "exists"
    binders: tuple[Binder, ...]
    body: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class ReadOracle:
    oracle: str
    principal: Expr | None
    span: Span
    oracle_span: Span


Expr = Union[IntLit, BoolLit, Name, Call, Index, FieldGet, Unary, Binary, Ite, Quant, ReadOracle]

# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    type: TypeExpr | None
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class LvIndex:
    index: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class LvField:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Assign:
    root: str
    root_span: Span
    path: tuple[LvIndex | LvField, ...]
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
    """`bind o = e [for P] [from Q]`: this step performs the read of oracle `o` that the layer
    it refines makes, `e` is the value that read stands for (DESIGN §3), and `Q` is the member
    of the oracle's source family whose view must determine it."""

    oracle: str
    value: Expr
    principal: Expr | None
    span: Span
    oracle_span: Span
    source: Expr | None = None


Stmt = Union[Let, Assign, Check, If, Return, Halt, Bind]

# ---------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class ConstDecl:
    """`const N: T = e`; without `= e`, a configuration constant: any value, the same in every
    run and every layer (docs/language.md §3.2)."""

    name: str
    type: TypeExpr
    value: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class DefDecl:
    """`def f(x: T, ...) -> R = e`: a pure function, inlined where it is called."""

    name: str
    params: tuple[Param, ...]
    result: TypeExpr
    body: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class TypeDecl:
    name: str
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class PrincipalDecl:
    name: str
    param: str | None
    param_type: TypeExpr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Flow:
    """`A -> B`, `F(x) -> G(y) where e` (x, y new names for the members' indices, or index
    expressions): the members that may flow (docs/language.md §3.4)."""

    source: str
    target: str
    span: Span
    source_arg: Expr | None = None
    target_arg: Expr | None = None
    where: Expr | None = None


@dataclass(frozen=True, slots=True)
class PolicyDecl:
    flows: tuple[Flow, ...] | None  # None: isolation
    span: Span


@dataclass(frozen=True, slots=True)
class OracleDecl:
    name: str
    type: TypeExpr
    span: Span
    source: str | None = None  # `from P`: the principal (family) whose choice or data it carries
    source_span: Span | None = None


@dataclass(frozen=True, slots=True)
class StateField:
    name: str
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class Invariant:
    name: str | None
    preds: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ObsComponent:
    expr: Expr
    binders: tuple[Binder, ...]
    where: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Observe:
    principal: str
    param: str | None
    components: tuple[ObsComponent, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class Implements:
    op: str
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class OpDecl:
    name: str
    params: tuple[Param, ...]
    dom: Expr
    result: TypeExpr | None
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span
    implements: Implements | None = None


@dataclass(frozen=True, slots=True)
class AbsIndex:
    binder: str
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class AbsField:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class AbsDef:
    """`field[x: K].g = e`: part of the abstraction function, for every x."""

    field: str
    path: tuple[AbsIndex | AbsField, ...]
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class LayerDecl:
    name: str
    state: tuple[StateField, ...]
    init: tuple[Expr, ...]
    invariants: tuple[Invariant, ...]
    observes: tuple[Observe, ...]
    ops: tuple[OpDecl, ...]
    span: Span
    refines: str | None = None
    via: str | None = None
    abstraction: tuple[AbsDef, ...] = ()
    inherit: bool = False  # `extends`: what the layer does not mention carries over (dsl/inherit.py)


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    span: Span


Decl = Union[Import, ConstDecl, TypeDecl, DefDecl, PrincipalDecl, PolicyDecl, OracleDecl, LayerDecl]


@dataclass(frozen=True, slots=True)
class Module:
    file: str
    decls: tuple[Decl, ...]
