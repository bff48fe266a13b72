"""`layer L extends U`: refinement by difference (dsl/inherit.py, docs/language.md §10.4).

An `extends` layer is the layer written out in full: the same obligations, formula for formula.
Every leak written into one is rejected by the obligation that rejects it written out, in both
encodings and with the two layers in two files loaded in either order; a part of U that cannot
mean the same over L's state is an error, never dropped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import z3

from conftest import ROOT
from microverify.dsl import ir
from microverify.dsl.diagnostics import DiagnosticError
from microverify.dsl.loader import load_file, load_text
from microverify.prover import export, fingerprint
from microverify.prover.driver import obligations, prove_modules
from microverify.prover.solve import build
from microverify.prover.verdict import ENCODINGS, Options, Status

SPEC = """\
type vmid = bv[1]
type pfn  = bv[2]
type word = bv[4]
principal KServ
principal VM(v: vmid)
oracle io : word from VM
policy { KServ -> VM }

layer Spec {
  state {
    owner : map[pfn] -> principal
    mem   : map[pfn] -> word
  }
  init { forall p: pfn. owner[p] == KServ }
  invariant page0 { owner[0] == KServ }
  observe KServ { owner[p] for p: pfn; mem[p] for p: pfn where owner[p] == KServ }
  observe VM(v) { owner[p] == VM(v) for p: pfn; mem[p] for p: pfn where owner[p] == VM(v) }
  op donate(v: vmid, p: pfn) by KServ -> bool {
    check p != 0 && owner[p] == KServ else return false
    owner[p] := VM(v)
    mem[p] := 0
    return true
  }
  op reclaim(v: vmid, p: pfn) by KServ -> bool {
    check owner[p] == VM(v) else return false
    mem[p] := 0
    owner[p] := KServ
    return true
  }
  op vm_write(v: vmid, p: pfn, x: word) by VM(v) -> bool {
    check owner[p] == VM(v) else return false
    mem[p] := x
    return true
  }
  op peek(p: pfn) by KServ -> word {
    if owner[p] == KServ { return mem[p] }
    let x = read io
    return x
  }
}
"""

# A one-entry TLB per VM: a hit skips the ownership check, sound because reclaim flushes.
RECLAIM = """\
  op reclaim(v: vmid, p: pfn) by KServ -> bool {
    check owner[p] == VM(v) else return false
    mem[p] := 0
    owner[p] := KServ
    if tlb[v].valid && tlb[v].page == p { tlb[v].valid := false }
    return true
  }
"""
TLB_OPS = RECLAIM + """\
  op vm_write(v: vmid, p: pfn, x: word) by VM(v) -> bool {
    if !(tlb[v].valid && tlb[v].page == p) {
      check owner[p] == VM(v) else return false
    }
    mem[p] := x
    return true
  }
  op tlb_fill(v: vmid, p: pfn) by VM(v) {
    if owner[p] == VM(v) {
      tlb[v].valid := true
      tlb[v].page := p
    }
  }
