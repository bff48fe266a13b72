"""The shaped satisfiability check (prover/witness.py, docs/theory.md §4): before checking
that quantified hypotheses (or a VAC goal) are satisfiable, Z3 is given the pre-state's maps as
terms, `init`'s pointwise definition of each map (or a constant map) updated at one free
index, then, if that shape has no model, at two. Its `sat` is a model of the formula; its
`unsat` or `unknown` proves nothing, and the exact check follows.

The model: SeKVM's page ownership at hardware widths (36-bit page numbers, 16-bit VMIDs), with
KCore's and the MMIO pages fixed by ranges and boot images in pages KCore took. Z3 alone cannot
build a model of these invariants over 2^36 pages (its checks of VAC and of the hypotheses of
INV end UNKNOWN); given init's ownership map it finds one at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import z3

from conftest import ROOT, SPLIT_ORDERS, assert_replayed, load_text, record_fresh_checks, split_over_two_files
from microverify.dsl.loader import discover, load_file
from microverify.prover import fingerprint, qf, shared, solve, witness
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.solve import build
from microverify.prover.verdict import ENCODINGS, Options, Status

WIDE = """\
principal KServ
principal VM(v: vmid)
policy { KServ -> VM }
type vmid = bv[16]
type pfn  = bv[36]
type otag = enum { Host, Guest, Core, Mmio }
type vmstate = enum { Unused, Ready, Started }
type img_t = record { loaded: bool, pfn: pfn }
const KCORE_BASE: pfn = 0x40000
const KCORE_END:  pfn = 0x41000
const MMIO_BASE:  pfn = 0x08000
const MMIO_END:   pfn = 0x40000
layer L {
  state {
    owner : map[pfn] -> otag
    ovm   : map[pfn] -> vmid
    vmst  : map[vmid] -> vmstate
    img   : map[vmid] -> img_t
  }
  init {
    forall p: pfn. owner[p] == (if p >= KCORE_BASE && p < KCORE_END then Core
                                else if p >= MMIO_BASE && p < MMIO_END then Mmio else Host);
    forall v: vmid. vmst[v] == Unused && !img[v].loaded
  }
  invariant statics {
    forall p: pfn. p >= KCORE_BASE && p < KCORE_END ==> owner[p] == Core;
    forall p: pfn. p >= MMIO_BASE && p < MMIO_END ==> owner[p] == Mmio
  }
  // a VM's boot image is in a page KCore took, outside its own pages, one per VM
  invariant images {
    forall v: vmid. vmst[v] == Ready && img[v].loaded ==> owner[img[v].pfn] == Core
      && !(img[v].pfn >= KCORE_BASE && img[v].pfn < KCORE_END);
    forall v: vmid, w: vmid. v != w && vmst[v] == Ready && img[v].loaded && vmst[w] == Ready && img[w].loaded
      ==> img[v].pfn != img[w].pfn
  }
  invariant born { forall p: pfn. owner[p] == Guest ==> vmst[ovm[p]] == Started }
  observe KServ { owner[p] for p: pfn; vmst[v] == Unused for v: vmid }
  observe VM(v) { owner[p] == Guest && ovm[p] == v for p: pfn where vmst[v] == Started }
  op start(v: vmid) by KServ {
    check vmst[v] == Unused else halt
    vmst[v] := Started
  }
  op assign(v: vmid, p: pfn) by KServ {
    check owner[p] == Host && vmst[v] == Started else halt
    owner[p] := Guest
    ovm[p] := v
  }
}
"""
SATISFIABILITY = ("L/VAC", "L/VAC/start", "L/VAC/assign", "L/INV/start", "L/INV/assign")


def _pairs(text: str):  # type: ignore[no-untyped-def]
    return obligations([load_text(text, "<test>")])


def _results(text: str, ids: tuple[str, ...], **options: object) -> dict[str, object]:
    pairs = [(m, ob) for m, ob in _pairs(text) if ob.id in ids]
    assert {ob.id for _, ob in pairs} == set(ids)
    return {r.obligation.id: r for r in prove_pairs(pairs, Options(**options))}  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_wide_model_proves(encoding: str) -> None:
    results = prove_pairs(_pairs(WIDE), Options(encoding=encoding))
    assert [(r.obligation.id, r.detail) for r in results if r.status is not Status.PROVED] == []


def test_the_shaped_check_is_what_proves_the_satisfiability_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under one small rlimit: PROVED with the shaped check, UNKNOWN without it."""
    shaped = _results(WIDE, SATISFIABILITY, rlimit=2_000_000)
    assert {i: r.status for i, r in shaped.items()} == dict.fromkeys(SATISFIABILITY, Status.PROVED)  # type: ignore[attr-defined]
    monkeypatch.setattr(witness, "shapes", lambda formula, ctx=None: iter(()))
    monkeypatch.setattr(solve, "_SHOWN", {})  # what the shape showed above is not taken
    exact = _results(WIDE, SATISFIABILITY, rlimit=2_000_000)
    assert {i: r.status for i, r in exact.items()} == dict.fromkeys(SATISFIABILITY, Status.UNKNOWN)  # type: ignore[attr-defined]


