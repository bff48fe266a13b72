"""Leaky one-change variants of the shipped hypervisor models (tests/mutants/<system>/): each
must be rejected by the obligation its `// expect: KIND op` header names, with a counterexample
(or VACUOUS for VAC)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, expectation, ids, prove_path
from microverify.prover.solve import Status

MUTANTS = sorted(p for p in (ROOT / "tests" / "mutants").rglob("*.mv")
                 if p.read_text().startswith("// expect:"))


@pytest.mark.parametrize("path", MUTANTS, ids=[f"{p.parent.name}/{p.stem}" for p in MUTANTS] or ids(MUTANTS))
def test_mutant_is_rejected_by_the_expected_obligation(path: Path) -> None:
    kind, op = expectation(path)[0].split()
    results = prove_path(path)
    hits = [r for r in results if r.obligation.kind.value == kind and (r.obligation.op or "-") == op]
    assert hits, f"no {kind} obligation for {op}"
    assert any(r.status is Status.FAILED and r.counterexample is not None
               or (kind == "VAC" and r.status is Status.VACUOUS) for r in hits), \
        [(r.obligation.id, r.status.value, r.detail) for r in results if r.status is not Status.PROVED]
