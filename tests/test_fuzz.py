"""Robustness: random and mutated source always gives diagnostics, never a traceback."""

from __future__ import annotations

from pathlib import Path

import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microverify.dsl.diagnostics import CODES, DiagnosticError
from microverify.dsl.loader import load_text
from microverify.prover.obligations import generate
from microverify.prover.solve import formulate

SEED = (Path(__file__).parent / "cases" / "kinds" / "dr_only.mv").read_text() + """
type st = enum { A, B }
oracle o : record { a: bv[4], b: st } from KServ
layer M {
  state { m : map[bv[2]] -> record { x: bv[4], s: st }; p : principal }
  invariant { forall i: bv[2]. m[i].x < 9 }
  observe KServ { m[i].x for i: bv[2] where m[i].s == A }
  op f(i: bv[2]) by KServ -> bv[4] {
    let r = read o
    check r.a < 9 else return 0
    m[i].x := r.a
    if r.b == B { m[i].s := B } else { p := VM(0) }
    return zext(trunc(m[i].x, 2), 4)
  }
}
"""

TOKENS = ["layer", "op", "state", "observe", "principal", "type", "oracle", "policy", "init",
          "invariant", "by", "let", "check", "else", "return", "halt", "if", "then", "read", "for",
          "where", "forall", "exists", "map", "bv", "bool", "enum", "record", "{", "}", "(", ")", "[",
          "]", ":", ";", ",", ".", ":=", "=", "==", "!=", "<", "<=", "->", "+", "-", "*", "&&", "||",
          "!", "==>", "x", "y", "KServ", "VM", "0", "1", "255", "0x10", "8", "\n", " "]


def front_end(text: str) -> None:
    """Load; if the text is accepted, also lower every obligation (without solving)."""
    try:
        module = load_text(text, "fuzz.mv")
    except DiagnosticError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.code in CODES and d.message
            assert d.span.file == "fuzz.mv"
        return
    for ob in generate(module):
        formulate(module, ob, z3.Context())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_random_token_soup(text: str) -> None:
    front_end(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SEED)), st.integers(0, 6), st.text(max_size=4)),
                min_size=1, max_size=4))
def test_mutated_valid_source(edits: list[tuple[int, int, str]]) -> None:
    text = SEED
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    front_end(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(SEED.split()), min_size=1, max_size=3), st.integers(0, 200))
def test_seed_with_tokens_removed(words: list[str], where: int) -> None:
    tokens = SEED.split(" ")
    for w in words:
        if w in tokens[where % len(tokens):]:
            tokens.remove(w)
    front_end(" ".join(tokens))


def test_seed_itself_is_valid() -> None:
    module = load_text(SEED, "fuzz.mv")
    assert len(module.layers) == 2
