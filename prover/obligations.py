"""Obligations as data, and the generator that lists every one of them (DESIGN §2).

The generator is an explicit product over layers x operations x observer families; it never
returns early, so no case is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from microverify.dsl import ir
from microverify.dsl.spans import Span


class Kind(Enum):
    INIT = "INIT"
    INV = "INV"
    VAC = "VAC"
    OC = "OC"
    WSC = "WSC"
    LR = "LR"
    DC = "DC"
    DR = "DR"


KIND_NAMES = {
    Kind.INIT: "initial states satisfy the invariant",
    Kind.INV: "the invariant is preserved",
    Kind.VAC: "non-vacuity",
    Kind.OC: "output consistency",
    Kind.WSC: "weak step consistency",
    Kind.LR: "local respect",
    Kind.DC: "domain consistency",
    Kind.DR: "domain respect",
}


@dataclass(frozen=True, slots=True)
class Obligation:
    kind: Kind
    file: str
    layer: str
    op: str | None
    observer: str | None  # a principal family name
    span: Span

    @property
    def id(self) -> str:
        parts = [self.layer, self.kind.value]
        if self.op is not None:
            parts.append(self.op)
        if self.observer is not None:
            parts.append(self.observer)
        return "/".join(parts)


def generate(module: ir.Module) -> list[Obligation]:
    out: list[Obligation] = []
    for layer in module.layers:
        out.extend(layer_obligations(module, layer))
        out.extend(unwinding_obligations(module, layer))
    return out


def layer_obligations(module: ir.Module, layer: ir.Layer) -> list[Obligation]:
    """INIT, VAC of the invariant, and per operation VAC and INV."""
    f = module.file
    out = [Obligation(Kind.VAC, f, layer.name, None, None, layer.span),
           Obligation(Kind.INIT, f, layer.name, None, None, layer.span)]
    for op in layer.ops:
        out.append(Obligation(Kind.VAC, f, layer.name, op.name, None, op.span))
        out.append(Obligation(Kind.INV, f, layer.name, op.name, None, op.span))
    return out


def unwinding_obligations(module: ir.Module, layer: ir.Layer) -> list[Obligation]:
    """OC and DC per operation; WSC, LR and DR per operation and observer family."""
    f = module.file
    out = []
    for op in layer.ops:
        out.append(Obligation(Kind.OC, f, layer.name, op.name, None, op.span))
        out.append(Obligation(Kind.DC, f, layer.name, op.name, None, op.span))
        for p in module.principals:
            for kind in (Kind.WSC, Kind.LR, Kind.DR):
                out.append(Obligation(kind, f, layer.name, op.name, p.name, op.span))
    return out