"""
TLB_STATE = "    tlb : map[vmid] -> record { valid: bool, page: pfn }\n"
COHERENT = "  invariant coherent { forall v: vmid. tlb[v].valid ==> owner[tlb[v].page] == VM(v) }\n"

CACHED = ("layer Cached extends Spec via tlb {\n  state {\n" + TLB_STATE + "  }\n"
          "  init { forall v: vmid. !tlb[v].valid }\n" + COHERENT + TLB_OPS + "}\n")

# The same layer written out in full, as it had to be before `extends`.
WRITTEN = ("layer Cached refines Spec via tlb {\n  state {\n"
           "    owner : map[pfn] -> principal\n    mem   : map[pfn] -> word\n" + TLB_STATE + "  }\n"
           "  abstraction { owner = owner; mem = mem }\n"
           "  init { forall p: pfn. owner[p] == KServ; forall v: vmid. !tlb[v].valid }\n"
           "  invariant page0 { owner[0] == KServ }\n" + COHERENT +
           "  observe KServ { owner[p] for p: pfn; mem[p] for p: pfn where owner[p] == KServ }\n"
           "  observe VM(v) { owner[p] == VM(v) for p: pfn; mem[p] for p: pfn where owner[p] == VM(v) }\n"
           "  op donate(v: vmid, p: pfn) by KServ -> bool {\n"
           "    check p != 0 && owner[p] == KServ else return false\n"
           "    owner[p] := VM(v)\n    mem[p] := 0\n    return true\n  }\n"
           "  op peek(p: pfn) by KServ -> word {\n"
           "    if owner[p] == KServ { return mem[p] }\n    let x = read io\n    return x\n  }\n"
           + TLB_OPS + "}\n")


def _scripts(module: ir.Module) -> dict[str, str]:
    """Every obligation of the module as the SMT-LIB2 script `--dump-smt` writes, comments out."""
    out = {}
    for m, ob in obligations([module]):
        formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
        out[ob.id] = re.sub(r"^;.*\n", "", export.script(ob, formula), flags=re.M)
    return out


def test_an_extends_layer_has_the_obligations_of_the_layer_written_out() -> None:
    by_difference = _scripts(load_text(SPEC + CACHED, "<test>"))
    written = _scripts(load_text(SPEC + WRITTEN, "<test>"))
    assert any(i.startswith("Cached/R-STEP/") for i in written)
    assert by_difference == written


def test_a_chain_of_extends_layers_proves_with_the_theorem_for_its_bottom() -> None:
    """Logged extends Cached extends Spec: each expansion starts from the one above, written out."""
    logged = ("layer Logged extends Cached {\n  state { writes : bv[4] }\n"
              "  op count(v: vmid) by VM(v) { writes := writes + 1 }\n}\n")
    module = load_text(SPEC + CACHED + logged, "<test>")
    layer = module.layer("Logged")
    assert [f.name for f in layer.fields] == ["owner", "mem", "tlb", "writes"]
    assert {i.name for i in layer.invariants} == {"page0", "coherent"}
    assert {o.name for o in layer.ops} == {"donate", "peek", "reclaim", "vm_write", "tlb_fill", "count"}
    assert layer.op("tlb_fill") is not None and layer.op("tlb_fill").implements is not None  # type: ignore[union-attr]
    results = prove_modules([module], Options())
    assert [r.obligation.id for r in results if r.status is not Status.PROVED] == []
    assert {"Logged/R-STUTTER/count", "Logged/R-STEP/tlb_fill", "Cached/R-STUTTER/tlb_fill"} <= \
        {r.obligation.id for r in results}


KSERV_VIEW = "  observe KServ { owner[p] for p: pfn; mem[p] for p: pfn where owner[p] == KServ }\n"
assert KSERV_VIEW in WRITTEN

# Leaks written into an `extends` layer, each with the obligation that rejects it.
LEAKS = {
    # reclaim no longer flushes: a VM keeps writing a page it gave back
    "no-flush": ("Cached/INV/reclaim", lambda t: t.replace(
        "    if tlb[v].valid && tlb[v].page == p { tlb[v].valid := false }\n", "")),
    # a new field KServ reads back through a new (stutter) operation holds a VM's data
    "new-field-read-back": ("Cached/OC/last", lambda t: t.replace(
        TLB_STATE, TLB_STATE + "    buf : word\n").replace(
        "    mem[p] := x\n", "    mem[p] := x\n    buf := x\n").replace(
        "  op tlb_fill", "  op last() by KServ -> word { return buf }\n  op tlb_fill")),
    # KServ's restated view shows the new field: the abstraction hides what KServ sees below
    "new-field-observed": ("Cached/R-OBS/KServ", lambda t: t.replace(
        TLB_STATE, TLB_STATE + "    buf : word\n").replace(
        "    mem[p] := x\n", "    mem[p] := x\n    buf := x\n").replace(
        KSERV_VIEW, "").replace("  init {", KSERV_VIEW.replace(" }\n", "; buf }\n") + "  init {")),
    # a field carried over (identity abstraction) changed by a step the spec does not have
    "carried-field-scribbled": ("Cached/R-STUTTER/scribble", lambda t: t.replace(
        "  op tlb_fill", "  op scribble(p: pfn, x: word) by KServ { mem[p] := x }\n  op tlb_fill")),
    # an inherited invariant dropped (restated as an empty block; written out: left out): R-INV
    # still asks it of the abstract state
    "invariant-dropped": ("Cached/R-INV", lambda t: t.replace(
        COHERENT, COHERENT + "  invariant page0 {}\n") if "extends" in t else t.replace(
        "  invariant page0 { owner[0] == KServ }\n", "")),
}


def _split(tmp_path: Path, lower: str, spec_first: bool) -> list[ir.Module]:
    (tmp_path / "spec.mv").write_text(SPEC)
    (tmp_path / "cached.mv").write_text('import "spec.mv"\n' + lower)
    files = ["spec.mv", "cached.mv"] if spec_first else ["cached.mv", "spec.mv"]
    return [load_file(tmp_path / f, {}) for f in files]


@pytest.mark.parametrize("spec_first", [True, False], ids=["spec first", "importer first"])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_leak_in_an_extends_layer_is_rejected_by_its_obligation(leak: str, encoding: str, spec_first: bool,
                                                                   tmp_path: Path) -> None:
    expected, edit = LEAKS[leak]
    lower = edit(CACHED)
    assert lower != CACHED
    results = prove_modules(_split(tmp_path, lower, spec_first), Options(encoding=encoding))
    failed = {r.obligation.id for r in results if r.status is not Status.PROVED}
    assert expected in failed, (expected, failed)
    assert all(r.status is Status.FAILED for r in results if r.obligation.id == expected)
    if spec_first:  # the same leak written out is rejected by the same obligations (once per encoding)
        written = prove_modules([load_text(SPEC + edit(WRITTEN), "<test>")], Options(encoding=encoding))
        assert {r.obligation.id for r in written if r.status is not Status.PROVED} == failed


def test_the_secure_extends_layer_proves_in_both_file_orders(tmp_path: Path) -> None:
    for spec_first in (True, False):
        results = prove_modules(_split(tmp_path, CACHED, spec_first), Options())
        assert results and all(r.status is Status.PROVED for r in results)


# A layer that replaces `mem` by per-page records: what of Spec mentions `mem` must be restated.
PACKED = """\
layer Packed extends Spec via packed {
  state { cell : map[pfn] -> record { data: word, dirty: bool } }
  abstraction { mem[p: pfn] = cell[p].data }
  init { forall p: pfn. cell[p].data == 0 }
}
"""


def _diagnostics(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    with pytest.raises(DiagnosticError) as info:
        load_text(text, "<test>")
    return [(d.code, d.message, tuple(d.notes)) for d in info.value.diagnostics]


def test_the_parts_that_mention_a_replaced_field_are_one_error_naming_each() -> None:
    [(code, message, notes)] = _diagnostics(SPEC + PACKED)
    assert code == "inherit"
    assert message == ("Packed extends Spec, but 6 part(s) of Spec mention a field Packed replaces (its "
                       "abstraction defines it): restate them in Packed")
    assert [re.sub(r" \(at <test>:\d+:\d+\)", "", n) for n in notes] == [
        "the observation of `KServ` mentions `mem`: restate `observe KServ`",
        "the observation of `VM` mentions `mem`: restate `observe VM`",
        "operation `donate` mentions `mem`: restate `op donate`",
        "operation `reclaim` mentions `mem`: restate `op reclaim`",
        "operation `vm_write` mentions `mem`: restate `op vm_write`",
        "operation `peek` mentions `mem`: restate `op peek`"]


def test_the_errors_of_the_layers_own_text_are_reported_beside_the_inherit_error() -> None:
    """L's own abstraction, init, invariants, views and operations are checked over what does
    carry over, so their errors come with the inherit error, not one fix later; each once."""
    own = PACKED.replace("mem[p: pfn] = cell[p].data", "mem[p: pfn] = cell[p].data; zz = 0") \
                .replace("cell[p].data == 0 }", "cell[p].dat == 0 }\n  invariant mine { owner[0] == 3 }\n"
                         "  op tidy(p: pfn) by KServ { cell[p].dirty := 1 }")
    found = _diagnostics(SPEC + own)
    assert [(code, message) for code, message, _ in found[1:]] == [
        ("type-mismatch", "record { data: bv[4], dirty: bool } has no field `dat`"),
        ("type-mismatch", "expected principal, found an integer literal"),
        ("type-mismatch", "expected bool, found an integer literal"),
        ("unknown-name", "unknown field of layer Spec `zz`"),
    ], found
    assert found[0][0] == "inherit" and len(found[0][2]) == 6
    # a layer that refines the broken one is not checked (nothing to refine): no more errors
    below = "layer Below extends Packed via below {\n  state { extra : bool }\n}\n"
    assert _diagnostics(SPEC + own + below) == found


def test_an_invariant_that_mentions_a_replaced_field_must_be_restated() -> None:
    owners = PACKED.replace("mem[p: pfn] = cell[p].data", "mem[p: pfn] = cell[p].data; owner[p: pfn] = KServ") \
                   .replace("cell : map", "own : map[pfn] -> principal\n          cell : map")
    [(_, message, notes)] = _diagnostics(SPEC + owners)
    assert "invariant `page0`" in " ".join(notes) and "restate `invariant page0 { ... }` (an empty block drops it)" in \
        " ".join(notes)
    unnamed = SPEC.replace("invariant page0 {", "invariant {")
    [(_, _, notes)] = _diagnostics(unnamed + owners)
    assert any(n.startswith("an unnamed invariant (at <test>:") and "name it in Spec, and restate it in Packed" in n
               for n in notes), notes


PACKED_RESTATED = PACKED.replace("  init {", """\
  observe KServ { owner[p] for p: pfn; cell[p].data for p: pfn where owner[p] == KServ }
  observe VM(v) { owner[p] == VM(v) for p: pfn; cell[p].data for p: pfn where owner[p] == VM(v) }
  op donate(v: vmid, p: pfn) by KServ -> bool {
    check p != 0 && owner[p] == KServ else return false
    owner[p] := VM(v)
    cell[p].data := 0
    return true
  }
  op reclaim(v: vmid, p: pfn) by KServ -> bool {
    check owner[p] == VM(v) else return false
    cell[p].data := 0
    owner[p] := KServ
    return true
  }
  op vm_write(v: vmid, p: pfn, x: word) by VM(v) -> bool {
    check owner[p] == VM(v) else return false
    cell[p].data := x
    cell[p].dirty := true
    return true
  }
  op peek(p: pfn) by KServ -> word {
    if owner[p] == KServ { return cell[p].data }
    bind io = cell[p].data from owner[p]
    return cell[p].data
  }
  init {""")


def test_a_layer_that_restates_what_it_replaces_proves() -> None:
    module = load_text(SPEC + PACKED_RESTATED, "<test>")
    layer = module.layer("Packed")
    assert [f.name for f in layer.fields] == ["owner", "cell"]
    assert len(layer.init) == 2  # Spec's conjunct over `owner` carried over, then Packed's own
    results = prove_modules([module], Options())
    assert results and all(r.status is Status.PROVED for r in results), \
        [(r.obligation.id, r.status) for r in results if r.status is not Status.PROVED]


def test_an_init_conjunct_over_a_replaced_field_is_still_required_by_r_init() -> None:
    """Spec's conjunct `mem[p] == 0` is left out of Packed's init (it mentions the replaced
    `mem`); R-INIT still asks Packed's init to give it through the abstraction."""
    spec = SPEC.replace("init { forall p: pfn. owner[p] == KServ }",
                        "init { forall p: pfn. owner[p] == KServ; forall p: pfn. mem[p] == 0 }")
    ok = prove_modules([load_text(spec + PACKED_RESTATED, "<test>")], Options())
    assert [r.status for r in ok if r.obligation.id == "Packed/R-INIT"] == [Status.PROVED]
    weak = PACKED_RESTATED.replace("  init { forall p: pfn. cell[p].data == 0 }\n", "")
    assert weak != PACKED_RESTATED
    module = load_text(spec + weak, "<test>")
    assert len(module.layer("Packed").init) == 1
    failed = prove_modules([module], Options())
    assert [r.status for r in failed if r.obligation.id == "Packed/R-INIT"] == [Status.FAILED]


def test_the_cli_reports_an_inherit_error(tmp_path: Path) -> None:
    (tmp_path / "packed.mv").write_text(SPEC + PACKED)
    run = subprocess.run([sys.executable, "-m", "microverify", str(tmp_path / "packed.mv")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert re.fullmatch(r".*packed\.mv:\d+:1: error: Packed extends Spec, but 6 part\(s\) of Spec mention a "
                        r"field Packed replaces \(its abstraction defines it\): restate them in Packed \[inherit\]",
                        lines[0]), run.stderr
    assert lines[1].strip() == "layer Packed extends Spec via packed {" and lines[2].strip().startswith("^")


def test_an_error_in_the_extended_layer_is_reported_once_there() -> None:
    """Cached would inherit `peek` with its error; it is skipped, not checked again."""
    broken = SPEC.replace("    let x = read io\n", "    let x = read nope\n")
    alone = _diagnostics(broken)
    assert any("`nope`" in message for _, message, _ in alone)
    assert _diagnostics(broken + CACHED) == alone


def test_extending_an_unknown_layer_is_an_error() -> None:
    [(code, message, _)] = _diagnostics(SPEC + CACHED.replace("extends Spec", "extends Spce"))
    assert code == "unknown-name" and "`Spce`" in message


def test_an_operation_is_never_dropped_by_implementing_another_under_its_name() -> None:
    """Cached's `reclaim` implements Spec's `donate`: Spec's `reclaim`, implemented by nothing,
    would carry over beside it, so the name clash is an error, not a silent removal."""
    renamed = CACHED.replace("  op reclaim(v: vmid, p: pfn) by KServ -> bool {",
                             "  op reclaim(v: vmid, p: pfn) by KServ -> bool implements donate(v, p) {")
    [(code, message, notes)] = _diagnostics(SPEC + renamed)
    assert code == "duplicate" and "Cached's operation `reclaim` implements `donate`" in message
    assert notes and notes[0].startswith("Spec's `reclaim` is at <test>:")


def test_an_init_predicate_that_is_a_constant_carries_over() -> None:
    spec = "const READY: bool = true\n" + SPEC.replace("init { forall p: pfn. owner[p] == KServ }",
                                                      "init { forall p: pfn. owner[p] == KServ; READY }")
    layer = load_text(spec + CACHED, "<test>").layer("Cached")
    assert len(layer.init) == 3  # both of Spec's predicates, then Cached's own


def test_a_new_field_named_like_a_parameter_of_a_kept_operation_is_one_error_per_field() -> None:
    clash = CACHED.replace(TLB_STATE, TLB_STATE + "    v : vmid\n")
    [(code, message, notes)] = _diagnostics(SPEC + clash)
    assert code == "duplicate" and message.startswith("Cached's new field `v` is also a parameter or `let` of "
                                                      "Spec's operation(s) `donate`, ")
    assert len(notes) == 1 + message.count("`, `")


def test_a_kept_field_redeclared_at_another_type_is_one_error_at_the_declaration() -> None:
    retyped = CACHED.replace(TLB_STATE, TLB_STATE + "    mem : map[pfn] -> bv[3]\n")
    [(code, message, _)] = _diagnostics(SPEC + retyped)
    assert code == "type-mismatch" and message.startswith("`mem` is a field of Spec of type map[bv[2]] -> bv[4], "
                                                          "which Cached keeps")


def test_an_empty_block_that_drops_no_invariant_is_an_error_with_a_suggestion() -> None:
    [(code, message, notes)] = _diagnostics(SPEC + CACHED.replace(COHERENT, COHERENT + "  invariant pgae0 {}\n"))
    assert code == "unknown-name" and "`invariant pgae0 {}` drops no invariant of Spec" in message
    assert notes == ("did you mean `page0`?",)


def test_a_long_chain_declared_bottom_first_is_checked_without_recursion() -> None:
    """Layers are ordered upper first without recursion (dsl/refines.order_layers): 3,000
    layers, each refining the next one declared after it."""
    n = 3000
    text = "principal KServ\n" + "".join(
        f"layer L{i} refines L{i - 1} {{ abstraction {{ x = x }} state {{ x: bv[1] }} }}\n" for i in range(n - 1, 0, -1))
    module = load_text(text + "layer L0 { state { x: bv[1] } }\n", "<test>")
    assert len(module.layers) == n


def test_a_broken_constant_in_the_extended_layer_is_one_error_and_no_crash() -> None:
    """A predicate of Spec that uses a broken constant fails without an error of its own (the
    constant's is reported once); Cached, which would inherit it, is skipped, not expanded."""
    broken = "const START: principal = Nobody\n" + SPEC.replace(
        "init { forall p: pfn. owner[p] == KServ }", "init { forall p: pfn. owner[p] == START }")
    diagnostics = _diagnostics(broken + CACHED)
    assert [code for code, _, _ in diagnostics] == ["unknown-name"] and "`Nobody`" in diagnostics[0][1]
