"""Configuration constants (`const C: T` without a value, docs/language.md §3.2): one symbol per
obligation, shared by both runs and every layer; the theorem holds for every value. A leak that
needs some configuration fails with a counterexample that shows it, confirmed by the reference
interpreter; the constants cannot be written; a refinement may not read a different one."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_replayed
from microverify.dsl import ir
from microverify.dsl.defines import parse_defines
from microverify.dsl.diagnostics import DiagnosticError
from microverify.dsl.loader import load_file, load_text
from microverify.prover.driver import obligations, prove_modules
from microverify.prover.report import theorems
from microverify.prover.verdict import ENCODINGS, Options, Status

# A partition kernel's configuration: which partitions may write their mailbox, and a bound.
CONFIG = """\
type part = bv[2]
type word = bv[4]
principal P(p: part)
policy isolation
const may_write: map[part] -> bool
const LIMIT: word
"""
SPEC = CONFIG + """\
layer K {
  state { box : map[part] -> word }
  init { forall p: part. box[p] == 0 }
  invariant bounded { forall p: part. box[p] <= LIMIT }
  observe P(p) { box[p] }
  op write(p: part, x: word) by P(p) -> bool {
    check may_write[p] && x <= LIMIT else return false
    box[p] := x
    return true
  }
}
"""
# The same kernel with the check split in two layers: the lower one keeps a cached copy of the
# permission, which must agree with the configuration (the invariant), and reads it instead.
LOWER = """\
layer KC extends K {
  state { allowed : map[part] -> bool }
  init { forall p: part. allowed[p] == may_write[p] }
  invariant cached { forall p: part. allowed[p] == may_write[p] }
  op write(p: part, x: word) by P(p) -> bool {
    check allowed[p] && x <= LIMIT else return false
    box[p] := x
    return true
  }
}
"""


def _failed(results: list) -> set[str]:  # type: ignore[type-arg]
    return {r.obligation.id for r in results if r.status is not Status.PROVED}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_configured_stack_proves_for_every_configuration(encoding: str) -> None:
    module = load_text(SPEC + LOWER, "<test>")
    assert [c.name for c in module.configs] == ["may_write", "LIMIT"]
    results = prove_modules([module], Options(encoding=encoding))
    assert results and _failed(results) == set()
    [theorem] = theorems([module], results, [ob for _, ob in obligations([module])])
    assert ("via KC ⊑ K, for every value of the configuration constants may_write, LIMIT (the same in "
            "both runs and every layer):") in theorem


# Leaks, each with the obligation that rejects it: the counterexample names the configuration.
LEAKS = {
    # a permitted write lands in the next partition's mailbox
    "writes-next-box": ("K/LR/write/P", SPEC.replace("    box[p] := x\n", "    box[p + 1] := x\n")),
    # the bound is checked with the wrong comparison: the invariant breaks
    "bound-off-by-one": ("K/INV/write", SPEC.replace("x <= LIMIT else", "x <= LIMIT + 1 else")),
    # the lower layer checks another partition's permission: R-STEP against K's write
    "lower-reads-wrong-entry": ("KC/R-STEP/write", SPEC + LOWER.replace("check allowed[p] &&", "check allowed[0] &&")),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_leak_fails_with_the_configuration_in_its_counterexample(leak: str, encoding: str) -> None:
    expected, text = LEAKS[leak]
    results = prove_modules([load_text(text, "<test>")], Options(encoding=encoding))
    [r] = [r for r in results if r.obligation.id == expected]
    assert r.status is Status.FAILED and r.counterexample is not None, (r.status, r.detail)
    assert any(c.startswith(("may_write[", "LIMIT = ")) for c in r.counterexample.configuration), \
        r.counterexample.configuration
    assert_replayed(results)


def test_both_runs_and_both_layers_read_one_value() -> None:
    """If each run (or layer) had a configuration of its own, `write` would leak its permission
    check's outcome (LR fails for a partition whose permission differs between the runs) and
    R-STEP would fail (the layers check different permissions); neither happens."""
    results = prove_modules([load_text(SPEC + LOWER, "<test>")], Options())
    assert {"K/LR/write/P", "K/WSC/write/P", "KC/R-STEP/write", "KC/R-INIT"} <= \
        {r.obligation.id for r in results if r.status is Status.PROVED}


def test_the_configuration_is_universal_not_chosen() -> None:
    """A model correct for some configurations only (the bound must be below 8) fails: the
    obligations hold for every value, and the counterexample picks one where it breaks."""
    text = SPEC.replace("  invariant bounded { forall p: part. box[p] <= LIMIT }",
                        "  invariant bounded { forall p: part. box[p] < 8 }")
    results = prove_modules([load_text(text, "<test>")], Options())
    [r] = [r for r in results if r.obligation.id == "K/INV/write"]
    assert r.status is Status.FAILED and r.counterexample is not None
    limit = [c for c in r.counterexample.configuration if c.startswith("LIMIT = ")]
    assert limit and int(limit[0].removeprefix("LIMIT = ")) >= 8, r.counterexample.configuration
    assert_replayed(results)


def test_init_may_restrict_the_configuration_but_not_to_nothing() -> None:
    restricted = SPEC.replace("  init { forall p: part. box[p] == 0 }",
                              "  init { forall p: part. box[p] == 0; LIMIT > 2 }")
    assert _failed(prove_modules([load_text(restricted, "<test>")], Options())) == set()
    impossible = SPEC.replace("  init { forall p: part. box[p] == 0 }",
                              "  init { forall p: part. box[p] == 0; LIMIT > LIMIT }")
    results = prove_modules([load_text(impossible, "<test>")], Options())
    assert [r.status for r in results if r.obligation.id == "K/INIT"] == [Status.VACUOUS]


def test_a_definition_gives_a_configuration_constant_its_value(tmp_path: Path) -> None:
    (tmp_path / "k.mv").write_text(SPEC)
    module = load_file(tmp_path / "k.mv", {}, parse_defines(("LIMIT=5",)))
    assert [c.name for c in module.configs] == ["may_write"]
    results = prove_modules([module], Options())
    assert _failed(results) == set()
    [theorem] = theorems([module], results, [ob for _, ob in obligations([module])])
    assert "K (with -D LIMIT=5)" in theorem and "configuration constants may_write (" in theorem


@pytest.mark.parametrize("first", ["config first", "importer first"])
def test_a_configuration_constant_declared_in_an_imported_file(first: str, tmp_path: Path) -> None:
    (tmp_path / "spec.mv").write_text(SPEC)
    (tmp_path / "lower.mv").write_text('import "spec.mv"\n' + LOWER.replace("check allowed[p] &&", "check allowed[0] &&"))
    files = ["spec.mv", "lower.mv"] if first == "config first" else ["lower.mv", "spec.mv"]
    results = prove_modules([load_file(tmp_path / f, {}) for f in files], Options())
    assert "KC/R-STEP/write" in _failed(results)
    assert_replayed(results)


def test_a_configuration_constant_cannot_be_assigned() -> None:
    with pytest.raises(DiagnosticError) as info:
        load_text(SPEC.replace("    box[p] := x\n", "    box[p] := x\n    LIMIT := x\n"), "<test>")
    [d] = info.value.diagnostics
    assert d.code == "assign-not-state" and "`LIMIT`" in d.message


def test_the_ir_reads_a_configuration_constant_by_name() -> None:
    module = load_text(SPEC, "<test>")
    write = module.layer("K").op("write")
    assert write is not None
    found: list[ir.Ref] = []
    stack: list[object] = [s for s in ir.statements(write.body)]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Ref) and node.kind == "config":
            found.append(node)
        for attr in ("cond", "left", "right", "base", "index", "operand", "value"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int)):
                stack.append(child)
    assert sorted(r.name for r in found) == ["LIMIT", "may_write"]
