"""`concat` and `extract` end to end: a model that is secure only because of which bits an
observer sees proves, and the variant that moves one bit across the boundary fails local
respect with a counterexample the reference interpreter confirms, in both encodings."""

from __future__ import annotations

import pytest

from conftest import assert_replayed, prove_text
from microverify.prover.verdict import ENCODINGS, Options, Status

# A observes the high nibble of `reg` and the entries of `pt` at pages (reg[7:6], ONE); B writes
# the low nibble of `reg` and the entry at page (0, TWO), which A never observes.
SECURE = """\
principal A
principal B
const ONE: bv[2] = 1
const TWO: bv[2] = 2
const ZERO: bv[2] = 0
layer L {
  state { reg : bv[8], pt : map[bv[4]] -> bv[8] }
  observe A { extract(reg, 7, 4); pt[concat(extract(reg, 7, 6), ONE)] }
  op set_low(x: bv[4]) by B { reg := concat(extract(reg, 7, 4), x) }
  op map_b(v: bv[8]) by B { pt[concat(ZERO, TWO)] := v }
}
"""
LEAKY_BITS = SECURE.replace("concat(extract(reg, 7, 4), x)", "concat(extract(reg, 7, 5), x, extract(reg, 0, 0))")
LEAKY_PAGE = SECURE.replace("pt[concat(ZERO, TWO)]", "pt[concat(TWO, ONE)]")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_secure_model_proves(encoding: str) -> None:
    results = prove_text(SECURE, Options(encoding=encoding))
    assert results and all(r.status is Status.PROVED for r in results), \
        [(r.obligation.id, r.status.value, r.detail) for r in results if r.status is not Status.PROVED]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_writing_one_observed_bit_fails_local_respect(encoding: str) -> None:
    """set_low shifted by one bit: bit 4, which A observes, now takes B's value."""
    results = prove_text(LEAKY_BITS, Options(encoding=encoding))
    failed = {r.obligation.id for r in results if r.status is Status.FAILED}
    assert "L/LR/set_low/A" in failed, [(r.obligation.id, r.status.value) for r in results]
    assert all(r.status is Status.PROVED for r in results if "set_low" not in r.obligation.id)
    assert_replayed(results)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_writing_an_observed_page_fails_local_respect(encoding: str) -> None:
    """map_b writes page (2, 1), which A observes whenever reg's top bits are 2."""
    results = prove_text(LEAKY_PAGE, Options(encoding=encoding))
    failed = {r.obligation.id for r in results if r.status is Status.FAILED}
    assert "L/LR/map_b/A" in failed, [(r.obligation.id, r.status.value) for r in results]
    assert_replayed(results)
