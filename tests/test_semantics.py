"""Lowering and symbolic execution, checked against Z3 directly."""

from __future__ import annotations

import z3

from microverify.dsl.loader import load_text
from microverify.layers.encoding import Encoder, MapVal, PrincipalEncoding
from microverify.layers.execute import Step
from microverify.layers.model import SymLayer

HEADER = """
principal KServ
principal VM(v: bv[2])
oracle o : bv[8] from KServ
type color = enum { Red, Green, Blue }
"""


def layer(body: str) -> SymLayer:
    module = load_text(HEADER + "layer L {\n" + body + "\n}", "t.mv")
    return SymLayer(module, module.layers[0], z3.Context())


def valid(L: SymLayer, claim: z3.BoolRef) -> bool:
    s = z3.Solver(ctx=L.ctx)
    s.add(z3.Not(claim))
    return s.check() == z3.unsat


def run(L: SymLayer, op: str) -> tuple[dict, dict, Step]:
    o = next(x for x in L.layer.ops if x.name == op)
    pre = L.fresh_state("s")
    args = L.fresh_args(o)
    return pre, args, L.step(o, pre, args)


def counter(L: SymLayer, state: dict, who: z3.ExprRef) -> z3.ExprRef:
    c = state["#o"]
    assert isinstance(c, MapVal)
    return L.enc.select(c, who)  # type: ignore[return-value]


def test_failed_check_rolls_back_state_and_oracle_counters() -> None:
    L = layer("""state { f : bv[8] }
    op g() by KServ -> bool {
      let x = read o
      f := x
      check f == 0 else return false
      return true
    }""")
    pre, _, step = run(L, "g")
    kserv = L.enc.principals.make("KServ", None, L.ctx)
    assert valid(L, z3.Implies(step.failed, z3.And(step.post["f"] == pre["f"],
                                                    counter(L, step.post, kserv) == counter(L, pre, kserv),
                                                    step.result == False)))  # noqa: E712
    assert valid(L, z3.Implies(z3.Not(step.failed),
                               z3.And(counter(L, step.post, kserv) == counter(L, pre, kserv) + 1,
                                      step.result == True)))  # noqa: E712
    assert valid(L, z3.Not(step.halted))


def test_oracle_reads_advance_the_readers_counter_only() -> None:
    L = layer("""state { a : bv[8]; b : bv[8] }
    op g(v: bv[2]) by VM(v) {
      a := read o
      b := read o
    }""")
    pre, args, step = run(L, "g")
    me = L.enc.principals.make("VM", args["v"], L.ctx)
    other = z3.Const("other", L.enc.principals.sort(L.ctx))
    assert valid(L, counter(L, step.post, me) == counter(L, pre, me) + 2)
    assert valid(L, z3.Implies(other != me, counter(L, step.post, other) == counter(L, pre, other)))
    # Two reads see two different indices, so they may differ.
    s = z3.Solver(ctx=L.ctx)
    s.add(step.post["a"] != step.post["b"])
    assert s.check() == z3.sat


def test_halt_and_check_else_halt() -> None:
    L = layer("""state { x : bv[8] }
    op g() by KServ {
      check x != 3 else halt
      if x == 4 { halt }
      x := 7
    }""")
    pre, _, step = run(L, "g")
    assert valid(L, step.halted == z3.Or(pre["x"] == 3, pre["x"] == 4))
    assert valid(L, z3.Implies(z3.Not(step.halted), step.post["x"] == 7))


def test_if_else_merges_paths_and_lets_see_earlier_writes() -> None:
    L = layer("""state { x : bv[8]; y : bv[8] }
    op g(c: bool) by KServ {
      if c { x := 1 } else { x := 2 }
      let z = x + 10
      y := z
    }""")
    pre, args, step = run(L, "g")
    assert valid(L, step.post["y"] == z3.If(args["c"], z3.BitVecVal(11, 8, L.ctx), z3.BitVecVal(12, 8, L.ctx)))


def test_bitvector_arithmetic_wraps_and_signed_comparisons() -> None:
    L = layer("""state { x : bv[8]; lt : bool; ult : bool }
    op g() by KServ {
      lt := slt(x, 0)
      ult := x < 0
      x := x + 1
    }""")
    pre, _, step = run(L, "g")
    assert valid(L, z3.Implies(pre["x"] == 255, z3.And(step.post["x"] == 0, step.post["lt"] == True,  # noqa: E712
                                                       step.post["ult"] == False)))  # noqa: E712


