"""Oracle semantics (DESIGN §3).

An oracle `o : T` is one uninterpreted function `omega_o(principal, index) -> T`, shared by
both runs of a two-run obligation because it is declared by name in the obligation's context.
Each principal p has a counter `n_o[p]`, a state field `#o : map[principal] -> bv[32]` that is
part of p's observation. A read for p yields `omega_o(p, n_o[p])` and increments `n_o[p]`.
"""

from __future__ import annotations

import z3

from microverify.dsl import ir
from microverify.dsl.ir import counter_field, is_counter_field
from microverify.dsl.types import COUNTER, PRINCIPAL, MapType, RecordType, Type
from microverify.layers.encoding import Encoder, MapVal, RecordVal, Value

COUNTER_TYPE = MapType(PRINCIPAL, COUNTER)


def field_label(name: str) -> str:
    """How a report names state field `name`: an oracle's counters as `counter(o)`."""
    return f"counter({name[1:]})" if is_counter_field(name) else name


def counter_fields(module: ir.Module) -> tuple[ir.StateField, ...]:
    return tuple(ir.StateField(counter_field(o.name), COUNTER_TYPE, o.span) for o in module.oracles)


class Oracles:
    """The oracle functions of one module in one Z3 context."""

    def __init__(self, module: ir.Module, enc: Encoder) -> None:
        self.module = module
        self.enc = enc

    def value(self, oracle: str, principal: z3.ExprRef, index: z3.ExprRef) -> Value:
        t = self.module.oracle(oracle).type
        return self._apply(t, f"omega_{oracle}", principal, index, True)

    def raw(self, oracle: str, principal: z3.ExprRef, index: z3.ExprRef) -> Value:
        """The oracle function's own output, before normalisation (what a model assigns)."""
        t = self.module.oracle(oracle).type
        return self._apply(t, f"omega_{oracle}", principal, index, False)

    def _apply(self, t: Type, name: str, principal: z3.ExprRef, index: z3.ExprRef, normalise: bool) -> Value:
        if isinstance(t, RecordType):
            return RecordVal({f: self._apply(ft, f"{name}.{f}", principal, index, normalise)
                              for f, ft in t.fields})
        enc = self.enc
        fn = z3.Function(name, enc.sort(PRINCIPAL), enc.sort(COUNTER), enc.sort(t))
        out = fn(principal, index)
        return enc.normalise(t, out) if normalise else out

    def advance(self, state: dict[str, Value], oracle: str, principal: z3.ExprRef,
                guard: z3.BoolRef) -> tuple[z3.ExprRef, dict[str, Value]]:
        """(the index `principal` reads next, the state with its counter advanced where `guard`)."""
        name = counter_field(oracle)
        counters = state[name]
        assert isinstance(counters, MapVal)
        index = self.enc.select(counters, principal)
        assert isinstance(index, z3.ExprRef)
        bumped = self.enc.store(counters, principal, index + 1)
        new_state = dict(state)
        new_state[name] = self.enc.ite(guard, bumped, counters)
        return index, new_state

    def read(self, state: dict[str, Value], oracle: str, principal: z3.ExprRef,
             guard: z3.BoolRef) -> tuple[Value, z3.ExprRef, dict[str, Value]]:
        """Read `oracle` for `principal`: (value, index read, state with the counter advanced)."""
        index, new_state = self.advance(state, oracle, principal, guard)
        return self.value(oracle, principal, index), index, new_state
