"""`def` functions (dsl/inline.py): a call is exactly the expression it stands for, errors are
reported where they are made, and a leak written through a def is caught like any other."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import SPLIT_ORDERS, assert_replayed, prove_text, split_over_two_files
from microverify.dsl import ir
from microverify.dsl.diagnostics import DiagnosticError
from microverify.dsl.loader import load_text
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.fingerprint import digest
from microverify.prover.verdict import ENCODINGS, Options, Status

HEADER = """\
principal KServ
principal VM(v: bv[2])
type pfn = bv[4]
def slot(v: bv[2]) -> pfn = zext(v, 4) * 2 + 5
def owns(m: map[pfn] -> principal, v: bv[2]) -> bool = m[slot(v)] == VM(v)
def nobody(m: map[pfn] -> principal, x: principal) -> bool = forall i: pfn. m[i] != x
def mailbox(v: bv[2]) -> pfn = slot(v)
"""
LAYER = """\
layer L {
  state { owner : map[pfn] -> principal, mem : map[pfn] -> bv[8] }
  init { forall v: bv[2]. OWNS }
  invariant own { forall v: bv[2]. OWNS }
  observe VM(v) { mem[SLOT] }
  observe KServ { forall i: pfn. NOBODY }
  op write(v: bv[2], x: bv[8]) by VM(v) { mem[MAILBOX] := x }
}
"""
WITH_DEFS = HEADER + LAYER.replace("OWNS", "owns(owner, v)").replace("SLOT", "slot(v)").replace("MAILBOX", "mailbox(v)") \
    .replace("NOBODY", "nobody(owner, VM(trunc(i, 2)))")
WRITTEN_OUT = HEADER + LAYER.replace("OWNS", "owner[zext(v, 4) * 2 + 5] == VM(v)") \
    .replace("SLOT", "zext(v, 4) * 2 + 5").replace("MAILBOX", "zext(v, 4) * 2 + 5").replace("NOBODY", "forall j: pfn. owner[j] != VM(trunc(i, 2))")


def test_a_call_is_the_expression_it_stands_for() -> None:
    """The checked IR (spans aside) is the one with every call written out, the quantifier of
    `nobody` renamed from `i` to `i'`: its `i` would capture the argument's."""
    with_defs = _normal(load_text(WITH_DEFS, "m.mv").layers)
    written = _normal(load_text(WRITTEN_OUT, "m.mv").layers, {"j": "i'"})
    assert digest(with_defs) == digest(written)
    other = load_text(WRITTEN_OUT.replace("mem[zext(v, 4) * 2 + 5] := x", "mem[zext(v, 4) * 2 + 6] := x"), "m.mv")
    assert digest(with_defs) != digest(_normal(other.layers, {"j": "i'"}))  # the comparison can fail


def _normal(layers: object, rename: dict[str, str] | None = None) -> object:
    """The IR with the source texts kept for messages blanked and bound variables renamed (the
    grammar has no primed names, so the written-out model cannot say `i'` itself)."""
    names = rename or {}

    def walk(x: object) -> object:
        if isinstance(x, ir.Ref) and x.kind == "bound":
            return dataclasses.replace(x, name=names.get(x.name, x.name))
        if isinstance(x, ir.Quant):
            return dataclasses.replace(x, binders=tuple((names.get(n, n), t) for n, t in x.binders),
                                       body=walk(x.body))
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return dataclasses.replace(x, **{f.name: "" if f.name == "text" else walk(getattr(x, f.name))
                                             for f in dataclasses.fields(x) if f.init})  # type: ignore[arg-type]
        if isinstance(x, tuple):
            return tuple(walk(v) for v in x)
        return x
    return walk(layers)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_model_with_defs_proves_and_a_leak_through_a_def_fails(encoding: str) -> None:
    results = prove_text(WITH_DEFS, Options(encoding=encoding))
    assert results and all(r.status is Status.PROVED for r in results), \
        [(r.obligation.id, r.status.value, r.detail) for r in results if r.status is not Status.PROVED]
    # The mailbox is the next VM's slot: VM(v) writes what VM(v ^ 1) observes.
    leaky = WITH_DEFS.replace("def mailbox(v: bv[2]) -> pfn = slot(v)", "def mailbox(v: bv[2]) -> pfn = slot(v ^ 1)")
    results = prove_text(leaky, Options(encoding=encoding))
    failed = {r.obligation.id for r in results if r.status is Status.FAILED}
    assert "L/LR/write/VM" in failed, [(r.obligation.id, r.status.value) for r in results]
    assert_replayed(results)