def test_the_shape_takes_inits_definitions() -> None:
    [(m, ob)] = [(m, ob) for m, ob in _pairs(WIDE) if ob.id == "L/VAC"]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
    pairs = {str(k): v for k, v in witness.shaped(formula)}
    assert set(pairs) == {"owner_s", "ovm_s", "vmst_s", "img_s.loaded", "img_s.pfn"}
    for name, term in pairs.items():
        for _ in range(witness.POINTS):  # the free updates, over the base
            assert z3.is_store(term), name
            term = term.arg(0)
        defined = name in ("owner_s", "vmst_s", "img_s.loaded")
        assert (z3.is_quantifier(term) and term.is_lambda()) == defined, (name, term)
        assert z3.is_K(term) == (not defined), (name, term)



LINKED = """\
principal KServ
type part = bv[32]
type pidx = bv[32]
type slot = bv[16]
layer Ports {
  state {
    port_part : map[bv[64]] -> part
    slot_of   : map[bv[36]] -> slot
    port_id   : map[bv[64]] -> bv[64]
  }
  init {
    forall p: part, i: pidx. port_part[concat(p, i)] == p;
    forall s: slot. slot_of[zext(s, 36)] == s;
    forall n: bv[64]. port_id[n] == 0
  }
  invariant { forall p: part, i: pidx. port_part[concat(p, i)] == p }
  invariant { forall s: slot. slot_of[zext(s, 36)] == s }
  observe KServ { port_id }
  op noop() by KServ { }
}
"""


def test_the_shape_takes_inits_index_linking_definitions() -> None:
    """`forall p, i. port_part[concat(p, i)] == p` sets the whole map: its shape is the λ that
    reads p out of the index (prover/linking.py), not updated at free indices. `forall s.
    slot_of[zext(s, 36)] == s` sets the indices with zero high bits: inside them the λ, outside
    one free value. A constant map in their place breaks the invariant everywhere, so no state
    of the shape fitted these hypotheses before. `port_id`, which init defines pointwise, is
    still updated at the free indices."""
    [(m, ob)] = [(m, ob) for m, ob in _pairs(LINKED) if ob.id == "Ports/VAC"]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
    bases = {str(k): v for k, v in witness.shaped(formula)}
    term = bases["port_id_s"]
    for _ in range(witness.POINTS):
        assert z3.is_store(term)
        term = term.arg(0)
    assert z3.is_quantifier(term) and term.is_lambda()
    assert z3.is_quantifier(bases["port_part_s"]) and bases["port_part_s"].is_lambda()
    assert z3.is_app_of(bases["port_part_s"].body(), z3.Z3_OP_EXTRACT)  # no test of a range: the whole sort
    assert z3.is_quantifier(bases["slot_of_s"]) and z3.is_app_of(bases["slot_of_s"].body(), z3.Z3_OP_ITE)
    assert "shape!slot_of_s!base" in str(bases["slot_of_s"].body().arg(2))  # its own free value outside
    assert "rest" not in str(bases["slot_of_s"])  # no array left free
    # the shape satisfies init, so the hypotheses of every obligation have a shaped model
    used, model = solve._shaped([witness.shaped(formula)], [h.term for h in formula.hypotheses], Options(),
                                Options.rlimit)
    assert model is not None, used


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_layer_with_index_linked_maps_proves_in_both_encodings(encoding: str) -> None:
    """Its VAC obligations ask for a model of the invariants over 2^64 ports and 2^36 slots: in
    the quantified encoding Z3 built none (UNKNOWN after 40M units); init's Λ is one."""
    results = prove_pairs(_pairs(LINKED), Options(encoding=encoding))
    assert all(r.status is Status.PROVED for r in results), [(r.obligation.id, r.detail) for r in results]
    assert {r.obligation.id for r in results} >= {"Ports/VAC", "Ports/VAC/noop"}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_leak_through_an_index_linked_map_fails_with_a_counterexample(encoding: str) -> None:
    """Nickel's sys_get_queueing_port_id (bench/arinc653/leak_get_port_id.mv, Nickel's 64-bit
    widths) returns the id of a port of another partition. Its counterexample needs a state
    where a port belongs to its partition (`port_part[concat(p, i)] == p`): Z3 builds no model
    of that over 2^64 ports, and no constant map fits it, so the obligation was UNKNOWN after
    the whole rlimit in both encodings. The shape of the map is init's Λ now: FAILED, the two
    runs differing in the looked-up port of another partition: its id, or its type (the call's
    status then differs; which of the two Z3 picks changed when the shapes were put into the
    counterexample search, solve._in_shape)."""
    path = ROOT / "bench" / "arinc653" / "leak_get_port_id.mv"
    pairs = [(m, ob) for m, ob in obligations([load_file(path, {})]) if ob.id == "SK/OC/sys_get_queueing_port_id"]
    [result] = prove_pairs(pairs, Options(encoding=encoding))
    assert result.status is Status.FAILED and result.counterexample is not None, result.detail
    assert result.counterexample.failing == ("the result of `sys_get_queueing_port_id` differs between the runs",)
    rows = [row for _, _, table in result.counterexample.tables for row in table]
    varying = {row.name for row in rows if row.varies and not row.name.startswith("cfg_")}
    assert varying and varying <= {"port_id[0x0000000000000000]", "ptype[0x0000000000000000]"}, rows
    assert "port_part[0x0000000000000000]" in {row.name for row in rows}, rows  # the port's partition is shown



