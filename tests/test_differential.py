"""Differential soundness (issue 13): generated models are proved in both encodings, and every
theorem `prove` prints is checked exhaustively with the reference interpreter.

The checker (tests/exhaustive.py) is itself tested here: it must refute the attacks of the
shipped `kinds` cases when handed their theorem (whatever `prove` says), and pass secure
models. The generator (tests/modelgen.py) must produce texts that load, cover every construct,
and are the same for the same seed. The longer campaign is bench/differential.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings

from conftest import CASES, SECURE
from exhaustive import ENCODINGS, Bounds, Checker, check_theorem, compare, differential
from microverify.dsl import ir
from microverify.dsl.limits import ensure_recursion_limit
from microverify.dsl.loader import load_text
from microverify.layers.values import Principal
from microverify.prover.verdict import Status
from modelgen import generate, models, random_model

ensure_recursion_limit()  # load_text raises it; raised up front, hypothesis does not see it change

SMALL = SECURE.replace("bv[8]", "bv[2]")


def narrowed(path: Path, widths: dict[str, str]) -> str:
    text = path.read_text()
    for wide, narrow in widths.items():
        text = text.replace(wide, narrow)
    return text


# ---------------------------------------------------------------- the campaign, in the suite

PASSED: set[str] = set()  # hypothesis often renders a text again: prove each once (a failing one is not kept)


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(models())
def test_generated_models_are_sound(text: str) -> None:
    if text in PASSED:
        event("category: a text already checked")
        return
    verdict = differential(text)
    event(f"category: {verdict.category}")
    assert not verdict.disagreements, verdict.report()
    assert not verdict.refuted, verdict.report()
    PASSED.add(text)


AGREE = {"three layers that bind": "agree:112", "implements with state arguments": "agree:17",
         "a table and an oracle": "agree:30"}


@pytest.mark.parametrize("seed", list(AGREE.values()), ids=list(AGREE))
def test_encodings_agree_on_generated_models(seed: str) -> None:
    verdict = differential(random_model(seed))
    a, b = (verdict.statuses[enc] for enc in ENCODINGS)
    assert a and set(a) == set(b)
    decided = [ob for ob in a if Status.UNKNOWN not in (a[ob], b[ob])]
    assert decided and all(a[ob] is b[ob] for ob in decided), verdict.report()
    assert verdict.theorems[ENCODINGS[0]] == verdict.theorems[ENCODINGS[1]]


# ---------------------------------------------------------------- the checker has teeth

ATTACKS = [  # (case, narrowed widths, bottom layer, what the refutation says)
    ("kinds/rbind_only.mv", {"bv[3]": "bv[1]", "bv[8]": "bv[1]"}, "Frames", "`peek` (by KServ) returns"),
    ("kinds/rargs_only.mv", {"bv[4]": "bv[1]"}, "Impl", "KServ tells the states apart at Impl: `box`"),
    ("kinds/rargs_dom_only.mv", {"bv[4]": "bv[1]"}, "Impl", "tells the states apart at Impl: `out[v]`"),
    ("kinds/oc_only.mv", {"bv[8]": "bv[1]"}, "L", "`peek` (by KServ) returns"),
    ("kinds/wsc_only.mv", {"bv[8]": "bv[1]"}, "L", "KServ tells the states apart at L: `public`"),
    ("kinds/roracle_bind_chain_only.mv", {"bv[4]": "bv[1]", "bv[8]": "bv[1]"}, "Low", "`peek` (by KServ) returns"),
]


@pytest.mark.parametrize("case, widths, layer, what", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_the_checker_refutes_a_known_attack(case: str, widths: dict[str, str], layer: str, what: str) -> None:
    outcome = check_theorem(load_text(narrowed(CASES / case, widths), case), layer)
    assert outcome.status == "refuted" and outcome.refutation is not None
    assert what in outcome.refutation.what, outcome.refutation.render()


LEAKS = {  # SMALL with one operation changed: (replacement, what the refutation says)
    "output": ("op write(v: bv[1], x: bv[2]) by VM(v) -> bv[2] { return secret[~v] }", "`write` (by VM("),
    "view": ("op write(v: bv[1], x: bv[2]) by VM(v) { secret[v] := secret[~v] + x }", "tells the states apart"),
    "later": ("op write(v: bv[1], x: bv[2]) by VM(v) { if secret[~v] == 1 { secret[~v] := x } else { secret[v] := x } }",
              "tells the states apart"),
}


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_the_checker_refutes_a_state_leak(kind: str) -> None:
    replacement, what = LEAKS[kind]
    text = SMALL.replace("op write(v: bv[1], x: bv[2]) by VM(v) { secret[v] := x }", replacement)
    assert text != SMALL
    outcome = check_theorem(load_text(text, "leak.mv"), "L")
    assert outcome.status == "refuted" and outcome.refutation is not None
    assert what in outcome.refutation.what
    assert outcome.refutation.steps and outcome.refutation.observer.startswith("VM(")


def test_the_checker_refutes_a_broken_invariant() -> None:
    text = SMALL.replace("observe VM(v) { secret[v] }",
                         "init { secret[0] == 0 }\n  invariant low { secret[0] != 3 }\n  observe VM(v) { secret[v] }")
    outcome = check_theorem(load_text(text, "inv.mv"), "L")
    assert outcome.status == "refuted" and outcome.refutation is not None
    assert "breaks invariant low of L" in outcome.refutation.what
    assert outcome.refutation.steps == ("write(v=0, x=3)",)


def test_a_same_action_leak_is_not_a_two_run_violation() -> None:
    """`secret[0] := x` by VM(1) fails LR, but both runs perform it alike: the printed theorem
    (two runs, the same operations) still holds, and the checker must not refute it."""
    text = SMALL.replace("secret[v] := x", "secret[0] := x")
    assert check_theorem(load_text(text, "lr.mv"), "L").status == "checked"


SECURE_MODELS = [
    ("conftest-SECURE", SMALL, "L"),
    ("own_view", narrowed(CASES / "stacks" / "own_view.mv", {"bv[4]": "bv[1]"}), "Cpu"),
]


@pytest.mark.parametrize("name, text, layer", SECURE_MODELS, ids=[m[0] for m in SECURE_MODELS])
def test_the_checker_passes_a_secure_model(name: str, text: str, layer: str) -> None:
    outcome = check_theorem(load_text(text, name), layer)
    assert outcome.status == "checked", outcome.refutation.render() if outcome.refutation else outcome.detail
    assert outcome.states > 1 and outcome.pairs > 0 and outcome.steps > 0


def test_binds_from_outside_w_are_a_premise() -> None:
    """own_view's `exit` binds the VM's register from the VM: for the observer KServ, runs that
    bind different values there are outside the theorem (premise (B)), and are cut."""
    text = narrowed(CASES / "stacks" / "own_view.mv", {"bv[4]": "bv[1]"})
    outcome = check_theorem(load_text(text, "own_view.mv"), "Cpu")
    assert outcome.cuts > 0
    leaky = text.replace("bind exitval = reg[v] from VM(v)", "bind exitval = reg[v] from KServ")
    assert leaky != text
    refuted = check_theorem(load_text(leaky.replace("oracle exitval : word from VM", "oracle exitval : word from KServ"),
                                      "leaky.mv"), "Cpu")
    assert refuted.status == "refuted" and refuted.refutation is not None
    assert refuted.refutation.observer == "KServ"


def test_w_is_closed_under_flows() -> None:
    """Under {A -> B; B -> C}, C's theorem starts from runs that agree for B and A too: B's
    forwarding of `ab` is then no leak to C, and a layer where A's own choice reaches C is."""
    text = """principal A
principal B
principal C
policy { A -> B; B -> C }
layer Pipe {
  state { ab: bv[1]; bc: bv[1] }
  observe B { ab; bc }
  observe C { bc }
  op send(x: bv[1]) by A { ab := x }
  op forward() by B { bc := ab }
}
"""
    module = load_text(text, "pipe.mv")
    checker = Checker(module, "Pipe", Bounds())
    assert set(checker.closure(Principal("C"))) == {Principal("A"), Principal("B"), Principal("C")}
    assert checker.closure(Principal("A")) == [Principal("A")]
    assert check_theorem(module, "Pipe").status == "checked"
    hidden = text.replace("observe B { ab; bc }", "observe B { bc }")
    assert check_theorem(load_text(hidden, "pipe.mv"), "Pipe").status == "refuted"


