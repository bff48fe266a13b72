"""Leaky one-change variants of the shipped hypervisor models (tests/mutants/<system>/): each
must be rejected by the obligation its `// expect: KIND op` header names, with a counterexample
(or VACUOUS for VAC).

Only the obligations the header names are solved: each obligation is solved on its own (one Z3
context each), so the others cannot change the verdict, and a full run of every mutant would
take most of the suite's time budget. `prove FILE` on a mutant runs all of them."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from conftest import ROOT, assert_replayed, expectation, ids, load
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.solve import ENCODINGS, Options, Status

MUTANTS = sorted(p for p in (ROOT / "tests" / "mutants").rglob("*.mv")
                 if p.read_text().startswith("// expect:"))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("path", MUTANTS, ids=[f"{p.parent.name}/{p.stem}" for p in MUTANTS] or ids(MUTANTS))
def test_mutant_is_rejected_by_the_expected_obligation(path: Path, encoding: str) -> None:
    """In both encodings (prover/qf.py): the quantifier-free one must not lose a counterexample."""
    kind, op = expectation(path)[0].split()
    pairs = [(m, ob) for m, ob in obligations([load(path)])
             if ob.kind.value == kind and (ob.op or "-") == op]
    assert pairs, f"no {kind} obligation for {op}"
    results = prove_pairs(pairs, Options(encoding=encoding))
    assert any(r.status is Status.FAILED and r.counterexample is not None
               or (kind == "VAC" and r.status is Status.VACUOUS) for r in results), \
        [(r.obligation.id, r.status.value, r.detail) for r in results]
    assert_replayed(results)


@pytest.mark.parametrize("path", MUTANTS, ids=[f"{p.parent.name}/{p.stem}" for p in MUTANTS] or ids(MUTANTS))
def test_mutant_is_a_small_change_of_a_shipped_proof(path: Path) -> None:
    """A mutant is a copy of a file in proofs/<system>/ with one change: this keeps the copies
    from drifting when the shipped model is edited (an old copy would test an old model)."""
    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("import ")]
    mutant = lines("\n".join(path.read_text().splitlines()[2:]))  # less the two header lines
    changed = min(sum(1 for d in difflib.ndiff(lines(shipped.read_text()), mutant) if d[:1] in "+-")
                  for shipped in (ROOT / "proofs" / path.parent.name).glob("*.mv"))
    assert changed <= 6, f"{path.name} differs from every file in proofs/{path.parent.name} in {changed} lines"