# A real leak through a map init defines by index-linking: KServ copies secret[x] into `out`, which
# it observes, where x = concat(v, i) is one of VM(v)'s ports. Two runs: the same `out` and
# port_part, secret[x] = 0 in one and 1 in the other; after copy(x), KServ's `out` differs.
LINKED_LEAK = """\
principal KServ
principal VM(v: vmid)
type vmid = bv[32]
type pidx = bv[32]
layer Ports {
  state {
    port_part : map[bv[64]] -> vmid
    secret    : map[bv[64]] -> bv[8]
    out       : bv[8]
  }
  init { forall p: vmid, i: pidx. port_part[concat(p, i)] == p }
  invariant linked { forall p: vmid, i: pidx. port_part[concat(p, i)] == p }
  observe KServ { out }
  observe VM(v) { secret[x] for x: bv[64] where port_part[x] == v }
  op copy(x: bv[64]) by KServ {
    out := secret[x]
  }
}
"""


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_an_index_linked_shape_neither_hides_a_leak_nor_a_contradiction(
        tmp_path: Path, order: str, encoding: str) -> None:
    """Attack on the index-linking shapes: init's Λ is a model of `linked`, which the shaped
    checks now find. The leak still FAILS its WSC with a counterexample at `copy`'s line. Add an
    invariant that contradicts `linked` (port 2^32 is VM(1)'s by `linked`, VM(2)'s by `clash`):
    VAC is VACUOUS, INIT FAILS, and no obligation that assumes the invariants is PROVED. Over two
    files in either order, both encodings."""
    pairs = [(m, ob) for m, ob in obligations(split_over_two_files(tmp_path, LINKED_LEAK, "KServ", order))
             if ob.id == "Ports/WSC/copy/KServ"]
    [leak] = prove_pairs(pairs, Options(encoding=encoding))
    assert leak.status is Status.FAILED and leak.counterexample is not None, leak.detail
    assert leak.counterexample.failing == ("observation `out` differs",)
    assert [(Path(s.file).name, LINKED_LEAK.splitlines()[s.line - 1].strip()) for s in leak.counterexample.responsible] \
        == [("model.mv", "out := secret[x]")]
    clash = LINKED_LEAK.replace("  observe KServ", "  invariant clash { port_part[0x0000000100000000] == 2 }\n"
                                                   "  observe KServ")
    results = {r.obligation.id: r for r in prove_pairs(obligations(split_over_two_files(
        tmp_path, clash, "KServ", order)), Options(encoding=encoding))}
    assert results["Ports/VAC"].status is Status.VACUOUS
    assert results["Ports/INIT"].status is Status.FAILED
    assert all(r.status is not Status.PROVED for i, r in results.items()  # VIEW assumes no invariant
               if i.startswith("Ports/") and "/VIEW/" not in i), {i: r.status for i, r in results.items()}


