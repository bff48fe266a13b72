"""Checker: name resolution and typing produce the IR the lowering relies on."""

from __future__ import annotations

import pytest

from microverify.dsl import ir
from microverify.dsl.diagnostics import DiagnosticError
from microverify.dsl.loader import load_text
from microverify.dsl.types import BOOL, PRINCIPAL, BVType, EnumType, MapType, RecordType

HEADER = """
type vmid = bv[2]
type st = enum { Off, On }
type ctx = record { pc: bv[8], on: st }
const LIMIT: bv[8] = 0x10
principal KServ
principal VM(v: vmid)
oracle o : bv[8] from KServ
"""


def layer(body: str) -> ir.Layer:
    return load_text(HEADER + "layer L {\n" + body + "\n}", "t.mv").layers[0]


def test_types_resolve_through_aliases() -> None:
    L = layer("state { c : map[vmid] -> ctx; who : principal }")
    assert L.field_type("c") == MapType(BVType(2), RecordType((("pc", BVType(8)), ("on", EnumType("st", ("Off", "On"))))))
    assert L.field_type("who") == PRINCIPAL


def test_literals_take_their_width_from_context_and_consts_are_inlined() -> None:
    L = layer("state { x : bv[8] }\n invariant { x + 1 < LIMIT }")
    pred = L.invariants[0].pred
    assert isinstance(pred, ir.Binary) and pred.op == "ult"
    assert isinstance(pred.left, ir.Binary) and pred.left.right == ir.Lit(1, BVType(8), pred.left.right.span)
    assert isinstance(pred.right, ir.Lit) and pred.right.value == 16


def test_names_resolve_to_their_kinds() -> None:
    L = layer("""state { c : map[vmid] -> ctx }
    observe VM(v) { c[v].pc where c[v].on == On; counter(o, VM(v)) }
    op f(v: vmid) by VM(v) { let x = read o
                             c[v].pc := x }""")
    comp = L.observations[0].components[0]
    assert isinstance(comp.where, ir.Binary) and isinstance(comp.where.right, ir.EnumVal)
    assert comp.where.right.index == 1
    base = comp.expr
    assert isinstance(base, ir.Field) and isinstance(base.base, ir.Index)
    assert isinstance(base.base.index, ir.Ref) and base.base.index.kind == "param"
    op = L.ops[0]
    let = op.body[0]
    assert isinstance(let, ir.Let) and isinstance(let.value, ir.ReadOracle) and let.value.principal is None
    assign = op.body[1]
    assert isinstance(assign, ir.Assign) and assign.field == "c" and assign.path[1] == "pc"
    assert isinstance(op.dom, ir.PrincipalVal) and op.dom.principal == "VM"


def test_signed_builtins_and_resizes() -> None:
    L = layer("state { x : bv[8] }\n invariant { slt(x, 3) ==> zext(x, 16) == sext(x, 16) && trunc(x, 4) == 1 }")
    pred = L.invariants[0].pred
    assert isinstance(pred, ir.Binary) and pred.op == "implies"
    assert isinstance(pred.left, ir.Binary) and pred.left.op == "slt" and pred.left.type == BOOL


def test_named_invariant_with_several_predicates_is_labelled_per_predicate() -> None:
    L = layer("state { x : bv[8] }\n invariant bounds { x < 10; x != 3 }\n invariant { x != 4 }")
    assert [i.name for i in L.invariants] == ["bounds.1", "bounds.2", "#2"]


