"""Obligations as data, and the generator that lists every one of them (DESIGN §2).

The generator is an explicit product over layers x operations x observer families; it never
returns early, so no case is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from microverify.dsl import ir
from microverify.dsl.spans import Span
from microverify.layers.model import collect_fields


class Kind(Enum):
    INIT = "INIT"
    INV = "INV"
    VAC = "VAC"
    VIEW = "VIEW"
    OC = "OC"
    WSC = "WSC"
    LR = "LR"
    DC = "DC"
    DR = "DR"
    R_INIT = "R-INIT"
    R_INV = "R-INV"
    R_STEP = "R-STEP"
    R_ORACLE = "R-ORACLE"
    R_DOM = "R-DOM"
    R_ARGS = "R-ARGS"
    R_BIND = "R-BIND"
    R_OBS = "R-OBS"
    R_STUTTER = "R-STUTTER"


KIND_NAMES = {
    Kind.INIT: "initial states satisfy the invariant",
    Kind.INV: "the invariant is preserved",
    Kind.VAC: "non-vacuity",
    Kind.VIEW: "the observer's view tells some states apart",
    Kind.OC: "output consistency",
    Kind.WSC: "weak step consistency",
    Kind.LR: "local respect",
    Kind.DC: "domain consistency",
    Kind.DR: "domain respect",
    Kind.R_INIT: "refinement of the initial states",
    Kind.R_INV: "refinement of the invariant",
    Kind.R_STEP: "refinement of a step",
    Kind.R_ORACLE: "oracle counters advance alike",
    Kind.R_DOM: "refinement of dom",
    Kind.R_ARGS: "the upper arguments are determined by what the principal sees",
    Kind.R_BIND: "a bound oracle value is determined by what its source sees",
    Kind.R_OBS: "the abstraction hides nothing an observer sees",
    Kind.R_STUTTER: "a lower-only step changes nothing abstract",
}


@dataclass(frozen=True, slots=True)
class Obligation:
    kind: Kind
    file: str  # where the layer is declared
    layer: str
    op: str | None
    observer: str | None  # a principal family name
    span: Span
    # the root files of the run this copy is built in, when files of one run build the same
    # obligation differently (prover/driver.py, `obligations`); else empty
    context: tuple[str, ...] = ()
    # a layer of this name is declared in another file of the run too: the id says this one's
    by_file: bool = False

    @property
    def base_id(self) -> str:
        """Layer/KIND/op/Observer."""
        parts = [self.layer, self.kind.value]
        if self.op is not None:
            parts.append(self.op)
        if self.observer is not None:
            parts.append(self.observer)
        return "/".join(parts)

    @property
    def id(self) -> str:
        """base_id, and where it is ambiguous in a run, the files this copy is built in
        (`Spec/OC/get [b.mv]`), or the file that declares its layer, if layers of that name are
        declared in several files."""
        files = self.context or ((self.file,) if self.by_file else ())
        return self.base_id + (f" [{', '.join(files)}]" if files else "")


def generate(module: ir.Module) -> list[Obligation]:
    """Invariants for every layer; unwinding for top layers; refinement for the others."""
    out: list[Obligation] = []
    for layer in module.layers:
        out.extend(layer_obligations(module, layer))
        if layer.refines is None:
            out.extend(unwinding_obligations(module, layer))
        else:
            out.extend(refinement_obligations(module, layer))
    return out


def layer_obligations(module: ir.Module, layer: ir.Layer) -> list[Obligation]:
    """INIT, VAC of the invariant, VIEW per observer with a view, and per operation VAC and INV."""
    f = layer.span.file
    out = [Obligation(Kind.VAC, f, layer.name, None, None, layer.span),
           Obligation(Kind.INIT, f, layer.name, None, None, layer.span)]
    for p in module.principals:
        view = layer.observation(p.name)
        if view is not None and view.components:
            out.append(Obligation(Kind.VIEW, f, layer.name, None, p.name, view.span))
    for op in layer.ops:
        out.append(Obligation(Kind.VAC, f, layer.name, op.name, None, op.span))
        out.append(Obligation(Kind.INV, f, layer.name, op.name, None, op.span))
    return out


def unwinding_obligations(module: ir.Module, layer: ir.Layer) -> list[Obligation]:
    """OC and DC per operation; WSC, LR and DR per operation and observer family."""
    f = layer.span.file
    out = []
    for op in layer.ops:
        out.append(Obligation(Kind.OC, f, layer.name, op.name, None, op.span))
        out.append(Obligation(Kind.DC, f, layer.name, op.name, None, op.span))
        for p in module.principals:
            for kind in (Kind.WSC, Kind.LR, Kind.DR):
                out.append(Obligation(kind, f, layer.name, op.name, p.name, op.span))
    return out


def refinement_obligations(module: ir.Module, layer: ir.Layer) -> list[Obligation]:
    """DESIGN §4: R-INIT, R-INV; per mapped operation R-STEP, R-ORACLE, R-DOM, and R-ARGS when
    an upper argument depends on the state; per stutter operation R-STUTTER, and output and
    domain consistency at this layer (no upper operation vouches for its output or for whom it
    runs: see docs/theory.md); R-BIND per operation that binds an oracle; per observer family
    R-OBS."""
    f = layer.span.file
    out = [Obligation(Kind.R_INIT, f, layer.name, None, None, layer.span),
           Obligation(Kind.R_INV, f, layer.name, None, None, layer.span)]
    for op in layer.ops:
        kinds: tuple[Kind, ...] = (Kind.R_STEP, Kind.R_ORACLE, Kind.R_DOM) if op.implements else \
            (Kind.R_STUTTER, Kind.OC, Kind.DC)
        if op.implements and state_dependent_args(op):
            kinds += (Kind.R_ARGS,)
        if binds(op):
            kinds += (Kind.R_BIND,)
        out.extend(Obligation(k, f, layer.name, op.name, None, op.span) for k in kinds)
    for p in module.principals:
        out.append(Obligation(Kind.R_OBS, f, layer.name, None, p.name, layer.span))
    return out


def state_dependent_args(op: ir.Op) -> list[int]:
    """The positions of the upper arguments that read the state. The others are expressions of
    the lower arguments and constants, the same in any two runs of the operation: they need no
    R-ARGS goal."""
    assert op.implements is not None
    out = []
    for i, e in enumerate(op.implements.args):
        found: set[str] = set()
        collect_fields(e, found)
        if found:
            out.append(i)
    return out


def binds(op: ir.Op) -> list[ir.Bind]:
    """The `bind` statements of an operation, in source order."""
    return [s for s in ir.statements(op.body) if isinstance(s, ir.Bind)]
