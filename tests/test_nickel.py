"""Nickel's and Rushby's examples written in the language (tests/cases/nickel/): Nickel's
taint-tracking kernel and process spawn with their broken variants, the transmitter of its
ARINC 653 kernel with Nickel's policy (flows_to, flows_from left uninterpreted), and Rushby's
downgrader H -> D -> L. The secure ones prove; each broken one is rejected by the obligation
its `// expect:` header names (the unwinding condition Nickel's own check reports), and by no
obligation of another kind or operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_replayed, cases, expectation, ids, prove_path
from microverify.prover.verdict import ENCODINGS, Options, Status

EXAMPLES = cases("nickel")


def test_every_example_and_broken_variant_is_here() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"taint", "spawn", "arinc_transmitter", "downgrader"} <= names
    assert len([p for p in EXAMPLES if expectation(p)[0] != "PROVED"]) >= 7


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("path", EXAMPLES, ids=ids(EXAMPLES))
def test_an_example_proves_or_fails_as_nickel_says(path: Path, encoding: str) -> None:
    expect = expectation(path)[0]
    # the quantified encoding at a tenth of the rlimit: where it gives up on the transmitter's 64-bit
    # ports it does so at the rlimit, and only a FAILED or PROVED is asked of it
    results = prove_path(path, Options(encoding=encoding, rlimit=Options.rlimit // (10 if encoding == "quantified" else 1)))
    assert results
    wrong = [(r.obligation.id, r.status.value) for r in results if r.status in (Status.VACUOUS, Status.ERROR)]
    assert wrong == []
    if expect == "PROVED":
        # the quantified encoding may give up on the transmitter's 64-bit ports; it may never
        # find a counterexample to a secure model
        allowed = {Status.PROVED} if encoding == "qf" else {Status.PROVED, Status.UNKNOWN}
        assert [(r.obligation.id, r.status.value) for r in results if r.status not in allowed] == []
        return
    kind, op = expect.split()
    mine = [r for r in results if r.obligation.kind.value == kind and r.obligation.op == op
            and r.status is not Status.PROVED]
    assert mine, f"{kind} {op} is proved"
    assert any(r.status is Status.FAILED and r.counterexample is not None for r in mine)
    others = [r.obligation.id for r in results if r.status is Status.FAILED and r not in mine]
    assert others == []
    assert_replayed(results, too_large_ok=True)
