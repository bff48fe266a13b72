"""Lowering shared by the obligations of a process (#14, "build formulas once").

Most obligations of a layer assume its invariant of one or two states, and every two-run
obligation assumes that the runs agree for the principal running the operation (`s ~dom t`).
Lowering those predicates through z3py was the largest part of building a formula. Here each
is lowered once per process, over canonical states (and a canonical principal) in a context of
its own, and each obligation gets the canonical term translated into its context with the
canonical constants replaced by its own states' values, all at once (`terms.substitute`, one call
to Z3_substitute).

Why the instance is the predicate of the obligation's states: lowering is compositional, so
lowering over constants and then replacing each constant by a value gives a term equal, in
every model, to lowering over those values. That holds only if the canonical term has no free
constant but those replaced: the canonical states' leaves and the configuration constants it
read (those are replaced by the obligation's own configuration values, which are registered in
its encoder as a direct lowering would, with their well-formedness). Anything else (a value
made fresh by the lowering, which the obligation would otherwise name apart) makes that
predicate unshared: it is lowered directly for every obligation, decided by the layer alone.

The instance does not depend on what ran before it: it is always made this way, whether the
canonical term was found or lowered now, and the canonical lowering uses an encoder of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import z3

from microverify.dsl import ir
from microverify.dsl.types import Type
from microverify.layers.encoding import Encoder, leaves
from microverify.layers.model import State, SymLayer
from microverify.layers import terms
from microverify.layers.terms import free_constants
from microverify.prover import fingerprint

# The process's own Z3 context, where what obligations share is kept: the canonical predicates
# here and the witness shapes of prover/witness.py. Terms go out of it by translation, which
# builds the same terms whatever else the context holds. Every use holds LOCK: Z3 contexts are
# not thread-safe, and obligations can be solved in two threads at once in one process (the
# language server proves each saved file in a thread of its own, asyncio.to_thread).
CONTEXT = z3.Context()
LOCK = threading.RLock()
# Nothing is translated *into* CONTEXT from another context (`constant_in_shared` makes the
# constants it needs anew): Z3's translation raises the target's count of fresh names to the
# source's, and a context where Z3 has solved, or prover/qf.py made its λs, has counted many.
# CONTEXT's count passes on to every formula that takes a term from it, so the names Z3 makes
# fresh there (the λs of prover/qf.py, Z3's own) would depend on what ran before in the
# process, and Z3's search with them: a SeKVM leak that FAILED when solved alone ended
# UNKNOWN after another model's obligations (tests/test_shared.py).
_LIMIT = 10_000  # canonical terms remembered, at most (then forgotten: only a speed-up)

# The canonical encoders end every name they make, bound variables included, with this: a name
# no other encoder makes (no identifier has it), so that a canonical quantifier's variable never
# bears the name of a constant of the formula it is instantiated into. Z3 keeps them apart
# anyway (its variables are de Bruijn indices), but SMT-LIB text does not: a variable `x_s` over
# the state field x's constant `x_s` would capture it in `--dump-smt` and `--cross-check`.
CANONICAL = "~"


@dataclass(frozen=True)
class _Canonical:
    """A predicate lowered over canonical inputs in CONTEXT; `term` None: it is not shared."""

    term: z3.BoolRef | None
    inputs: tuple[z3.ExprRef, ...] = ()  # the canonical inputs' leaves, in order
    configs: tuple[tuple[str, Type, tuple[z3.ExprRef, ...]], ...] = ()  # each read: name, type, leaves


_LOWERED: dict[tuple[object, ...], _Canonical] = {}


def sort_in(sort: z3.SortRef, ctx: z3.Context) -> z3.SortRef:
    """The same sort made in `ctx` (the language's sorts: Bool, bit-vectors, arrays of them)."""
    kind = sort.kind()
    if kind == z3.Z3_BOOL_SORT:
        return z3.BoolSort(ctx)
    if kind == z3.Z3_BV_SORT:
        return z3.BitVecSort(sort.size(), ctx)
    assert isinstance(sort, z3.ArraySortRef), f"no sort {sort} in the language"
    return z3.ArraySort(sort_in(sort.domain(), ctx), sort_in(sort.range(), ctx))


def constant_in_shared(t: z3.ExprRef) -> z3.ExprRef:
    """The uninterpreted constant `t` of another context, made in CONTEXT by its name and sort
    (not translated: see CONTEXT)."""
    assert z3.is_const(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED, f"{t} is not a constant"
    return z3.Const(t.decl().name(), sort_in(t.sort(), CONTEXT))


def _state_leaves(s: State) -> list[z3.ExprRef]:
    return [leaf for v in s.values() for leaf in leaves(v)]


def _layer_key(L: SymLayer) -> tuple[bytes, str]:
    """What a predicate of the layer is lowered from, but its inputs: the module with its
    operations left out (types, sizes, configuration, principals, policy, every layer's
    invariants and observations) and the layer's name."""
    return fingerprint.digest_without_ops(L.module), L.layer.name


class SharedLayer(SymLayer):
    """A SymLayer whose invariant, `~` for a principal term and `~u` are lowered once per process."""

    _key: tuple[bytes, str] | None = None

    def invariant(self, s: State) -> z3.BoolRef:
        shared = self._instance(("invariant",), [s], [], lambda C, states, _: SymLayer.invariant(C, *states))
        return SymLayer.invariant(self, s) if shared is None else shared

    def equiv(self, who: z3.ExprRef, s: State, t: State) -> z3.BoolRef:
        shared = self._instance(("equiv",), [s, t], [who], lambda C, states, scalars: SymLayer.equiv(C, *scalars, *states))
        return SymLayer.equiv(self, who, s, t) if shared is None else shared

    def agree(self, principal: ir.Principal, param: z3.ExprRef | None, s: State, t: State) -> z3.BoolRef:
        scalars = [] if param is None else [param]
        shared = self._instance(("agree", principal.name, param is None), [s, t], scalars,
                                lambda C, states, ps: SymLayer.agree(C, principal, ps[0] if ps else None, *states))
        return SymLayer.agree(self, principal, param, s, t) if shared is None else shared

    def _instance(self, what: tuple[object, ...], states: list[State], scalars: list[z3.ExprRef],
                  lower: Callable[[SymLayer, list[State], list[z3.ExprRef]], z3.BoolRef]) -> z3.BoolRef | None:
        """The shared predicate `what` of the given states and scalars (its canonical term
        lowered by `lower` over canonical ones), or None if it is not shared. The scalars' sorts
        are fixed by the module (a principal, a family's index)."""
        if self._key is None:
            self._key = _layer_key(self)
        with LOCK:  # every term of CONTEXT this touches is released before the lock is
            found = _translated(self, (*self._key, *what), len(states), scalars, lower)
        if found is None:
            return None
        term, inputs, configs = found
        actual = [leaf for s in states for leaf in _state_leaves(s)] + scalars
        assert len(actual) == len(inputs), f"{what} of {self.layer.name}: inputs of another shape"
        pairs = list(zip(inputs, actual))
        for (name, t), made in configs:
            pairs += zip(made, leaves(self.enc.config(name, t)))  # registered here, as a direct lowering would
        return terms.substitute(term, pairs)


def _translated(L: SymLayer, key: tuple[object, ...], states: int, scalars: list[z3.ExprRef],
                lower: Callable[[SymLayer, list[State], list[z3.ExprRef]], z3.BoolRef]) -> \
        tuple[z3.BoolRef, list[z3.ExprRef], list[tuple[tuple[str, Type], list[z3.ExprRef]]]] | None:
    """The canonical predicate under `key` (lowered now if it is not yet) translated into L's
    context: its term, its inputs' leaves and the leaves of each configuration constant it
    read; None if it is not shared. Called under LOCK."""
    canonical = _LOWERED.get(key)
    if canonical is None:
        if len(_LOWERED) >= _LIMIT:
            _LOWERED.clear()
        sorts = [sort_in(x.sort(), CONTEXT) for x in scalars]
        canonical = _LOWERED[key] = _canonical(L, states, sorts, lower)
    if canonical.term is None:
        return None
    ctx = L.ctx
    return (canonical.term.translate(ctx), [c.translate(ctx) for c in canonical.inputs],
            [((name, t), [c.translate(ctx) for c in made]) for name, t, made in canonical.configs])


def _canonical(L: SymLayer, states: int, sorts: list[z3.SortRef],  # of CONTEXT
               lower: Callable[[SymLayer, list[State], list[z3.ExprRef]], z3.BoolRef]) -> _Canonical:
    # an encoder of its own: names do not depend on history, and are apart from the formula's
    C = SymLayer(L.module, L.layer, CONTEXT, Encoder(L.module, CONTEXT, CANONICAL))
    given = [C.fresh_state(f"canonical!{i}") for i in range(states)]
    scalars = [z3.Const(f"canonical!{i}", sort) for i, sort in enumerate(sorts)]
    term = lower(C, given, scalars)
    inputs = [leaf for s in given for leaf in _state_leaves(s)] + scalars
    types = {c.name: c.type for c in L.module.configs}
    configs = tuple((name, types[name], tuple(leaves(v))) for name, v in C.enc.configs.items())
    allowed = {x.get_id() for x in inputs} | {x.get_id() for _, _, made in configs for x in made}
    if any(c.get_id() not in allowed for c in free_constants(term)):
        return _Canonical(None)
    return _Canonical(term, tuple(inputs), configs)
