"""Pass 3w of the quantifier-free encoding (prover/qf.py, docs/theory.md §9): in a validity
obligation, a universal that neither the array property fragment nor an expansion removes is
instantiated at the terms it matches, and the goal is checked first under those weaker,
quantifier-free hypotheses. Their `unsat` proves the obligation; their `sat` proves nothing, so
the exact check follows. A satisfiability check (VAC) is never weakened.

The model: partitions own the ports `concat(p, i)` (an index-linking definition, pass 1b), and
each sees the values of its ports. Its views quantify over `concat(v, u)` with v ground, outside
the fragment over 2^32 values: Nickel's ARINC 653 kernel (bench/arinc653) has the same shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import z3

from conftest import SPLIT_ORDERS, load_text, split_over_two_files
from microverify.prover import fingerprint, qf
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.solve import build
from microverify.prover.verdict import ENCODINGS, Options, Status

SECURE = """\
type part   = bv[32]
type pidx   = bv[32]
type portid = bv[64]
type word   = bv[64]
principal Partition(p: part)
principal Scheduler
policy { Scheduler -> Partition }
layer K {
  state {
    cur       : part
    port_part : map[portid] -> part
    num_ports : map[part] -> pidx
    val       : map[portid] -> word
  }
  init {
    forall p: part. num_ports[p] == 0;
    forall x: portid. val[x] == 0;
    forall p: part, i: pidx. port_part[concat(p, i)] == p
  }
  invariant ports_linked { forall p: part, i: pidx. port_part[concat(p, i)] == p }
  observe Partition(v) {
    cur;
    num_ports[v];
    val[x] for x: portid where port_part[x] == v;
  }
  op create(x: word) by Partition(cur) -> portid {
    let pid = concat(cur, num_ports[cur])
    num_ports[cur] := num_ports[cur] + 1
    val[pid] := x
    return pid
  }
  op switch(p: part) by Scheduler {
    cur := p
  }
}
"""
WRITE = "    val[pid] := x\n"
LEAKS = {
    # the new port's value lands in partition cur + 1's port: LR fails for Partition(cur + 1)
    "writes-another-partitions-port": ("K/LR/create/Partition", "    val[concat(cur + 1, num_ports[cur])] := x\n"),
    # the new port holds what partition cur + 1 has at that index: WSC fails for Partition(cur)
    "copies-another-partitions-port": ("K/WSC/create/Partition", "    val[pid] := val[concat(cur + 1, num_ports[cur])]\n"),
}
WEAKENED = {"K/OC/create", "K/WSC/create/Partition", "K/DR/create/Partition", "K/DC/create"}


def _pairs(text: str):  # type: ignore[no-untyped-def]
    return obligations([load_text(text, "<test>")])


def test_the_secure_model_proves_through_pass_3w() -> None:
    pairs = _pairs(SECURE)
    results = prove_pairs(pairs, Options())
    assert [r.obligation.id for r in results if r.status is not Status.PROVED] == []
    weakened = set()
    for m, ob in pairs:
        formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
        if formula.weakened is not None:
            assert formula.mode == "valid" and formula.quantified, ob.id
            weakened.add(ob.id)
    assert WEAKENED <= weakened, weakened
    # proved by the weaker quantifier-free check, not by Z3 on the quantifiers
    assert not [r.obligation.id for r in results if r.quantified]


def test_a_satisfiability_check_is_never_weakened() -> None:
    for m, ob in _pairs(SECURE):
        if ob.kind.value in ("VAC",):
            formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
            assert formula.mode == "sat" and formula.weakened is None, ob.id


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_leak_is_never_proved(leak: str, encoding: str) -> None:
    """The weaker check is `sat` for a leak (its hypotheses hold in the leaky run), so the exact
    check decides: FAILED with a counterexample, or UNKNOWN; never PROVED."""
    expected, line = LEAKS[leak]
    text = SECURE.replace(WRITE, line)
    assert text != SECURE
    pairs = [(m, ob) for m, ob in _pairs(text) if ob.id == expected]
    assert pairs, expected
    [result] = prove_pairs(pairs, Options(encoding=encoding, rlimit=2_000_000))
    assert result.status in (Status.FAILED, Status.UNKNOWN), (result.status, result.detail)
    if result.status is Status.FAILED:
        assert result.counterexample is not None


def test_the_first_leak_gets_a_counterexample() -> None:
    expected, line = LEAKS["writes-another-partitions-port"]
    pairs = [(m, ob) for m, ob in _pairs(SECURE.replace(WRITE, line)) if ob.id == expected]
    [result] = prove_pairs(pairs, Options())
    assert result.status is Status.FAILED and result.counterexample is not None


def _bv(name: str, width: int, ctx: z3.Context) -> z3.BitVecRef:
    return z3.BitVec(name, width, ctx)


def test_a_universal_is_instantiated_at_the_bits_an_index_holds() -> None:
    """`forall u. a[concat(v, u)] == 0` with v ground, used to prove `a[k] == 0` for a k whose
    high half is v: the instance at u := extract(k) is the one needed."""
    ctx = z3.Context()
    a = z3.Array("a", z3.BitVecSort(64, ctx), z3.BitVecSort(8, ctx))
    v, u = _bv("v", 32, ctx), _bv("u", 32, ctx)
    k = _bv("k", 64, ctx)
    hyps = [z3.ForAll([u], a[z3.Concat(v, u)] == 0), z3.Extract(63, 32, k) == v]
    goals = [a[k] == 0]
    exact = qf.eliminate(hyps, goals, -1)
    assert exact.kept and not exact.weakened
    weak = qf.eliminate(hyps, goals, -1, weaken=True)
    assert weak.weakened and not weak.kept
    s = z3.Solver(ctx=ctx)
    s.add(weak.hypotheses + weak.side + weak.definitions)
    s.add(z3.Not(z3.And(weak.goals)))
    assert s.check() == z3.unsat


def test_only_a_universal_in_effect_is_weakened() -> None:
    """A quantifier under `==` between Booleans has both polarities: instantiating it there
    would not weaken the formula. Pass 1a names it first, so only the direction where it is
    universal is weakened (the other is skolemized), and a goal the hypothesis does not imply
    stays unproved; one it implies is proved."""
    ctx = z3.Context()
    a = z3.Array("a", z3.BitVecSort(64, ctx), z3.BitVecSort(8, ctx))
    v, u = _bv("v", 32, ctx), _bv("u", 32, ctx)
    p = z3.Bool("p", ctx)
    hyps = [p == z3.ForAll([u], a[z3.Concat(v, u)] == 0)]
    for goal, implied in ((p, False), (z3.Implies(p, a[z3.Concat(v, z3.BitVecVal(7, 32, ctx))] == 0), True)):
        e = qf.eliminate(hyps, [goal], -1, weaken=True)
        assert not e.kept and e.weakened and len(e.weakened) == 1, (e.kept, e.weakened)
        s = z3.Solver(ctx=ctx)
        s.add(e.hypotheses + e.side + e.definitions + [z3.Not(z3.And(e.goals))])
        assert (s.check() == z3.unsat) is implied


CHAIN = """\
type vmid = bv[16]
type pfn = bv[36]
type otag = enum { Host, Guest, Core }
type vmstate = enum { Unused, Ready }
principal KServ
principal VM(v: vmid)
layer Chain {
  state {
    owner : map[pfn] -> otag
    ovm   : map[pfn] -> vmid
    vmst  : map[vmid] -> vmstate
    img   : map[vmid] -> pfn
  }
  init { forall p: pfn. owner[p] == Host; forall v: vmid. vmst[v] == Unused }
  invariant pages { forall p: pfn. owner[p] == Guest ==> vmst[ovm[p]] != Unused }
  invariant images { forall v: vmid. vmst[v] == Ready ==> owner[img[v]] == Core }
  observe KServ { owner[p] for p: pfn }
  op remap(v: vmid, p: pfn) by KServ -> bool {
    check vmst[v] == Unused && owner[p] == Host else return false
    owner[p] := Core
    img[v] := p
    vmst[v] := Ready
    return true
  }
}
"""


def test_instances_that_do_not_close_still_prove_a_validity_obligation() -> None:
    """SeKVM's shape at hardware sizes (a helper's minimal example): page -> VM (`vmst[ovm[p]]`)
    and VM -> page (`owner[img[v]]`) make new index terms every round, so I never closes and
    the instances may not be complete. For `unsat` that does not matter: INV is proved by the
    weaker check, not left to Z3's quantifier handling. (The model is not secure: KServ's
    result depends on `vmst`, which it does not see; only INIT and INV are asked here.)"""
    pairs = [(m, ob) for m, ob in _pairs(CHAIN) if ob.id == "Chain/INV/remap"]
    m, ob = pairs[0]
    formula = build(fingerprint.slice_module(m, ob), ob, z3.Context())
    assert formula.weakened is not None and formula.quantified
    [result] = prove_pairs(pairs, Options())
    assert result.status is Status.PROVED and not result.quantified, (result.status, result.detail)


def test_a_broken_invariant_in_the_chain_is_never_proved() -> None:
    """remap leaves the VM Unused while its image page is KCore's: `images` does not break, but
    making the page a VM's without a VMID in use breaks `pages`."""
    broken = CHAIN.replace("    owner[p] := Core\n", "    owner[p] := Guest\n    ovm[p] := v\n") \
                  .replace("    vmst[v] := Ready\n", "")
    assert broken != CHAIN
    pairs = [(m, ob) for m, ob in _pairs(broken) if ob.id == "Chain/INV/remap"]
    [result] = prove_pairs(pairs, Options(rlimit=2_000_000))
    assert result.status in (Status.FAILED, Status.UNKNOWN), (result.status, result.detail)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("order", SPLIT_ORDERS)
@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_leak_split_over_two_files_is_never_proved(tmp_path: Path, leak: str, order: str, encoding: str) -> None:
    """The same leaks in a file another one imports, the files given in either order: the
    weaker check never proves them; the write into another partition's port FAILS in the
    default encoding."""
    expected, line = LEAKS[leak]
    modules = split_over_two_files(tmp_path, SECURE.replace(WRITE, line), "Scheduler", order)
    pairs = [(m, ob) for m, ob in obligations(modules) if ob.id == expected]
    assert pairs, expected
    results = prove_pairs(pairs, Options(encoding=encoding, rlimit=2_000_000))
    assert all(r.status in (Status.FAILED, Status.UNKNOWN) for r in results), [(r.status, r.detail) for r in results]
    if encoding == "qf" and leak == "writes-another-partitions-port":
        assert all(r.status is Status.FAILED and r.counterexample is not None for r in results)
