"""Counterexamples replayed by the reference interpreter (prover/replay.py, prover/concrete.py).

Every FAILED of the golden cases and mutants is checked to replay where it is proved
(tests/test_golden.py, tests/test_mutants.py, `assert_replayed`). Here: a corrupted model is
caught, a lowering bug becomes an internal error (exit 3) and not a leak, the replay is in every
report format, what cannot be replayed says so, and the qf model completion."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import z3

from conftest import CASES, ROOT, SECURE, load, prove_path
from microverify.dsl.loader import load_text
from microverify.dsl.types import BVType, MapType
from microverify.layers.encoding import MapVal
from microverify.layers.values import MapValue, Universe
from microverify.prover import cli, solve, unwinding
from microverify.prover.concrete import Concretizer
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.formula import Formula
from microverify.prover.obligations import Kind
from microverify.prover.qf import Completion
from microverify.prover.replay import Outcome, replay
from microverify.prover.report import render_counterexample
from microverify.prover.verdict import ENCODINGS, Options, Status

READER = SECURE.removesuffix("}\n") + "  op read(v: bv[1]) by VM(v) -> bv[8] { return secret[v] }\n}\n"


def _failed_model(path: Path, ob_id: str, encoding: str) -> tuple[solve.Obligation, Formula, z3.ModelRef]:
    (module, ob), = [(m, o) for m, o in obligations([load(path)]) if o.id == ob_id]
    formula = solve.build(module, ob, z3.Context(), encoding)
    s = z3.Solver(ctx=formula.ctx)
    s.add([h.term for h in formula.hypotheses])
    s.add(z3.Not(z3.And([g.term for g in formula.goals])))
    assert s.check() == z3.sat
    return ob, formula, s.model()


class _RunTAsS:
    """A corrupted model: run t's pre-state is read as run s's (a model of some other formula)."""

    def __init__(self, model: z3.ModelRef, formula: Formula) -> None:
        self.model = model
        s, t = formula.runs
        self.pairs = [(a, b) for a, b in zip(_leaves(t.pre), _leaves(s.pre))]

    def eval(self, term: z3.ExprRef, model_completion: bool = False) -> z3.ExprRef:
        return self.model.eval(z3.substitute(term, *self.pairs), model_completion=model_completion)

    def __getitem__(self, decl: z3.FuncDeclRef) -> object:
        return self.model[decl]


def _leaves(state: dict[str, object]) -> list[z3.ExprRef]:
    out: list[z3.ExprRef] = []
    for v in state.values():
        stack = [v]
        while stack:
            x = stack.pop()
            if isinstance(x, z3.ExprRef):
                out.append(x)
            else:
                stack.extend(getattr(x, "fields", {}).values() or [getattr(x, "inner")])
    return out


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_real_counterexample_is_confirmed_with_what_it_shows(encoding: str) -> None:
    ob, formula, model = _failed_model(CASES / "kinds" / "oc_only.mv", "L/OC/peek", encoding)
    rp = replay(ob, formula, model)
    assert rp.outcome is Outcome.CONFIRMED
    (finding,) = rp.findings
    assert finding.startswith("`peek` returns ") and "in run s and" in finding


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_corrupted_counterexample_is_caught(encoding: str) -> None:
    """The same model with run t read as run s: both runs return the same, so the goal holds."""
    ob, formula, model = _failed_model(CASES / "kinds" / "oc_only.mv", "L/OC/peek", encoding)
    rp = replay(ob, formula, _RunTAsS(model, formula))  # type: ignore[arg-type]
    assert rp.outcome is Outcome.CONTRADICTED
    assert rp.findings == ("the goal holds in the replay",)


def test_a_lowering_bug_is_an_internal_error_not_a_leak(monkeypatch: pytest.MonkeyPatch, tmp_mv, capsys) -> None:
    """OC built without its hypothesis s ~dom t (a simulated bug in the obligation generator): Z3
    finds two runs that VM(v) tells apart; the replay sees that the hypothesis fails, and `prove`
    exits 3 without showing the runs as a leak."""
    def oc_without_dom_view(L, op):  # type: ignore[no-untyped-def]
        f = unwinding.output_consistency(L, op)
        f.hypotheses = [h for h in f.hypotheses if not h.label.startswith("s ~dom")]
        return f

    monkeypatch.setitem(solve._PER_OP, Kind.OC, oc_without_dom_view)
    monkeypatch.setattr(sys, "argv", ["prove", "-j1", "--no-cache", str(tmp_mv(READER))])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    assert info.value.code == 3
    assert "ERROR    L/OC/read" in out
    assert "s ~dom t does not hold in the replay" in out
    assert "error: OC" not in out and "fails for" not in out  # no counterexample shown
    assert "internal error: L/OC/read" in err and "Please report" in err
    assert "1 error" in out.splitlines()[-1]


def test_json_carries_the_replayed_states_as_typed_values(tmp_mv, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    leak = READER.replace("op read(v: bv[1]) by VM(v)", "op read(v: bv[1]) by KServ")
    monkeypatch.setattr(sys, "argv", ["prove", "-j1", "--no-cache", "--format", "json", str(tmp_mv(leak))])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "microverify-results/4"
    (oc,) = [o for o in doc["obligations"] if o["id"] == "L/OC/read"]
    rp = oc["replay"]
    assert rp["outcome"] == "confirmed"
    assert rp["findings"][0].startswith("`read` returns ")
    assert rp["arguments"]["v"]["type"] == "bv[1]" and rp["arguments"]["v"]["value"] in (0, 1)
    labels = [st["label"] for st in rp["states"]]
    assert labels == ["s", "t", "step(s)", "step(t)"]
    secret = rp["states"][0]["state"]["secret"]
    assert secret["type"] == "map[bv[1]] -> bv[8]"
    assert isinstance(secret["value"]["default"], int) and isinstance(secret["value"]["entries"], list)
    counters = [st["state"] for st in rp["states"]]
    assert all(set(s) == {"secret"} for s in counters)  # no oracle: no counter field
    v = rp["arguments"]["v"]["value"]
    values = [_at(rp["states"][i]["state"]["secret"]["value"], v) for i in (0, 1)]
    assert values[0] != values[1]  # what `read` returned differs: the secret of VM(v)


def _at(m: dict[str, object], key: object) -> object:
    for k, v in m["entries"]:  # type: ignore[attr-defined]
        if k == key:
            return v
    return m["default"]


def test_a_counterexample_over_a_sort_too_large_to_enumerate_is_reported_as_not_replayed() -> None:
    text = """\