def test_a_counterexample_of_the_shape_is_looked_for_before_the_goal_has_spent_the_rlimit() -> None:
    """In the quantified encoding, the goal's check in the solver of the hypotheses has a
    quarter of --rlimit (solve.GOAL_SHARE) before the shaped search: INIT of the clashing model
    has a counterexample of the shape (found in a few hundred units) that Z3 does not build in
    that check. It FAILS after that quarter, where it spent all of --rlimit first (20,000,471
    units, 7 s); the same verdict and counterexample either way."""
    clash = LINKED_LEAK.replace("  observe KServ", "  invariant clash { port_part[0x0000000100000000] == 2 }\n"
                                                   "  observe KServ")
    pairs = [(m, ob) for m, ob in obligations([load_text(clash, "clash.mv")]) if ob.id == "Ports/INIT"]
    options = Options(encoding="quantified")
    [init] = prove_pairs(pairs, options)
    assert init.status is Status.FAILED and init.counterexample is not None, init.detail
    assert options.rlimit // solve.GOAL_SHARE < init.rlimit_used < options.rlimit // 2, init.rlimit_used


def test_a_layers_shape_is_built_once_and_is_the_shape_built_for_the_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    """witness._BUILT: the obligations of a layer share its shapes, built in a context of their
    own and translated into each formula's. What a formula gets is exactly the shape built from
    it, for every formula of two modules that declare a layer L with the same state and another
    `init` (a shape keyed without `init` would hand one module the other's definitions)."""
    monkeypatch.setattr(witness, "_BUILT", {})
    direct = witness._shaped
    built: list[object] = []

    def spy(layer, runs, points):  # type: ignore[no-untyped-def]
        built.append(layer.ctx)
        return direct(layer, runs, points)

    monkeypatch.setattr(witness, "_shaped", spy)
    other = WIDE.replace("else if p >= MMIO_BASE && p < MMIO_END then Mmio else Host", "else Host")
    assert other != WIDE
    formulas = 0
    for text in (WIDE, other, WIDE):
        for m, ob in _pairs(text):
            formula = build(fingerprint.slice_module(m, ob), ob, z3.Context(), "quantified")
            got, expected = witness.shaped(formula), direct(formula.layer, formula.runs, witness.POINTS)
            assert len(got) == len(expected) > 0, ob.id
            assert all(a.eq(b) and s.eq(t) for (a, s), (b, t) in zip(got, expected)), ob.id
            formulas += 1
    # one per pre-state layout (VAC's one run, the two runs of the others) and module
    assert all(ctx is shared.CONTEXT for ctx in built) and len(built) == 4 < formulas


def test_resource_figures_do_not_depend_on_what_ran_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """An obligation uses the same resource units alone and after others, whatever memo
    (solve._SHOWN, the shapes of witness._BUILT, the predicates of shared._LOWERED) they filled. Xmhf's boot states fit no shape:
    their hypotheses are then checked in their quantifier-free form. Two things keep the figure
    fixed: a shape reaches the formula's context the same way whether it was in the memo or not
    (translated from shared.CONTEXT), and that check has a context of its own. A memo whose
    hit and miss differ, with that check in the formula's context, gave Xmhf/INIT 61312 units
    alone and 61276 after the others."""
    modules = [load_file(f, {}) for f in discover([ROOT / "proofs" / "xmhf"])]
    pairs = obligations(modules)
    monkeypatch.setattr(witness, "_BUILT", {})
    monkeypatch.setattr(solve, "_SHOWN", {})
    together = {r.obligation.id: (r.status, r.rlimit_used) for r in prove_pairs(pairs, Options())}
    assert {status for status, _ in together.values()} == {Status.PROVED}
    boots = [(m, ob) for m, ob in pairs if ob.kind.value in ("INIT", "R-INIT")]
    assert len(boots) == 3
    for pair in boots:
        monkeypatch.setattr(witness, "_BUILT", {})
        monkeypatch.setattr(solve, "_SHOWN", {})
        monkeypatch.setattr(shared, "_LOWERED", {})
        [alone] = prove_pairs([pair], Options())
        assert (alone.status, alone.rlimit_used) == together[alone.obligation.id], alone.obligation.id


