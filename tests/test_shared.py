"""Lowering shared by the obligations of a process (prover/shared.py): a layer's invariant, `~`
for a principal term and `~u` are lowered once, over canonical states in a context of their
own, and instantiated for each obligation by translation and substitution. The instance is the
predicate a direct lowering gives, up to the names of bound variables; the key keeps layers of
one name apart; a configuration constant read only there is the obligation's own."""

from __future__ import annotations

from pathlib import Path

import pytest
import z3

from conftest import ROOT, assert_replayed
from microverify.dsl import ir
from microverify.dsl.loader import discover, load_file, load_text
from microverify.layers.model import SymLayer
from microverify.prover import fingerprint, shared
from microverify.prover.driver import obligations, prove_modules, prove_pairs
from microverify.prover.frame import alpha_equal
from microverify.prover.solve import build
from microverify.prover.verdict import ENCODINGS, Options, Status


def _modules() -> list[ir.Module]:
    from test_config import LOWER, SPEC  # a layer that reads configuration constants, and a refinement
    return [load_file(f, {}) for f in discover([ROOT / "proofs" / "tutorial", ROOT / "proofs" / "xmhf"])] + \
        [load_text(SPEC + LOWER, "<config>")]


def test_each_shared_predicate_is_the_one_lowered_directly() -> None:
    """For every layer and operation of the tutorial, XMHF and a configured stack: the invariant
    of a pre-state and of the post-state, `~dom` and `~u` of every family between them, shared
    and lowered directly over the same states in one encoder, are one term up to bound names."""
    checked = 0
    seen: set[tuple[bytes, str, str | None]] = set()
    for m, ob in obligations(_modules()):
        sliced = fingerprint.slice_module(m, ob)
        key = (fingerprint.digest_without_ops(sliced), ob.layer, ob.op)
        if key in seen:
            continue
        seen.add(key)
        layer = sliced.layer(ob.layer)
        ctx = z3.Context()
        direct = SymLayer(sliced, layer, ctx)
        mine = shared.SharedLayer(sliced, layer, ctx, direct.enc)
        s, t = direct.fresh_state("s"), direct.fresh_state("t")
        pairs = [(SymLayer.invariant(direct, s), mine.invariant(s))]
        for op in layer.ops:
            args = direct.fresh_args(op)
            step, who = direct.step(op, s, args), direct.dom(op, s, args)
            pairs.append((SymLayer.invariant(direct, step.post), mine.invariant(step.post)))
            pairs.append((SymLayer.equiv(direct, who, s, step.post), mine.equiv(who, s, step.post)))
        for u in sliced.principals:
            _, param = direct.observer(u)
            pairs.append((SymLayer.agree(direct, u, param, s, t), mine.agree(u, param, s, t)))
        for a, b in pairs:
            assert alpha_equal(a, b), (ob.id, a, b)
            checked += 1
    assert checked > 100


# Two files that declare a layer L alike but for an invariant: with `clean`, KServ hands over
# only pages it has scrubbed; without it, `give` leaks KServ's memory to the VM it gives to.
PAGES = """\
principal KServ
principal VM(v: vmid)
policy { KServ -> VM }
type vmid = bv[2]
type pfn = bv[3]
layer L {
  state { owner : map[pfn] -> principal  mem : map[pfn] -> bv[4] }
  init { forall p: pfn. owner[p] == KServ && mem[p] == 0 }
  invariant clean { forall p: pfn. owner[p] == KServ ==> mem[p] == 0 }
  observe KServ { owner[p] for p: pfn }
  observe VM(v) { mem[p] for p: pfn where owner[p] == VM(v) }
  op give(p: pfn, v: vmid) by KServ {
    check owner[p] == KServ else halt
    owner[p] := VM(v)
  }
  op scribble(p: pfn, x: bv[4]) by KServ {
    check owner[p] == KServ else halt
    mem[p] := 0
  }
}
"""
LEAKY = PAGES.replace("invariant clean { forall p: pfn. owner[p] == KServ ==> mem[p] == 0 }",
                      "invariant clean { true }").replace("mem[p] := 0", "mem[p] := x")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", ["secure first", "leaky first"])