@pytest.mark.parametrize("body,code", [
    ("state { x : bv[8] }\n observe VM(v) { counter(o, VM(0)) }", "foreign-counter"),
    ("state { x : bv[8] }\n observe VM { x }", "arity"),
    ("state { x : bv[8] }\n observe KServ(k) { x }", "arity"),
    ("state { x : map[ctx] -> bool }", "bad-type"),
    ("state { x : bv[0] }", "bad-type"),
    ("state { x : bv[8] }\n op f() by KServ -> map[vmid] -> bool { return x }", "bad-type"),
    ("state { x : bv[8] }\n op f() by KServ { let x = 1 }", "duplicate"),
    ("state { x : bv[8] }\n invariant { forall c: ctx. true }", "bad-type"),
    ("state { x : st }\n invariant { x < On }", "type-mismatch"),
    ("state { x : bv[8] }\n op f() by KServ { x := read nope }", "unknown-name"),
    ("state { x : bv[8] }\n op f() by KServ { x := foo(1) }", "unknown-name"),
    ("state { x : bv[8] }\n op f() by KServ { x := trunc(x, 9) }", "width-mismatch"),
    ("state { x : bv[8] }\n op f() by KServ { x := concat(x) }", "arity"),
    ("state { x : bv[8]; b : bool }\n op f() by KServ { x := trunc(concat(x, b), 8) }", "type-mismatch"),
    ("state { x : bv[8] }\n op f() by KServ { x := trunc(concat(x, 1), 8) }", "cannot-infer"),
    ("state { x : bv[8] }\n invariant { -1 == ~1 }", "cannot-infer"),
    ("state { x : bv[4000] }\n invariant { concat(x, x) == concat(x, x) }", "bad-type"),
    ("state { x : bv[8] }\n op f() by KServ { x := concat(extract(x, 3, 0), extract(x, 8, 4)) }", "width-mismatch"),
    ("state { x : bv[8] }\n op f() by KServ { x := zext(extract(x, 2, 3), 8) }", "width-mismatch"),
    ("state { x : bv[8] }\n op f() by KServ { x := zext(extract(x, x, 0), 8) }", "type-mismatch"),
    ("state { x : bv[8] }\n op f() by KServ { x := extract(x, 7) }", "arity"),
    ("state { x : bv[8] }\n op f() by KServ { x := zext(x, bool) }", "type-mismatch"),
])
def test_rejections(body: str, code: str) -> None:
    with pytest.raises(DiagnosticError) as info:
        layer(body)
    assert code in [d.code for d in info.value.diagnostics]


def test_negated_literal_takes_its_width_from_either_side() -> None:
    L = layer("state { x : bv[8] }\n invariant { -1 == x; x == -1; ~0 != x }")
    for inv in L.invariants:
        assert isinstance(inv.pred, ir.Binary) and inv.pred.left.type == BVType(8)


def codes(text: str) -> list[tuple[str, int]]:
    with pytest.raises(DiagnosticError) as info:
        load_text(text, "t.mv")
    return [(d.code, d.span.line) for d in info.value.diagnostics]


def test_a_field_with_a_broken_type_is_reported_once_not_at_every_use() -> None:
    """One cause, one error: the bad width, not also `unknown name` at every read and write of
    the fields of that type. Only the fields of the layer that declares them are skipped: an
    unknown name elsewhere, and one that is simply not declared, are still reported."""
    model = """principal KServ
principal VM(v: vmid)
type vmid = bv[1]
type word = bv[8]
layer L {
  state { secret : map[vmid] -> word
          pub : bv[0] }
  observe VM(v) { secret[v] }
  observe KServ { pub }
  invariant { pub == 0 }
  op leak(v: vmid) by KServ { pub := secret[v] }
}
"""
    assert codes(model) == [("bad-type", 7)]
    assert codes(model.replace("type word = bv[8]", "type word = bv[0]")) == [("bad-type", 4), ("bad-type", 7)]
    other = model + """layer M {
  state { x : bv[1] }
  observe KServ { pub }
  op w() by KServ { x := nope }
}
"""
    assert codes(other) == [("bad-type", 7), ("unknown-name", 15), ("unknown-name", 16)]