TABLES = """\
principal KServ
principal VM(v: vmid)
type vmid = bv[16]
type gfn  = bv[36]
type pte_t = record { valid: bool, pfn: gfn }
layer T {
  state { s2 : map[vmid] -> map[gfn] -> pte_t  pool : map[vmid] -> map[gfn] -> bool }
  init { forall v: vmid, g: gfn. !s2[v][g].valid }
  invariant own { forall v: vmid, g: gfn. s2[v][g].valid ==> s2[v][g].pfn != 0 }
  observe VM(v) { s2[v][g].valid for g: gfn }
  op map(v: vmid, g: gfn) by VM(v) { s2[v][g].valid := true  s2[v][g].pfn := 1 }
}
"""


def test_the_shape_of_a_map_of_maps_init_defines_is_its_definition_updated_at_every_level() -> None:
    """`forall v, g. !s2[v][g].valid` defines s2's valid bits: the shape is that definition,
    updated at two VMs, each VM's table being the defined one updated at two gfns; a map of maps
    `init` does not define keeps free values at its two indices."""
    [(m, ob)] = [(m, ob) for m, ob in _pairs(TABLES) if ob.id == "T/VAC"]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
    pairs = {str(k): v for k, v in witness.shaped(formula)}
    assert set(pairs) == {"s2_s.valid", "s2_s.pfn", "pool_s"}
    term = pairs["s2_s.valid"]
    v, g = z3.BitVec("v", 16, term.ctx), z3.BitVec("g", 36, term.ctx)
    at = {str(c): c for c in _shape_constants(term) if "!at" in str(c)}
    outer = [c for name, c in at.items() if c.sort() == v.sort()]
    assert len(outer) == witness.POINTS and len(at) == witness.POINTS + witness.POINTS ** 2
    entry = z3.Select(z3.Select(term, v), g)
    off = z3.Solver(ctx=term.ctx)  # off the VMs' indices, an entry is init's: invalid
    off.add(z3.And(*[v != a for a in outer]), entry)
    assert off.check() == z3.unsat
    first = str(outer[0]).rsplit("!at", 1)[0]  # shape!N: the first VM's table is shape!N!0
    on = z3.Solver(ctx=term.ctx)  # at a VM's index and one of its table's, the entry is free
    on.add(v == at[f"{first}!at0"], g == at[f"{first}!0!at0"], z3.Distinct(*outer), entry)
    assert on.check() == z3.sat
    on_other = z3.Solver(ctx=term.ctx)  # at a VM's index but off its table's, init's again
    on_other.add(v == at[f"{first}!at0"], g != at[f"{first}!0!at0"], g != at[f"{first}!0!at1"],
                  z3.Distinct(*outer), entry)
    assert on_other.check() == z3.unsat
    for _ in range(witness.POINTS):  # `pool` is not defined: a constant map with free values at two VMs
        assert z3.is_store(pairs["pool_s"]) and not z3.is_store(pairs["pool_s"].arg(2))
        pairs["pool_s"] = pairs["pool_s"].arg(0)
    assert z3.is_K(pairs["pool_s"])


def _shape_constants(t: z3.ExprRef) -> list[z3.ExprRef]:
    out: dict[int, z3.ExprRef] = {}
    todo = [t]
    while todo:
        u = todo.pop()
        if z3.is_const(u) and u.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            out[u.get_id()] = u
        elif z3.is_app(u):
            todo.extend(u.children())
        elif z3.is_quantifier(u):
            todo.append(u.body())
    return list(out.values())