def test_a_layer_of_the_same_name_never_gets_anothers_invariant(
        order: str, encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack on the key of shared.SharedLayer: proved in one process, the leaky file's `L`
    must not assume the secure file's invariant (it would then prove). Its `give` FAILS for a
    VM with a counterexample the reference interpreter confirms, whichever file comes first."""
    monkeypatch.setattr(shared, "_LOWERED", {})
    assert LEAKY != PAGES and "mem[p] := x" in LEAKY
    secure, leaky = load_text(PAGES, "secure.mv"), load_text(LEAKY, "leaky.mv")
    modules = [secure, leaky] if order == "secure first" else [leaky, secure]
    results = prove_modules(modules, Options(encoding=encoding))
    by_file = {f: {r.obligation.base_id: r.status for r in results if r.obligation.file == f}
               for f in ("secure.mv", "leaky.mv")}
    assert set(by_file["secure.mv"].values()) == {Status.PROVED}
    assert by_file["leaky.mv"]["L/WSC/give/VM"] is Status.FAILED
    assert_replayed(results)


CONFIG_ONLY_IN_THE_INVARIANT = """\
type part = bv[2]
type word = bv[4]
principal P(p: part)
policy isolation
const LIMIT: word
layer K {
  state { box : map[part] -> word }
  init { LIMIT >= 8; forall p: part. box[p] == LIMIT }
  invariant big { LIMIT >= 8 }
  observe P(p) { box[p] }
  op peek(p: part) by P(p) -> word { return box[p + 1] }
}
"""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_configuration_constant_read_only_by_a_shared_invariant_is_the_obligations(
        encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`peek` reads the next partition's box: OC fails. LIMIT is read only by I(s), a shared
    predicate: the instance's LIMIT must be the obligation's own, registered in its encoder, so
    that the counterexample shows it and the reference interpreter runs it with that value (at
    LIMIT = 0, its default, I(s) would not hold and the replay would contradict the model)."""
    monkeypatch.setattr(shared, "_LOWERED", {})
    results = prove_modules([load_text(CONFIG_ONLY_IN_THE_INVARIANT, "<config>")], Options(encoding=encoding))
    [oc] = [r for r in results if r.obligation.id == "K/OC/peek"]
    assert oc.status is Status.FAILED and oc.counterexample is not None, (oc.status, oc.detail)
    assert any(c.startswith("LIMIT = ") for c in oc.counterexample.configuration), oc.counterexample.configuration
    assert_replayed(results)


def test_a_predicate_with_a_constant_of_its_own_is_lowered_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A canonical term with a free constant that is neither an input nor a configuration
    constant (no lowering makes one today) is not shared: each obligation lowers it itself, and
    the constant is the obligation's."""
    monkeypatch.setattr(shared, "_LOWERED", {})
    plain = SymLayer.invariant

    def stray(L: SymLayer, s: dict) -> z3.BoolRef:  # type: ignore[type-arg]
        return z3.And(plain(L, s), z3.Bool(f"stray!{L.layer.name}", L.ctx))

    monkeypatch.setattr(SymLayer, "invariant", stray)
    [(m, ob)] = [(m, ob) for m, ob in obligations([load_text(PAGES, "<pages>")]) if ob.id == "L/INV/give"]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context(), "quantified")
    assert [c.term for c in shared._LOWERED.values()] == [None]
    assert "stray!L" in str(formula.hypotheses[1].term)


def test_figures_are_the_same_with_the_predicates_lowered_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance is made the same way whether its canonical term was lowered now or before, so
    the resource units of every obligation are the same in a second run of the same process."""
    pairs = obligations([load_text(PAGES, "<pages>")])
    monkeypatch.setattr(shared, "_LOWERED", {})
    first = [(r.obligation.id, r.status, r.rlimit_used) for r in prove_pairs(pairs, Options())]
    assert shared._LOWERED
    again = [(r.obligation.id, r.status, r.rlimit_used) for r in prove_pairs(pairs, Options())]
    assert again == first and {status for _, status, _ in first} == {Status.PROVED}


# Binders named like the state's constants (the field x's are x_s and x_t): a canonical
# predicate's variables must not capture them in the SMT-LIB text of the obligation.
CAPTURE = """\
principal A
principal B
policy isolation
layer L {
  state { x: bv[16]; m: map[bv[16]] -> bv[16]; y: bv[16] }
  init { forall b: bv[16]. m[b] == 0 }
  invariant low { (forall x_s: bv[16]. m[x_s] == 0 || x_s > x) && (forall x_t: bv[16]. m[x_t] == 0 || x_t > x) }
  observe B { y }
  op f() by B { y := m[5] }
}
layer K {
  state { x: bv[16]; m: map[bv[16]] -> bv[16]; y: bv[16] }
  init { x == 1; forall b: bv[16]. m[b] == 0 }
  invariant pinned { x != 0; forall x_s: bv[16]. m[x_s] == 0 || x_s == x }
  observe B { y }
  op g() by B { y := m[0] }
}
"""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_exported_script_of_each_obligation_has_its_verdict(encoding: str, tmp_path: Path) -> None:
    """Found in review: the canonical predicates' bound variables were named by an encoder of
    their own, so `forall x_s` in an invariant printed as a binder over the state's constant
    x_s: the dumped script of the leak `f` (m[5] is free where x >= 5) said unsat, "PROVED",
    in z3 and cvc5 alike, and that of the secure `g` (m is zero but at x, and x is not 0) sat.
    Every dumped script now gets, from Z3, the answer its obligation's verdict means."""
    results = prove_modules([load_text(CAPTURE, "capture.mv")], Options(encoding=encoding, dump_smt=tmp_path))
    verdicts = {r.obligation.id: r.status for r in results}
    assert verdicts["L/WSC/f/B"] is Status.FAILED and verdicts["K/WSC/g/B"] is Status.PROVED
    for r in results:
        [path] = tmp_path.glob(f"*{r.obligation.id.replace('/', '_')}.smt2")
        text = path.read_text()
        solver = z3.Solver()
        solver.from_string(text)
        answer = solver.check()
        if "\n; expected: sat means PROVED" in text:  # a satisfiability obligation (VAC)
            expected = z3.sat if r.status is Status.PROVED else z3.unsat
        else:
            expected = z3.unsat if r.status is Status.PROVED else z3.sat
        assert answer == expected, (r.obligation.id, r.status, answer)