def test_concat_and_extract_agree_with_z3() -> None:
    """concat's first operand is the high bits; extract(x, hi, lo) is bits hi down to lo."""
    L = layer("""state { x : bv[8]; y : bv[4]; c : bv[12]; e : bv[3]; swap : bv[8] }
    op g() by KServ {
      c := concat(y, x)
      e := extract(x, 6, 4)
      swap := concat(extract(x, 3, 0), extract(x, 7, 4))
    }""")
    pre, _, step = run(L, "g")
    x, y = pre["x"], pre["y"]
    assert valid(L, z3.And(step.post["c"] == z3.Concat(y, x), step.post["e"] == z3.Extract(6, 4, x),
                           step.post["swap"] == z3.RotateLeft(x, 4)))


def test_nested_maps_and_records_update_one_entry() -> None:
    L = layer("""state { m : map[bv[2]] -> map[bv[2]] -> record { pc: bv[8], ok: bool } }
    op g(i: bv[2], j: bv[2]) by KServ { m[i][j].pc := 5 }""")
    pre, args, step = run(L, "g")
    enc = L.enc
    a, b = z3.Consts("a b", z3.BitVecSort(2, L.ctx))
    post_ab = enc.select(enc.select(step.post["m"], a), b)  # type: ignore[arg-type]
    pre_ab = enc.select(enc.select(pre["m"], a), b)  # type: ignore[arg-type]
    changed = z3.And(a == args["i"], b == args["j"])
    assert valid(L, z3.Implies(changed, post_ab.fields["pc"] == 5))  # type: ignore[union-attr]
    assert valid(L, post_ab.fields["ok"] == pre_ab.fields["ok"])  # type: ignore[union-attr]
    assert valid(L, z3.Implies(z3.Not(changed), post_ab.fields["pc"] == pre_ab.fields["pc"]))  # type: ignore[union-attr]


def test_free_enum_and_principal_values_are_well_formed() -> None:
    """Every entry of a state map of enums or principals is a declared value."""
    ctx = z3.Context()
    module = load_text(HEADER + "layer L { state { c : map[bv[2]] -> color; who : map[bv[8]] -> principal } }",
                       "t.mv")
    enc = Encoder(module, ctx)
    c = enc.fresh(module.layers[0].field_type("c"), "c")
    o = enc.fresh(module.layers[0].field_type("who"), "who")
    assert isinstance(c, MapVal) and isinstance(o, MapVal)
    i, j = z3.BitVec("i", 2, ctx), z3.BitVec("j", 8, ctx)
    s = z3.Solver(ctx=ctx)
    s.add(enc.wellformed)
    s.add(z3.Or(z3.UGE(enc.select(c, i), 3), z3.Not(enc.principals.wellformed(enc.select(o, j)))))  # type: ignore[arg-type]
    assert s.check() == z3.unsat
    assert len(enc.wellformed) == 2


def test_principal_encoding_round_trips_and_normalises() -> None:
    ctx = z3.Context()
    module = load_text(HEADER + "layer L { state { x : bool } }", "t.mv")
    pe = PrincipalEncoding(module.principals)
    v = z3.BitVec("v", 2, ctx)
    vm = pe.make("VM", v, ctx)
    kserv = pe.make("KServ", None, ctx)
    raw = z3.BitVec("raw", pe.width, ctx)
    s = z3.Solver(ctx=ctx)
    s.add(z3.Not(z3.And(pe.is_("VM", vm), z3.Not(pe.is_("KServ", vm)), pe.param("VM", vm) == v,
                        pe.is_("KServ", kserv), pe.normalise(vm) == vm, pe.normalise(kserv) == kserv,
                        pe.normalise(pe.normalise(raw)) == pe.normalise(raw),
                        z3.Or(pe.normalise(raw) == kserv, pe.is_("VM", pe.normalise(raw))))))
    assert s.check() == z3.unsat


def test_each_statement_keeps_only_what_it_reads() -> None:
    """A step's trace (what a counterexample shows the executed path read) keeps, per statement,
    the fields and names that statement's expressions read, as they are then; a copy of the
    whole state and scope at each statement made memory quadratic in an operation's length
    (6000 `let`s took 2 GB). The oracle read's counter is kept with it."""
    n = 300
    lets = "".join(f"  let a{i + 1} = a{i} + a{i}\n" for i in range(n))
    L = layer(f"state {{ x : bv[8]  y : bv[8]  z : bv[8] }}\n"
              f"op f(k: bv[8]) by KServ -> bv[8] {{\n  let a0 = x + k\n{lets}  y := read o\n  return a{n} }}")
    _, args, step = run(L, "f")
    scopes = [(set(env.state), set(env.vars)) for _, env, _ in step.trace]
    assert scopes[0] == ({"x"}, {"k"})
    assert scopes[1:n + 1] == [(set(), {f"a{i}"}) for i in range(n)]
    assert scopes[n + 1] == ({"#o"}, set())  # y := read o reads o's counter
    assert scopes[-1] == (set(), {f"a{n}"})
    assert step.trace[-1][1].vars[f"a{n}"] is step.locals[f"a{n}"][1]