VACUOUS = {
    # an invariant that contradicts `statics` at KCore's first page: no state satisfies them
    "no-state": ("L/VAC", "  invariant born", "  invariant bad { owner[KCORE_BASE] == Host }\n  invariant born"),
    # an operation that halts in every state
    "always-halts": ("L/VAC/start", "check vmst[v] == Unused else halt",
                     "check vmst[v] == Unused && vmst[v] == Started else halt"),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", sorted(VACUOUS))
def test_what_has_no_model_is_never_proved(case: str, encoding: str) -> None:
    """The shaped check finds no model (there is none), and the exact check decides."""
    expected, old, new = VACUOUS[case]
    text = WIDE.replace(old, new)
    assert text != WIDE
    [result] = _results(text, (expected,), encoding=encoding, rlimit=2_000_000).values()
    assert result.status in (Status.VACUOUS, Status.UNKNOWN), (result.status, result.detail)  # type: ignore[attr-defined]


def test_an_invariant_broken_at_the_wide_widths_fails() -> None:
    """`assign` without its owner check hands a KCore page to a VM: INV fails, with a
    counterexample, after the shaped check found the hypotheses satisfiable."""
    text = WIDE.replace("check owner[p] == Host && vmst[v] == Started", "check vmst[v] == Started")
    [result] = _results(text, ("L/INV/assign",)).values()
    assert result.status is Status.FAILED and result.counterexample is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_split_over_two_files_what_has_no_model_is_never_proved(tmp_path: Path, order: str, encoding: str) -> None:
    """The contradictory invariant in a file another one imports, the files in either order."""
    expected, old, new = VACUOUS["no-state"]
    modules = split_over_two_files(tmp_path, WIDE.replace(old, new), "KServ", order)
    pairs = [(m, ob) for m, ob in obligations(modules) if ob.id == expected]
    assert pairs, expected
    results = prove_pairs(pairs, Options(encoding=encoding, rlimit=2_000_000))
    assert all(r.status in (Status.VACUOUS, Status.UNKNOWN) for r in results), [(r.status, r.detail) for r in results]


# A VM's own step hands its page back to KServ: KServ sees the VM act, against the policy
# (KServ -> VM only). In a state where VM(0) owns page 5, release(0, 5) turns owner[5] from
# Guest to Host, which KServ observes: LR fails for KServ.
LEAK = WIDE.replace("  op start(", """  op release(v: vmid, p: pfn) by VM(v) {
    check owner[p] == Guest && ovm[p] == v else halt
    owner[p] := Host
  }
  op start(""")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_a_leak_at_the_wide_widths_is_never_proved(tmp_path: Path, order: str, encoding: str) -> None:
    """LR fails for KServ; the shaped check never turns that into PROVED, in either encoding
    and either file order, and the default encoding gives the counterexample."""
    modules = split_over_two_files(tmp_path, LEAK, "KServ", order)
    pairs = [(m, ob) for m, ob in obligations(modules) if ob.id == "L/LR/release/KServ"]
    assert pairs
    results = prove_pairs(pairs, Options(encoding=encoding))
    assert all(r.status in (Status.FAILED, Status.UNKNOWN) for r in results), [(r.status, r.detail) for r in results]
    if encoding == "qf":
        assert all(r.status is Status.FAILED and r.counterexample is not None for r in results)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_leak_z3_gives_up_on_is_found_in_a_shaped_state_before_the_checks_that_follow(
        monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    """Z3 gives up on the negated goal (a model of universals over 2^36 pages); a shaped state
    is looked for right after that, not after the checks that follow, which a leak runs to their
    limits (docs/theory.md §2): in the default encoding the exact-first check finds it, for the
    conjunct Z3 gave up on, and the quantifier-free encoding is never solved; in the quantified
    one it comes after the first check of the goal, before the second."""
    if encoding == "qf":
        monkeypatch.setattr(solve, "_check", lambda *a: pytest.fail("the quantifier-free encoding was solved"))
    checks = record_fresh_checks(monkeypatch)
    [result] = _results(LEAK, ("L/LR/release/KServ",), encoding=encoding, rlimit=2_000_000).values()
    assert result.status is Status.FAILED and result.counterexample is not None, result.detail  # type: ignore[attr-defined]
    [failing] = result.counterexample.failing  # type: ignore[attr-defined]
    assert failing.startswith("observation `owner[p] for p: pfn` differs at p = ")
    stages = [c.stage for c in checks]
    assert solve.GOAL_STAGE not in stages and stages[-1] == "looking for a model of the witness shape"


# The same leak, but only where VM(v) holds three pages: no state of the witness shape (init
# updated at two indices) shows it. From a state where VM(0) owns pages 1, 2 and 3 (assigned by
# KServ after start(0)), release3(0, 1, 2, 3) turns owner[1] from Guest to Host, which KServ
# observes; with only page 1 it changes nothing.
LEAK_OF_THREE = WIDE.replace("  op start(", """  op release3(v: vmid, a: pfn, b: pfn, c: pfn) by VM(v) {
    check owner[a] == Guest && ovm[a] == v else halt
    if a != b && b != c && a != c && owner[b] == Guest && ovm[b] == v && owner[c] == Guest && ovm[c] == v {
      owner[a] := Host
    }
  }
  op start(""")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_a_leak_no_shaped_state_shows_goes_on_to_the_checks_that_follow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str, encoding: str) -> None:
    """The shaped search finds nothing (the hypotheses fit the shape, the leak does not): that
    says nothing, the checks that follow still run, and the leak is never PROVED, in either
    encoding and either file order (Z3 gives up on it at this rlimit: UNKNOWN)."""
    checks = record_fresh_checks(monkeypatch)
    modules = split_over_two_files(tmp_path, LEAK_OF_THREE, "KServ", order)
    pairs = [(m, ob) for m, ob in obligations(modules) if ob.id == "L/LR/release3/KServ"]
    assert pairs
    results = prove_pairs(pairs, Options(encoding=encoding, rlimit=2_000_000))
    assert all(r.status is Status.FAILED and r.counterexample is not None or r.status is Status.UNKNOWN
               for r in results), [(r.status, r.detail) for r in results]
    shaped, stages = "looking for a model of the witness shape", [c.stage for c in checks]
    assert stages[-2:] == [shaped, solve.GOAL_STAGE], stages  # the second check of the goal, after the search
    if encoding == "qf":  # the exact-first check searched for the conjunct it gave up on, then went on
        last = len(stages) - 1 - stages[::-1].index(solve.EXACT_STAGE)
        assert stages[last + 1] == shaped and solve.GOAL_STAGE in stages[last + 2:], stages


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
@pytest.mark.parametrize("limit, where", [(40, "weakened"), (8, "kept")])
def test_a_leak_is_never_proved_when_the_index_set_is_cut_at_the_instance_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str, encoding: str, limit: int, where: str) -> None:
    """The same leak with pass 3 cut at INSTANCE_LIMIT (docs/theory.md §9): at 40 in a later
    round (a weakened result keeps the last finished round), at 8 in the first (nothing is
    kept). Either way the leak is never PROVED, and the default encoding still finds it."""
    monkeypatch.setattr(qf, "INSTANCE_LIMIT", limit)
    modules = split_over_two_files(tmp_path, LEAK, "KServ", order)
    pairs = [(m, ob) for m, ob in obligations(modules) if ob.id == "L/LR/release/KServ"]
    assert pairs
    m, ob = pairs[0]
    cut = solve._eliminate(build(m, ob, z3.Context(), "quantified"), weaken=True)
    assert f"the index set did not close within {limit} instances per round" in getattr(cut, where)
    results = prove_pairs(pairs, Options(encoding=encoding))
    assert all(r.status in (Status.FAILED, Status.UNKNOWN) for r in results), [(r.status, r.detail) for r in results]
    if encoding == "qf":
        assert all(r.status is Status.FAILED and r.counterexample is not None for r in results)