def test_counters_outside_w_may_differ_initially() -> None:
    """The premise fixes only W's own counters: runs where VM(0) has read `o` once more than in
    the other must give KServ the same results, and `peek` does not."""
    text = """principal KServ
principal VM(v: bv[1])
oracle o : bv[1] from KServ
layer L {
  state { k : bv[1] }
  observe KServ { k }
  op peek() by KServ -> bv[1] { return trunc(counter(o, VM(0)), 1) }
}
"""
    outcome = check_theorem(load_text(text, "counter.mv"), "L")
    assert outcome.status == "refuted" and outcome.refutation is not None
    assert outcome.refutation.observer == "KServ" and outcome.refutation.steps == ("peek()",)
    assert "VM(0): 1" in outcome.refutation.t0 + outcome.refutation.s0
    fixed = text.replace("counter(o, VM(0))", "counter(o, KServ)")
    assert check_theorem(load_text(fixed, "counter.mv"), "L").status == "checked"


def test_a_layer_beyond_the_bounds_is_too_large_not_checked() -> None:
    outcome = check_theorem(load_text(SECURE, "wide.mv"), "L", Bounds(max_states=4096))
    assert outcome.status == "too-large" and "more than 4096 states" in outcome.detail


def test_a_theorem_with_no_initial_state_to_start_from_is_not_counted_as_checked() -> None:
    """The enumeration starts every counter at 0, so an `init` that fixes one leaves no state: the
    theorem was checked on nothing, and said "checked" (review)."""
    text = """type w = bv[1]
principal KServ
principal VM(v: bv[1])
oracle o : w from KServ
layer A {
  state { sec : map[bv[1]] -> w
          kb : w }
  init { counter(o, KServ) == %s }
  observe KServ { kb }
  observe VM(v) { sec[v] }
  op f() by KServ -> w {
    let x = read o
    kb := x
    return x
  }
  op g(v: bv[1], x: w) by VM(v) { sec[v] := x }
}
"""
    verdict = differential(text % "5")
    assert all(verdict.theorems.values()), verdict.statuses  # a theorem is printed for A
    [outcome] = verdict.outcomes
    assert outcome.status == "empty" and "nothing checked" in outcome.detail
    assert verdict.category == "unchecked"
    assert differential(text % "0").category == "checked"


