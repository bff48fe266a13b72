"""INV and WSC leave out the goals that are hypotheses already (prover/frame.py).

A clause of the invariant, or a component of the observer's view, whose fields the operation
leaves as they were (in both runs) states after the step the very formula `I(s)`, or `s ~u t`,
states of it before: the obligation asks only about the others. Which fields a goal reads only
picks the candidates; one is left out only if the formula it states after the step is a
conjunct of the hypothesis, compared term by term up to the names of bound variables
(`alpha_equal`).

The attacks: leaks through a component whose value is unchanged but whose mask the operation
changes, through a write under a run-dependent condition, and through a whole-map component,
each FAILED by WSC at the leaking line; and an invariant broken through a field that only the
clause's condition reads, FAILED by INV. Each in both encodings and over two files in either
order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import z3

from conftest import SPLIT_ORDERS, assert_replayed, prove_text, split_over_two_files
from microverify.dsl.loader import load_text
from microverify.prover.driver import obligations, prove_modules
from microverify.prover.export import script
from microverify.prover.formula import Formula
from microverify.prover.memory import new_context
from microverify.prover.obligations import Kind, Obligation
from microverify.prover.solve import build
from microverify.prover.frame import alpha_equal
from microverify.prover.verdict import ENCODINGS, Options, Result, Status

MODEL = """\
principal KServ
principal VM(v: vmid)
type vmid = bv[2]
type word = bv[8]
layer L {
  state { mem : map[vmid] -> word
          shown : map[vmid] -> bool
          log : word
          table : map[vmid] -> word
          secret : map[vmid] -> word }
  init { forall w: vmid. !shown[w] }
  invariant hidden { forall w: vmid. !shown[w] }
  invariant clean { forall w: vmid. shown[w] ==> mem[w] == 0 }
  observe VM(v) { mem[v] }
  observe KServ { log; table }
  op peek(v: vmid) by VM(v) -> word { return mem[v] }
  op put(v: vmid, x: word) by VM(v) { mem[v] := x }
  op note(x: word) by KServ { log := x }
  LEAK
}
"""
SECURE = MODEL.replace("  LEAK\n", "")
HIDDEN = "  invariant hidden { forall w: vmid. !shown[w] }\n"
# Each leak, the line that leaks, and the observer whose WSC fails.
LEAKS = {
    # VM(v) sees every `secret[w]` that `shown` marks, and KServ may tell VMs what it knows; KServ
    # marks any entry, which every VM then sees though KServ does not: the secret is unchanged,
    # the mask is not
    "a mask the operation changes": (
        MODEL.replace("principal VM(v: vmid)\n", "principal VM(v: vmid)\npolicy { KServ -> VM }\n")
        .replace("observe VM(v) { mem[v] }", "observe VM(v) { mem[v]; secret[w] for w: vmid where shown[w] }")
        .replace("init { forall w: vmid. !shown[w] }", "init { true }").replace(HIDDEN, "")
        .replace("  invariant clean { forall w: vmid. shown[w] ==> mem[w] == 0 }\n", "")
        .replace("LEAK", "op show(w: vmid) by KServ {\n    shown[w] := true\n  }"),
        "shown[w] := true", "VM"),
    # KServ's log depends on a VM's memory
    "a write under a condition on a secret": (
        MODEL.replace("LEAK", "op probe(v: vmid) by KServ {\n    if mem[v] == 0 {\n      log := 1\n    }\n  }"),
        "log := 1", "KServ"),
    # KServ sees the whole table, and copies a VM's memory there
    "a whole-map component": (
        MODEL.replace("LEAK", "op publish(v: vmid) by KServ {\n    table[v] := mem[v]\n  }"),
        "table[v] := mem[v]", "KServ"),
}
# A VM writes its memory while KServ has not armed it; arming must clear it first. `clean` reads
# `mem`, which `arm` leaves alone, under a condition on `armed`, which it writes.
ARMED = """\
principal KServ
principal VM(v: vmid)
policy { KServ -> VM }
type vmid = bv[2]
type word = bv[8]
layer L {
  state { mem : map[vmid] -> word
          armed : map[vmid] -> bool }
  init { forall w: vmid. !armed[w] }
  invariant clean { forall w: vmid. armed[w] ==> mem[w] == 0 }
  observe VM(v) { mem[v]; armed[v] }
  op put(v: vmid, x: word) by VM(v) {
    if !armed[v] {
      mem[v] := x
    }
  }
  op arm(w: vmid) by KServ {
    CLEAR
    armed[w] := true
  }
}
"""
CLEARED, BROKEN = ARMED.replace("CLEAR", "mem[w] := 0"), ARMED.replace("    CLEAR\n", "")


def formula(text: str, kind: Kind, op: str, observer: str | None = None) -> tuple[Obligation, Formula]:
    module = load_text(text, "<test>")
    ob = next(ob for m, ob in obligations([module]) if (ob.kind, ob.op, ob.observer) == (kind, op, observer))
    return ob, build(module, ob, new_context(), "quantified")


def goals(text: str, kind: Kind, op: str, observer: str | None = None) -> list[str]:
    return [g.label for g in formula(text, kind, op, observer)[1].goals]


def test_an_operation_that_writes_nothing_leaves_no_goal() -> None:
    assert goals(SECURE, Kind.WSC, "peek", "VM") == []
    assert goals(SECURE, Kind.WSC, "peek", "KServ") == []
    assert goals(SECURE, Kind.INV, "peek") == []


def test_only_the_goals_about_what_an_operation_writes_are_left() -> None:
    assert goals(SECURE, Kind.WSC, "put", "VM") == ["observation `mem[v]`"]
    assert goals(SECURE, Kind.WSC, "note", "KServ") == ["observation `log`"]
    assert goals(SECURE, Kind.WSC, "note", "VM") == []
    assert goals(SECURE, Kind.INV, "put") == ["invariant clean"]
    assert goals(SECURE, Kind.INV, "note") == []
    assert goals(BROKEN, Kind.INV, "arm") == ["invariant clean"]
    assert goals(BROKEN, Kind.WSC, "arm", "VM") == ["observation `armed[v]`"]
    assert goals(CLEARED, Kind.WSC, "arm", "VM") == ["observation `mem[v]`", "observation `armed[v]`"]


def test_an_exported_script_names_the_goals_left_out() -> None:
    """The script says on one comment line which goals were left out (a component written over
    several lines by its first line), and Z3 answers it as the verdict says."""
    text = SECURE.replace("observe VM(v) { mem[v] }",
                          "observe VM(v) { mem[v];\n    mem[w] for w: vmid\n      where shown[w] }")
    for kind, op, observer, left_out in [
            (Kind.WSC, "peek", "VM", "observation `mem[v]`; observation `mem[w] for w: vmid ...`"),
            (Kind.INV, "put", None, "invariant hidden")]:
        ob, f = formula(text, kind, op, observer)
        exported = script(ob, f)
        assert [line for line in exported.splitlines() if line.startswith("; left out")] == \
            [f"; left out of the goal, since the operation leaves them as they were and a hypothesis states them "
             f"(docs/theory.md §4): {left_out}"]
        solver = z3.Solver(ctx=z3.Context())
        solver.from_string(exported)
        assert solver.check() == z3.unsat


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("model", [SECURE, CLEARED], ids=["views", "invariant"])
def test_the_secure_models_prove(model: str, encoding: str) -> None:
    results = prove_text(model, Options(encoding=encoding))
    assert [(r.obligation.id, r.status, r.detail) for r in results
            if r.status is not Status.PROVED] == []


def _failed_wsc(results: list[Result], text: str, line: str, observer: str) -> None:
    """Only a WSC for `observer` fails, and its counterexample names the `line` of `text`."""
    failed = [r for r in results if r.status is not Status.PROVED]
    assert [(r.obligation.kind, r.obligation.observer, r.status) for r in failed] == \
        [(Kind.WSC, observer, Status.FAILED)]
    cex = failed[0].counterexample
    assert cex is not None
    assert line in [text.splitlines()[s.line - 1].strip() for s in cex.responsible]
    assert_replayed(results)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("leak", LEAKS)
def test_each_leak_fails_wsc_at_its_line(leak: str, encoding: str) -> None:
    text, line, observer = LEAKS[leak]
    _failed_wsc(prove_text(text, Options(encoding=encoding)), text, line, observer)


def _failed_inv(results: list[Result]) -> None:
    """Only INV of `arm` fails, at `clean`, and its counterexample names the line it breaks."""
    failed = [r for r in results if r.status is not Status.PROVED]
    assert [(r.obligation.base_id, r.status) for r in failed] == [("L/INV/arm", Status.FAILED)]
    cex = failed[0].counterexample
    assert cex is not None and [f.split(" at ")[0] for f in cex.failing] == ["invariant clean does not hold"]
    assert "armed[w] := true" in [BROKEN.splitlines()[s.line - 1].strip() for s in cex.responsible]
    assert_replayed(results)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_clause_whose_condition_the_operation_writes_fails_inv(encoding: str) -> None:
    _failed_inv(prove_text(BROKEN, Options(encoding=encoding)))


@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_the_broken_clause_fails_over_two_files_in_either_order(tmp_path: Path, order: str) -> None:
    _failed_inv([r for r in prove_modules(split_over_two_files(tmp_path, BROKEN, "KServ", order), Options())
                 if r.obligation.layer == "L"])


@pytest.mark.parametrize("order", SPLIT_ORDERS)
@pytest.mark.parametrize("leak", LEAKS)
def test_each_leak_fails_over_two_files_in_either_order(tmp_path: Path, leak: str, order: str) -> None:
    text, line, observer = LEAKS[leak]
    results = [r for r in prove_modules(split_over_two_files(tmp_path, text, "KServ", order), Options())
               if r.obligation.layer == "L"]
    _failed_wsc(results, text, line, observer)


def test_alpha_equal_is_equality_up_to_the_names_of_bound_variables() -> None:
    key, word = z3.BitVecSort(2), z3.BitVecSort(8)
    a, b = z3.Array("a", key, word), z3.Array("b", key, word)
    x, y, k = z3.BitVec("x", 2), z3.BitVec("y", 2), z3.BitVec("k", 2)
    assert alpha_equal(z3.ForAll([x], a[x] == b[x]), z3.ForAll([y], a[y] == b[y]))
    assert alpha_equal(z3.And(k == 1, z3.ForAll([x], z3.ForAll([y], a[x] == b[y]))),
                        z3.And(k == 1, z3.ForAll([y], z3.ForAll([x], a[y] == b[x]))))
    # not the same formula: another body, the binders swapped, another quantifier or sort
    assert not alpha_equal(z3.ForAll([x], a[x] == b[x]), z3.ForAll([y], a[y] == a[y]))
    assert not alpha_equal(z3.ForAll([x], z3.ForAll([y], a[x] == b[y])), z3.ForAll([y], z3.ForAll([x], a[x] == b[y])))
    assert not alpha_equal(z3.ForAll([x], a[x] == b[x]), z3.Exists([x], a[x] == b[x]))
    z = z3.BitVec("z", 3)
    low = z3.Extract(1, 0, z)
    assert not alpha_equal(z3.ForAll([x], a[x] == b[x]), z3.ForAll([z], a[low] == b[low]))
    assert not alpha_equal(z3.And(k == 1, k == 2), z3.And(k == 1, k == 3))