@pytest.mark.parametrize("source, code, message", [
    ("def f(x: bv[2]) -> bv[2] = x\nlayer L { state { y : bv[2] } init { f(y, y) == 0 } }", "arity",
     "`f` takes 1 argument(s), found 2"),
    ("def f(x: bv[2]) -> bv[2] = x\nlayer L { state { y : bv[4] } init { f(y) == 0 } }", "width-mismatch",
     "expected bv[2], found bv[4]"),
    ("def f(x: bv[2]) -> bv[2] = y\nlayer L { state { y : bv[2] } }", "unknown-name", "unknown name `y`"),
    ("def f(x: bv[2]) -> bv[2] = f(x)\nlayer L { state { y : bv[2] } }", "unknown-name",
     "`f` is used in its own declaration"),
    ("def f(x: bv[2]) -> bv[2] = g(x)\ndef g(x: bv[2]) -> bv[2] = x\nlayer L { state { y : bv[2] } }",
     "unknown-name", "`g` is used before it is declared"),
    ("def f(x: bv[2], x: bool) -> bv[2] = x\nlayer L { state { y : bv[2] } }", "duplicate",
     "parameter `x` of `f` is already declared"),
    ("def f(x: bv[2]) -> bool = x\nlayer L { state { y : bv[2] } }", "type-mismatch", "expected bool, found bv[2]"),
    ("def zext(x: bv[2]) -> bv[2] = x\nlayer L { state { y : bv[2] } }", "duplicate", "def `zext` is already declared"),
    ("oracle o : bv[2] from KServ\ndef f(x: bv[2]) -> bv[32] = counter(o, KServ)\nlayer L { state { y : bv[2] } }",
     "unsupported", "the def `f` mentions an oracle counter"),
    ("oracle o : bv[2] from KServ\ndef f(x: bv[2]) -> bv[2] = read o\nlayer L { state { y : bv[2] } }",
     "oracle-in-predicate", "oracle `o` is read in the def `f`"),
])
def test_def_errors_are_reported_where_they_are_made(source: str, code: str, message: str) -> None:
    with pytest.raises(DiagnosticError) as info:
        load_text("principal KServ\n" + source, "e.mv")
    found = [(d.code, d.message) for d in info.value.diagnostics]
    assert any(c == code and message in m for c, m in found), found


def test_a_misspelt_def_gets_a_suggestion() -> None:
    with pytest.raises(DiagnosticError) as info:
        load_text("principal KServ\ndef mailbox(x: bv[2]) -> bv[2] = x\nlayer L { state { y : bv[2] } init { mailbx(y) == 0 } }",
                  "e.mv")
    [d] = info.value.diagnostics
    assert d.code == "unknown-name" and d.notes == ("did you mean `mailbox`?",), d


def test_every_expression_class_is_walked_whole() -> None:
    """Inlining finds the names an argument uses (to rename what would capture them) and counts
    expansions through the fields annotated `Expr`; a field of another kind that holds
    expressions would be skipped, so it is refused outright."""
    from microverify.dsl.inline import _expr_fields

    for cls in ir.Expr.__args__:  # type: ignore[attr-defined]
        walked = set(_expr_fields(cls))
        assert walked == {f.name for f in dataclasses.fields(cls) if "Expr" in str(f.type)}, cls.__name__
    assert _expr_fields(ir.Binary) == ("left", "right") and _expr_fields(ir.Ite) == ("cond", "then", "other")

    @dataclasses.dataclass(frozen=True)
    class Odd:
        args: tuple[ir.Expr, ...]

    with pytest.raises(TypeError, match="does not walk"):
        _expr_fields(Odd)


CAPTURE = """\
principal KServ
principal VM(v: bv[1])
def is_zero(x: bv[2]) -> bool = exists i: bv[2]. i == x && i == 0
layer L {
  state { mem : map[bv[2]] -> bv[8], secret : bv[8] }
  observe VM(v) { mem[i] for i: bv[2] where !is_zero(i) }
  observe KServ { secret }
  op leak() by KServ { mem[1] := secret }
}
"""


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_a_leak_that_only_capture_avoiding_inlining_catches(tmp_path, encoding: str, order: str) -> None:  # type: ignore[no-untyped-def]
    """`is_zero(i)` is `i == 0`; inlined without renaming its own `i`, it would read
    `exists i. i == i && i == 0`, always true, and VM(v) would see no entry of mem. It sees
    mem[1]: KServ copying its secret there (0x01 in one run, 0x00 in the other) reaches every VM.
    The names the walk of an argument finds (`_free`) decide the renaming."""
    modules = split_over_two_files(tmp_path, CAPTURE, "VM(v)", order)
    results = prove_pairs(obligations(modules), Options(encoding=encoding))
    failed = {r.obligation.id for r in results if r.status is not Status.PROVED}
    assert failed == {"L/LR/leak/VM"}, failed
    assert_replayed(results)


@pytest.mark.parametrize("text,message,note", [
    ("principal K\nconst A: bv[4] = B + 1\nconst B: bv[4] = 1\nlayer L { state { x: bv[4] } observe K { x } }\n",
     "`B` is used before it is declared", "further on in this file"),
    ("principal K\ndef f(x: bv[4]) -> bv[4] = g(x)\ndef g(x: bv[4]) -> bv[4] = x\n"
     "layer L { state { x: bv[4] } observe K { x } }\n", "`g` is used before it is declared", "further on in this file"),
    ("principal K\nconst A: bv[4] = A + 1\nlayer L { state { x: bv[4] } observe K { x } }\n",
     "`A` is used in its own declaration", "cannot be defined by itself"),
    ("principal K\ndef f(x: bv[4]) -> bv[4] = f(x)\nlayer L { state { x: bv[4] } observe K { x } }\n",
     "`f` is used in its own declaration", "cannot be defined by itself"),
])
def test_a_use_before_the_declaration_is_said_so(text: str, message: str, note: str) -> None:
    """It was `unknown name`, with the declaration a few lines below."""
    with pytest.raises(DiagnosticError) as info:
        load_text(text, "t.mv")
    [d] = info.value.diagnostics
    assert d.code == "unknown-name" and d.message == message and note in d.notes[0], d