def test_disagreements_are_proved_against_failed_or_vacuous() -> None:
    statuses = {ENCODINGS[0]: {"L/OC/f": Status.PROVED, "L/LR/f/VM": Status.PROVED, "L/VAC": Status.UNKNOWN},
                ENCODINGS[1]: {"L/OC/f": Status.FAILED, "L/LR/f/VM": Status.PROVED, "L/VAC": Status.PROVED}}
    disagree, unknown = compare(statuses)
    assert disagree == ["L/OC/f: PROVED (qf) vs FAILED (quantified)"] and unknown == ["L/VAC"]


# ---------------------------------------------------------------- the generator

def _constructs(module: ir.Module) -> set[str]:
    found: set[str] = set()
    if module.flows:
        found.add("policy flows")
    if len(module.principals) > 2:
        found.add("third principal")
    found |= {f"oracle {type(o.type).__name__}" for o in module.oracles}
    for layer in module.layers:
        found |= {"refines"} if layer.refines else set()
        found |= {"init"} if layer.init else set()
        found |= {"invariant"} if layer.invariants else set()
        found |= {"quantifier"} if any(isinstance(e, ir.Quant) for e in layer.init + tuple(i.pred for i in layer.invariants)) else set()
        found |= {f"field {type(f.type).__name__}" for f in layer.fields}
        for obs in layer.observations:
            for c in obs.components:
                found |= {"observe for" if c.binders else "observe plain"} | ({"observe where"} if c.where else set())
        for op in layer.ops:
            found |= _op_constructs(op, layer)
    return found


def _op_constructs(op: ir.Op, layer: ir.Layer) -> set[str]:
    found = {"dom " + type(op.dom).__name__}
    if layer.refines is not None:
        found.add("stutter" if op.implements is None else
                  "implements args" if any(not isinstance(a, ir.Ref) or a.kind != "arg" for a in op.implements.args)
                  else "implements by name")
    for s in ir.statements(op.body):
        found.add(type(s).__name__ + ("" if not isinstance(s, ir.Check) else " halt" if s.on_fail is None else " return"))
        if isinstance(s, ir.Assign) and len(s.path) > 0:
            found.add("assign path " + "".join("." if isinstance(p, str) else "[]" for p in s.path))
        if isinstance(s, (ir.Let, ir.Assign)) and isinstance(s.value, ir.ReadOracle):
            found.add("read for" if s.value.principal is not None else "read")
    return found


REQUIRED = {
    "policy flows", "third principal", "oracle BVType", "oracle RecordType", "oracle EnumType", "refines", "init", "invariant", "quantifier",
    "field MapType", "field BVType", "field RecordType", "field BoolType", "observe for", "observe plain",
    "observe where", "dom PrincipalVal", "stutter", "implements args", "implements by name", "Let",
    "Assign", "Check halt", "Check return", "If", "Return", "Halt", "Bind", "read", "read for", "assign path []",
    "assign path .", "assign path [].",
}


def test_generated_texts_load_and_cover_every_construct() -> None:
    seen: set[str] = set()
    for i in range(200):
        seen |= _constructs(load_text(random_model(f"cover:{i}"), f"cover{i}.mv"))
    assert REQUIRED <= seen, sorted(REQUIRED - seen)


def test_the_generator_is_deterministic_per_seed() -> None:
    assert random_model("det:1") == random_model("det:1")
    assert len({random_model(f"det:{i}") for i in range(20)}) == 20


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(models())
def test_hypothesis_models_load(text: str) -> None:
    module = load_text(text, "gen.mv")
    assert module.layers and all(layer.ops for layer in module.layers if layer.refines is None)


class Zeros:
    """Every choice the first one: where hypothesis shrinks to."""

    def between(self, lo: int, hi: int) -> int:
        return lo


def test_the_simplest_model_is_a_secure_single_layer_whose_theorem_checks() -> None:
    text = generate(Zeros())
    assert "mutations: none" in text.splitlines()[0] and "refines" not in text
    verdict = differential(text)
    assert verdict.category == "checked" and not verdict.refuted and not verdict.disagreements