principal KServ
principal VM(v: bv[1])
layer L {
  state { mem : map[bv[32]] -> bool }
  observe VM(v) { mem[p] for p: bv[32] }
  op set(p: bv[32]) by KServ { mem[p] := true }
}
"""
    pairs = [(m, ob) for m, ob in obligations([load_text(text, "<big>")]) if ob.id == "L/LR/set/VM"]
    (r,) = prove_pairs(pairs, Options())
    assert r.status is Status.FAILED and r.replay is not None
    assert r.replay.outcome is Outcome.NOT_REPLAYED
    assert "ranges over 4294967296 values" in r.replay.findings[0]


def test_the_qf_completion_reads_an_index_outside_i_where_lambda_is() -> None:
    """qf's fragment argument: outside the index set I, every array is read at the λ of the
    region. A model of the instances may have anything there; the completed one does not."""
    ctx = z3.Context()
    bv4 = z3.BitVecSort(4, ctx)
    a = z3.Array("a", bv4, bv4)
    i, lam = z3.BitVec("i", 4, ctx), z3.BitVec("lam", 4, ctx)
    s = z3.Solver(ctx=ctx)
    s.add(i == 3, lam == 9, a == z3.Store(z3.Store(z3.K(bv4, z3.BitVecVal(0, 4, ctx)), 3, 1), 7, 5))
    assert s.check() == z3.sat
    module = load_text("principal P\nlayer L { state { x : bool } }\n", "<m>")
    t = MapType(BVType(4), BVType(4))
    symbolic = MapVal(t, a)
    layer = SimpleNamespace(enc=SimpleNamespace(sort=lambda _t: bv4, ctx=ctx), module=module)

    def read(completion: Completion | None) -> MapValue:
        formula = SimpleNamespace(completion=completion, layer=layer)
        c = Concretizer(formula, s.model(), Universe(module.principals))  # type: ignore[arg-type]
        out = c.value(t, symbolic)
        assert isinstance(out, MapValue)
        return out

    raw = read(None)
    assert (raw[3], raw[7], raw[9]) == (1, 5, 0)
    done = read(Completion({bv4: [i]}, [(bv4, 0, 16, lam)]))
    assert (done[3], done[7], done[9], done[12]) == (1, 0, 0, 0)  # 7 is outside I: read at λ = 9


def test_the_replay_lines_in_docs_ci_are_real() -> None:
    """docs/ci.md shows the two lines of `prove tests/cases/kinds/oc_only.mv` under "Replay"."""
    doc = (ROOT / "docs" / "ci.md").read_text()
    block = doc[doc.index("### Replay"):].split("```")[1].strip("\n").splitlines()
    (r,) = [r for r in prove_path(CASES / "kinds" / "oc_only.mv") if r.status is Status.FAILED]
    path = CASES / "kinds" / "oc_only.mv"
    text = render_counterexample(r, {r.obligation.span.file: path.read_text()}).splitlines()
    assert block == [line for line in text if line.startswith(("  why:", "  replay:"))]
