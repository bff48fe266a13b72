"""Semantic types of the language (aliases resolved)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class BoolType:
    def __str__(self) -> str:
        return "bool"


@dataclass(frozen=True, slots=True)
class BVType:
    width: int

    def __str__(self) -> str:
        return f"bv[{self.width}]"


@dataclass(frozen=True, slots=True)
class EnumType:
    name: str
    members: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class RecordType:
    fields: tuple[tuple[str, Type], ...]

    def field(self, name: str) -> Type | None:
        return dict(self.fields).get(name)

    def __str__(self) -> str:
        return "record { " + ", ".join(f"{n}: {t}" for n, t in self.fields) + " }"


@dataclass(frozen=True, slots=True)
class MapType:
    key: Type
    value: Type

    def __str__(self) -> str:
        return f"map[{self.key}] -> {self.value}"


@dataclass(frozen=True, slots=True)
class PrincipalType:
    def __str__(self) -> str:
        return "principal"


Type = Union[BoolType, BVType, EnumType, RecordType, MapType, PrincipalType]

BOOL = BoolType()
PRINCIPAL = PrincipalType()
COUNTER = BVType(32)  # the type of an oracle counter


def is_scalar(t: Type) -> bool:
    """Scalars are the finite types a map may be indexed by and a quantifier may range over."""
    return isinstance(t, (BoolType, BVType, EnumType, PrincipalType))


def has_map(t: Type) -> bool:
    if isinstance(t, MapType):
        return True
    if isinstance(t, RecordType):
        return any(has_map(ft) for _, ft in t.fields)
    return False