@pytest.mark.parametrize("text", [LINKED_LEAK, LEAK], ids=["linked-leak", "wide-leak"])
def test_a_failure_found_by_the_exact_check_counts_every_check_it_made(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An obligation decided by the exact-first check reports as its resource figure what its
    checks spent (the whole goal's in the formula's context, each other in a context of its
    own), the shaped counterexample search included: its units were read before that search
    ran and added to them, so a FAILED reported 1000470 units for 1003347 spent (LINKED_LEAK's
    WSC), and 11025434 for 11058298 (LEAK's LR)."""
    whole: list[int] = []  # the whole goal's units (in the formula's context, not a fresh one)
    reached: list[str] = []
    real_check, real_whole = solve._check, solve._whole_goal

    def spy_whole(formula, options):  # type: ignore[no-untyped-def]
        answer, units = real_whole(formula, options)
        whole.append(units)
        return answer, units

    def spy_check(ob, *args):  # type: ignore[no-untyped-def]
        reached.append(ob.id)
        return real_check(ob, *args)

    checks = record_fresh_checks(monkeypatch)
    monkeypatch.setattr(solve, "_check", spy_check)
    monkeypatch.setattr(solve, "_whole_goal", spy_whole)
    failed = 0
    for pair in obligations([load_text(text, "leak.mv")]):
        checks.clear()
        whole.clear()
        reached.clear()
        monkeypatch.setattr(solve, "_SHOWN", {})  # no figure taken from an earlier obligation
        [result] = prove_pairs([pair], Options())
        if not reached:  # decided by the exact-first check
            assert result.rlimit_used == sum(whole) + sum(c.units for c in checks), result.obligation.id
            failed += result.status is Status.FAILED
    assert failed > 0


# An operation whose hypotheses need two pages of VM(v) (`owner` updated at two indices over the
# base init gives it): no state of the one-index shape fits them, one of the two-index shape does.
# Writing `ovm[a] := v` changes nothing; LEAKY_TWO_PAGES gives page a back to KServ, which KServ
# observes (its `owner[p] for p: pfn`) and VM(v) may not tell it (the policy is KServ -> VM).
TWO_PAGES = WIDE.replace("  op start(", """  op settle(v: vmid, a: pfn, b: pfn) by VM(v) {
    check a != b && owner[a] == Guest && ovm[a] == v && owner[b] == Guest && ovm[b] == v else halt
    ovm[a] := v
  }
  op start(""")
LEAKY_TWO_PAGES = TWO_PAGES.replace("    ovm[a] := v\n", "    owner[a] := Host\n")


def test_the_shapes_are_tried_at_one_free_index_then_at_two() -> None:
    """witness.shapes: the shape at one free index, then at POINTS; a formula whose maps all
    have an index-linking shape (updated nowhere) gets the one shape once."""
    [(m, ob)] = [(m, ob) for m, ob in _pairs(WIDE) if ob.id == "L/VAC"]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
    ladder = list(witness.shapes(formula))
    assert witness.LADDER == (1, witness.POINTS) and len(ladder) == 2
    for points, shape in zip(witness.LADDER, ladder):
        for _, term in shape:
            depth = 0
            while z3.is_store(term):
                depth, term = depth + 1, term.arg(0)
            assert depth == points
    linked_only = LINKED.replace("    port_id   : map[bv[64]] -> bv[64]\n", "").replace(
        ";\n    forall n: bv[64]. port_id[n] == 0", "").replace("observe KServ { port_id }", "observe KServ { port_part }")
    [(m, ob)] = [(m, ob) for m, ob in _pairs(linked_only) if ob.id == "Ports/VAC"]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
    assert len(list(witness.shapes(formula))) == 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_hypotheses_no_one_index_shape_fits_are_shown_by_the_two_index_one(
        monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    """`settle` needs two pages of one VM: its VAC and INV prove, the shaped search at one free
    index finds nothing and the one at two finds the model, within one budget (what the first
    spent is taken from the second's limit)."""
    checks = record_fresh_checks(monkeypatch, lambda: "")
    monkeypatch.setattr(solve, "_SHOWN", {})
    ids = ("L/VAC/settle", "L/INV/settle")
    results = _results(TWO_PAGES, ids, encoding=encoding)
    assert {i: r.status for i, r in results.items()} == dict.fromkeys(ids, Status.PROVED)  # type: ignore[attr-defined]
    shaped = [c for c in checks if c.stage == "looking for a model of the witness shape"]
    firsts = [i for i, c in enumerate(shaped) if c.answer != z3.sat]
    assert firsts and all("!at1" not in str(shaped[i].assertions) for i in firsts)
    for i in firsts:
        first, then = shaped[i], shaped[i + 1]
        assert then.answer == z3.sat and "!at1" in str(then.assertions) and then.rlimit == first.rlimit - first.units


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
def test_a_leak_through_an_operation_that_needs_two_indices_is_never_proved(
        tmp_path: Path, order: str, encoding: str) -> None:
    """LEAKY_TWO_PAGES: KServ sees VM(v) give back page a (`owner[a]` goes from Guest to Host, a
    state that needs two pages of VM(v)). Its LR for KServ FAILS with a counterexample, replayed
    where the interpreter can run it, in either encoding and either file order; its VAC and INV
    still prove."""
    modules = split_over_two_files(tmp_path, LEAKY_TWO_PAGES, "KServ", order)
    pairs = [(m, ob) for m, ob in obligations(modules) if ob.id in ("L/LR/settle/KServ", "L/VAC/settle", "L/INV/settle")]
    assert len(pairs) == 3
    results = {r.obligation.id: r for r in prove_pairs(pairs, Options(encoding=encoding))}
    assert results["L/VAC/settle"].status is results["L/INV/settle"].status is Status.PROVED
    leak = results["L/LR/settle/KServ"]
    assert leak.status is Status.FAILED and leak.counterexample is not None, leak.detail
    assert_replayed([leak], too_large_ok=True)