def test_obligations_solved_in_threads_at_once_get_the_sequential_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: the language server proves each saved file in a thread of its own, and
    the process-wide contexts (now one, shared.CONTEXT: the canonical predicates, the witness shapes,
    the hypotheses shown satisfiable) were used
    by two threads at once: Z3 raised on terms of the wrong sort, failed an assertion, or
    crashed the process. Every use of them holds shared.LOCK; four modules proved in four
    threads at once, three times over with the memos emptied, get the sequential results."""
    import threading

    from microverify.prover import solve, witness
    modules = [load_text(text, name) for text, name in ((PAGES, "pages.mv"), (LEAKY, "leaky.mv"),
                                                        (CAPTURE, "capture.mv"), (CONFIG_ONLY_IN_THE_INVARIANT, "config.mv"))]

    def run(module: ir.Module) -> list[tuple[str, Status, int]]:
        return [(r.obligation.id, r.status, r.rlimit_used) for r in prove_pairs(obligations([module]), Options())]

    def forget() -> None:
        for owner, name in ((shared, "_LOWERED"), (witness, "_BUILT"), (solve, "_SHOWN")):
            monkeypatch.setattr(owner, name, {})

    forget()
    sequential = [run(m) for m in modules]
    for _ in range(3):
        forget()
        got: list[object] = [None] * len(modules)

        def work(i: int) -> None:
            try:
                got[i] = run(modules[i])
            except BaseException as e:  # handed to the test
                got[i] = e

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(modules))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == sequential


def _fresh_names_counted() -> str:
    """The next fresh name a formula that takes a term from shared.CONTEXT would get: Z3's
    translation passes the source context's count of fresh names on to the target."""
    scratch = z3.Context()
    z3.BoolVal(True, shared.CONTEXT).translate(scratch)
    return str(z3.FreshConst(z3.BoolSort(scratch), "probe"))


def test_no_context_passes_its_count_of_fresh_names_on_to_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is translated into shared.CONTEXT from an obligation's context: after a check in
    it, or the λs of prover/qf.py, that context has counted fresh names, a translation would
    raise CONTEXT's count to it, and every later formula would take it on: other names for its
    λs, and another search in Z3. A leaky SeKVM's KCoreFlat/OC/smmu_iova_to_phys
    (`iova_to_phys_any_bank`, quantified encoding) FAILED when solved alone and ended UNKNOWN
    after `emul_from_other_cpu`'s obligation had run in the same process (its witness shapes
    were built after the first goal check). Here each formula is built in a context that has
    counted fresh names, and every use of CONTEXT runs on it: the shared predicates, the
    witness shapes, and the exact-first check that keeps the hypotheses it showed satisfiable."""
    from microverify.prover import solve as solving, witness
    from microverify.prover.memory import new_context
    monkeypatch.setattr(shared, "_LOWERED", {})
    monkeypatch.setattr(witness, "_BUILT", {})
    monkeypatch.setattr(solving, "_SHOWN", {})
    before = _fresh_names_counted()
    for module, ob in obligations([load_text(PAGES, "<pages>")]):
        ctx = new_context()
        for _ in range(100):
            z3.FreshConst(z3.BoolSort(ctx), "counted")
        formula = build(module, ob, ctx, "quantified")
        witness.shaped(formula)
        if formula.quantified:
            solving._solved_exactly(ob, formula, Options(), 0.0, 0.0)
    assert shared._LOWERED and witness._BUILT and solving._SHOWN  # each was used
    assert _fresh_names_counted() == before
