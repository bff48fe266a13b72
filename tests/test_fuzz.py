"""Robustness: random and mutated source always gives diagnostics, never a traceback."""

from __future__ import annotations

from pathlib import Path

import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microverify.dsl.diagnostics import CODES, DiagnosticError
from microverify.dsl.limits import ensure_recursion_limit
from microverify.dsl.loader import load_text
from microverify.prover.obligations import generate
from microverify.prover.solve import formulate

# load_text raises it; raised up front, hypothesis does not see it change during a test
ensure_recursion_limit()

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


# Shapes found by fuzzing (issue 13): deep nesting, long chains, huge literals and widths, deep
# types. Each is checked by the front end alone, with a short fixed budget.
HOST = """principal KServ
principal VM(v: bv[2])
type st = enum { A, B }
layer L {
  state { x : bv[8]; b : bool; m : map[bv[2]] -> bv[8]; r : record { a: bv[8] } }
  invariant { PRED }
  observe KServ { x }
  op f() by KServ { x := x }
}
"""

# (prefix, suffix) around a bool expression, or around a bv[8] one (then compared with 0)
BOOL_WRAPPERS = [("!", ""), ("(", ")"), ("b && ", ""), ("", " || b"), ("b ==> ", ""), ("if b then ", " else b"),
                 ("forall i: bv[2]. ", ""), ("exists i: st. ", ""), ("(", " <==> b)")]
BV_WRAPPERS = [("-", ""), ("~", ""), ("(", ")"), ("x + ", ""), ("", " - x"), ("m[trunc(", ", 2)]"),
               ("zext(trunc(", ", 4), 8)"), ("(", " * x)"), ("if b then ", " else x"), ("m[", "[0]]")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(BOOL_WRAPPERS), max_size=400),
       st.lists(st.sampled_from(BV_WRAPPERS), max_size=400))
def test_deep_nesting(bools: list[tuple[str, str]], bvs: list[tuple[str, str]]) -> None:
    e = "x"
    for pre, post in bvs:
        e = pre + e + post
    p = f"{e} == 0"
    for pre, post in bools:
        p = pre + p + post
    front_end(HOST.replace("PRED", p))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["&&", "||", "==>", "<==>", "+", "-", "*", "&", "|", "^", "/", "<<"]),
       st.integers(1, 1500), st.booleans())
def test_long_operator_chains(op: str, n: int, parens: bool) -> None:
    logic = op in ("&&", "||", "==>", "<==>")
    operand = "b" if logic else "x"
    chain = f" {op} ".join([f"({operand})" if parens else operand] * n)
    front_end(HOST.replace("PRED", chain if logic else f"{chain} == 0"))


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(0, 2**5000).map(hex),
                 st.text("0123456789abcdefABCDEF_", max_size=2000).map(lambda t: "0x" + t),
                 st.text("0123456789_", min_size=1, max_size=6000).filter(lambda t: t[0] != "_")),
       st.sampled_from(["x == LIT", "zext(x, LIT) == 0", "sext(x, LIT) == 0", "trunc(x, LIT) == 0",
                        "m[LIT] == 0", "VM(LIT) == VM(0)"]))
def test_huge_literals_and_widths(literal: str, where: str) -> None:
    front_end(HOST.replace("PRED", where.replace("LIT", literal)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["map[bv[1]] -> ", "record { a: ", "record { a: bool, b: ", "alias"]),
                max_size=400),
       st.sampled_from(["bool", "bv[8]", "bv[4096]", "bv[4097]", "bv[" + "9" * 5000 + "]", "st"]))
def test_deep_types(wrappers: list[str], leaf: str) -> None:
    aliases = []
    t = leaf
    for w in wrappers:
        if w == "alias":
            aliases.append(f"type t{len(aliases)} = {t}")
            t = f"t{len(aliases) - 1}"
        else:
            t = w + t + (" }" if w.startswith("record") else "")
    front_end("\n".join(aliases) + "\n" + HOST.replace("r : record { a: bv[8] } }", f"r : {t} }}")
              .replace("PRED", "b"))