def test_a_field_whose_name_clashes_is_reported_once_not_at_every_use() -> None:
    """Found in review: a field named like a type gave the clash, then `unknown name` at each
    read and `not a state field` at each write (13 errors in a larger file). A field named like
    a constant: its uses are not read as the constant (a type error). Another layer's uses of
    the name are still checked."""
    model = """type frame = record { owner: principal, data: bv[8] }
const N: bv[8] = 3
principal KServ
layer L {
  state { frame : map[bv[4]] -> frame
          N : map[bv[4]] -> bv[8] }
  observe KServ { frame[p].data for p: bv[4]; N[p] for p: bv[4] }
  op w(p: bv[4], x: bv[8]) by KServ { frame[p].data := x  N[p] := N[p] + x }
}
layer M {
  state { y : bv[8] }
  op v() by KServ { y := N[0]  frame := 1 }
}
"""
    assert codes(model) == [("duplicate", 5), ("duplicate", 6), ("type-mismatch", 12), ("assign-not-state", 12)]
    # a refining layer's abstraction of the rejected fields says nothing more; of others it does
    lower = model + """layer R refines L {
  state { g : map[bv[4]] -> frame  n : map[bv[4]] -> bv[8] }
  abstraction { frame = g; N = n; nope = n }
  op w(p: bv[4], x: bv[8]) by KServ { g[p].data := x }
}
"""
    assert codes(lower)[4:] == [("unknown-name", 16)]


# -- found by a review of the front end (each was a silent drop, a hang or a follow-on error)


LEAKY_SECOND_L = """layer L {
  state { a: bv[8]; b: bv[8] }
  observe A { a }
  observe B { b }
  op leak() by A { b := a }
}
"""


@pytest.mark.parametrize("leaky_first", [False, True])
def test_a_layer_declared_twice_is_an_error_not_a_layer_dropped(leaky_first: bool) -> None:
    """The second `layer L` was never ordered, so never checked: `prove` proved the first and
    printed a theorem for L with the leaky one (A's `a` copied into B's view) left out."""
    first, second = "layer L { state { x: bool } }\n", LEAKY_SECOND_L
    if leaky_first:
        first, second = second, first
    text = "principal A\nprincipal B\n" + first + second
    assert codes(text) == [("duplicate", 4 if not leaky_first else 9)]


@pytest.mark.parametrize("order", ["imported first", "importer first"])
def test_a_layer_declared_in_an_imported_file_and_again_is_an_error(tmp_path, order: str) -> None:  # type: ignore[no-untyped-def]
    from microverify.dsl.loader import load_file

    (tmp_path / "base.mv").write_text("principal A\nprincipal B\nlayer L { state { x: bool } }\n")
    top = tmp_path / "top.mv"
    top.write_text('import "base.mv"\n' + LEAKY_SECOND_L if order == "imported first"
                   else LEAKY_SECOND_L + 'import "base.mv"\n')
    with pytest.raises(DiagnosticError) as info:
        load_file(top, {})
    assert [(d.code, d.message) for d in info.value.diagnostics] == [("duplicate", "layer `L` is already declared")]


def test_an_invariant_name_declared_twice_in_a_layer_is_an_error() -> None:
    text = ("principal A\nlayer L {\n  state { a: bv[8] }\n  invariant i { a != 5 }\n  invariant i { a != 7 }\n"
            "  op f() by A { a := 1 }\n}\n")
    assert codes(text) == [("duplicate", 5)]


@pytest.mark.parametrize("text", [
    # a field whose type is rejected: its `return` is left out, but that is no missing return
    "principal K\nlayer L {\n  state { m : bv[0] }\n  op f() by K -> bv[8] { return m }\n}\n",
    # a `let` whose value is rejected: its uses are not unknown names
    "principal A\nlayer L {\n  state { a: bv[8] }\n  op f() by A { let z = 1\n a := z }\n}\n",
    # a family whose index type is rejected: it is not an unknown principal where it is used
    "principal A(v: bv[0])\nlayer L { state { a: bool } op f() by A(0) { a := true } observe A(v) { a } }\n",
    # a def whose body is rejected: it is not an unknown function where it is called
    "principal A\ndef f(x: bv[8]) -> bv[8] = a\nlayer L { state { a: bv[8] } op g() by A { a := f(a) } }\n",
    # nor is a rejected family in the policy
    "principal KServ\nprincipal VM(v: nosuch)\npolicy { VM -> KServ }\n"
    "layer L { state { x: bv[2] } observe VM(v) { x } op f(v: bv[2]) by VM(v) { x := x } }\n",
])
def test_a_rejected_declaration_is_reported_once_not_again_where_it_is_used(text: str) -> None:
    assert len(codes(text)) == 1, codes(text)
