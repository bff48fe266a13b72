"""The result cache is keyed on what an obligation is built from, not on its formula
(prover/fingerprint.py): a fully cached run builds no formula, an edit re-proves exactly the
obligations that read what changed, and a change that alters a formula can never hit an old
entry."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import z3

from conftest import CASES, PROOFS, SECURE, SPLIT_ORDERS, assert_replayed, split_over_two_files
from microverify.dsl import ir
from microverify.dsl.loader import load_file, load_text
from microverify.dsl.spans import Span
from microverify.dsl.types import BOOL, PRINCIPAL, BVType
from microverify.prover import driver, fingerprint, solve
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.obligations import Kind
from microverify.prover.solve import build, smt2
from microverify.prover.verdict import ENCODINGS, Options, Result, Status, cache_key


def run(modules: list[ir.Module], cache: Path, options: Options | None = None) -> dict[str, Result]:
    return {r.obligation.id: r for r in prove_pairs(obligations(modules), options or Options(), cache_dir=cache)}


def fresh(results: dict[str, Result]) -> set[str]:
    return {i for i, r in results.items() if not r.cached}


def copy_stack(tmp_path: Path) -> Path:
    for name in ("spec.mv", "machine.mv"):
        shutil.copy(CASES / "stacks" / name, tmp_path / name)
    return tmp_path / "machine.mv"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


# -- the slice is what the formula is built from


@pytest.mark.parametrize("path", [PROOFS / "tutorial" / "pages.mv", CASES / "stacks" / "machine.mv"],
                         ids=["top", "refinement"])
def test_the_slice_builds_the_same_formula_as_the_whole_module(path: Path) -> None:
    module = load_file(path, {})
    pairs = obligations([module])
    kinds = {}
    for _, ob in pairs:  # one obligation of each kind and layer, to keep it quick
        kinds.setdefault((ob.layer, ob.kind), ob)
    assert len(kinds) >= 8
    for ob in kinds.values():
        whole = smt2(build(module, ob, z3.Context()))
        sliced = smt2(build(fingerprint.slice_module(module, ob), ob, z3.Context()))
        assert whole == sliced, ob.id


def test_a_slice_holds_only_the_operations_the_obligation_reads() -> None:
    module = load_file(CASES / "stacks" / "machine.mv", {})
    (ob,) = [ob for _, ob in obligations([module]) if ob.id == "Machine/R-STEP/donate"]
    sliced = fingerprint.slice_module(module, ob)
    assert [(layer.name, [op.name for op in layer.ops]) for layer in sliced.layers] == \
        [("Machine", ["donate"]), ("Spec", ["donate"])]
    (obs,) = [ob for _, ob in obligations([module]) if ob.id == "Machine/R-OBS/KServ"]
    assert [len(layer.ops) for layer in fingerprint.slice_module(module, obs).layers] == [0, 0]
    (inv,) = [ob for _, ob in obligations([module]) if ob.id == "Machine/INV/donate"]
    assert [layer.name for layer in fingerprint.slice_module(module, inv).layers] == ["Machine"]


# -- what a cached run does


def test_a_fully_cached_run_builds_no_formula(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_file(PROOFS / "tutorial" / "pages.mv", {})
    first = run([module], tmp_path)
    assert all(r.status is Status.PROVED for r in first.values()) and len(first) > 30

    def no_lowering(*args: object, **kwargs: object) -> None:
        raise AssertionError("a formula was built for a cached obligation")

    monkeypatch.setattr(solve, "build", no_lowering)
    monkeypatch.setattr(solve, "formulate", no_lowering)
    second = run([load_file(PROOFS / "tutorial" / "pages.mv", {})], tmp_path)
    assert second.keys() == first.keys()
    assert all(r.cached and r.status is Status.PROVED for r in second.values())
    assert [r.rlimit_used for r in second.values()] == [r.rlimit_used for r in first.values()]
    assert [r.quantified for r in second.values()] == [r.quantified for r in first.values()]


SOLVING_MODULES = ("microverify.prover.solve", "microverify.prover.qf", "microverify.prover.counterexample",
                   "microverify.prover.replay", "microverify.prover.shared", "microverify.dsl.parser", "lark")


def test_a_fully_cached_run_imports_neither_the_solver_nor_the_parser(tmp_path: Path) -> None:
    """What a fully cached `prove` costs is mostly start-up (docs/ci.md, Speed): it imports what
    decides the keys and prints the report, not the machinery that builds and solves formulas
    (prover/verdict.py) nor lark (dsl/astcache.py). A run that solves imports the parser, and
    its solving process the solver (prover/process.py)."""
    shutil.copy(PROOFS / "tutorial" / "context_switch.mv", tmp_path / "m.mv")  # it has a flow policy
    show = ("import sys; from microverify.prover.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
            "print(code, *sorted(m for m in sys.modules if m.startswith(('microverify', 'lark'))))")

    def loaded() -> set[str]:
        done = subprocess.run([sys.executable, "-c", show, "--cache-dir", str(tmp_path / "c"), "-q", str(tmp_path)],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        code, *modules = done.stdout.split("\n")[-2].split()
        assert code == "0", done.stdout + done.stderr
        return set(modules)

    cold, cached = loaded(), loaded()
    assert {"microverify.dsl.parser", "lark"} <= cold
    assert all(importlib.util.find_spec(name) is not None for name in SOLVING_MODULES)  # the names are right
    assert not set(SOLVING_MODULES) & cached, set(SOLVING_MODULES) & cached


def test_the_first_obligation_solved_is_not_timed_for_importing_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The solver is imported when the first obligation is solved; that import is not part of
    the obligation's time (--durations, JSON, JUnit)."""
    imported: list[float] = []

    def slow_import() -> float:  # as the real one: slow the first time only
        if imported:
            return 0.0
        time.sleep(0.5)
        imported.append(0.5)
        return 0.5

    monkeypatch.setattr(driver, "import_solver", slow_import)
    results = prove_pairs(obligations([load_text(SECURE, "m.mv")]), Options())
    assert results and max(r.seconds for r in results) < 0.4, [(r.obligation.id, r.seconds) for r in results[:3]]


def test_comments_and_layout_change_no_key(tmp_path: Path) -> None:
    model = copy_stack(tmp_path)
    first = run([load_file(model, {})], tmp_path / "cache")
    text = model.read_text()
    model.write_text("// a comment that moves every span\n\n" + text.replace("  op ", "\n  op "))
    second = run([load_file(model, {})], tmp_path / "cache")
    assert second.keys() == first.keys() and not fresh(second)


def test_editing_an_upper_operation_reproves_it_and_what_implements_it(tmp_path: Path) -> None:
    model = copy_stack(tmp_path)
    run([load_file(model, {})], tmp_path / "cache")
    edit(tmp_path / "spec.mv", "op vm_read(v: vmid, p: pfn) by VM(v) -> word {",
         "op vm_read(v: vmid, p: pfn) by VM(v) -> word {\n    let unused = p + 1")
    second = run([load_file(model, {})], tmp_path / "cache")
    assert fresh(second) == {i for i in second if i.startswith("Spec/") and "/vm_read" in i} | \
        {i for i in second if i.startswith("Machine/R-") and i.endswith("/vm_read")}
    assert all(r.status is Status.PROVED for r in second.values())


def test_editing_the_invariants_reproves_the_whole_layer(tmp_path: Path) -> None:
    model = copy_stack(tmp_path)
    run([load_file(model, {})], tmp_path / "cache")
    edit(model, "invariant page0 { frame[0].owner == KServ }",
         "invariant page0 { frame[0].owner == KServ && !(frame[0].owner != KServ) }")
    second = run([load_file(model, {})], tmp_path / "cache")
    assert fresh(second) == {i for i in second if i.startswith("Machine/")}


def test_a_policy_edge_reproves_everything(tmp_path: Path) -> None:
    model = tmp_path / "m.mv"
    model.write_text(SECURE)
    first = run([load_file(model, {})], tmp_path / "cache")
    model.write_text(SECURE.replace("principal VM(v: bv[1])\n", "principal VM(v: bv[1])\npolicy { KServ -> VM }\n"))
    second = run([load_file(model, {})], tmp_path / "cache")
    assert fresh(second) == set(first)


# -- attacks: an edit that makes a model leak must never be answered from the cache


LEAKY_WRITES = [
    # the operation itself
    ("op write(v: bv[1], x: bv[8]) by VM(v) { secret[v] := x }",
     "op write(v: bv[1], x: bv[8]) by VM(v) { secret[v + 1] := x }"),
    # the observation, which the operation's obligations read
    ("observe VM(v) { secret[v] }", "observe VM(v) { secret[v]; secret[v + 1] }"),
]


@pytest.mark.parametrize("old,new", LEAKY_WRITES, ids=["op", "observation"])
def test_a_leak_introduced_after_caching_is_found(tmp_path: Path, old: str, new: str) -> None:
    safe = SECURE.replace("op write(v: bv[1], x: bv[8]) by VM(v) { secret[v] := x }",
                          "op write(v: bv[1], x: bv[8]) by VM(v) { secret[v] := x }\n"
                          "  op wipe(v: bv[1]) by VM(v) { secret[v] := 0 }")
    first = run([load_text(safe, "m.mv")], tmp_path)
    assert all(r.status is Status.PROVED for r in first.values())
    second = run([load_text(safe.replace(old, new), "m.mv")], tmp_path)
    assert second["L/LR/write/VM"].status is Status.FAILED
    assert not second["L/LR/write/VM"].cached


# KServ sees the low half of a VM's byte, which stays 0; the leaky variant differs only in the
# two numbers of one extract (the high half, which the VM writes). Two runs: VM 0 writes 1 in
# one and 0 in the other, KServ peeks at VM 0 and sees 1 against 0.
NIBBLES = """\
principal KServ
principal VM(v: bv[1])
layer L {
  state { w : map[bv[1]] -> bv[8]  seen : bv[4] }
  init { forall v: bv[1]. w[v] == 0 }
  invariant low { forall v: bv[1]. extract(w[v], 3, 0) == 0 }
  observe KServ { seen }
  observe VM(v) { w[v] }
  op write(v: bv[1], x: bv[4]) by VM(v) { w[v] := concat(x, extract(w[v], 3, 0)) }
  op peek(v: bv[1]) by KServ { seen := extract(w[v], 3, 0) }
}
"""


@pytest.mark.parametrize("order", SPLIT_ORDERS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_leak_in_the_numbers_of_an_extract_is_not_taken_from_the_cache(tmp_path: Path, encoding: str,
                                                                          order: str) -> None:
    """The key's serialisation writes each number with its end (FORMAT 3): the leaky model's
    obligations never meet the secure one's entries, whichever file is loaded first."""
    options = Options(encoding=encoding)
    (tmp_path / "secure").mkdir()
    (tmp_path / "leaky").mkdir()
    secure = run(split_over_two_files(tmp_path / "secure", NIBBLES, "KServ", order), tmp_path / "c", options)
    assert secure and all(r.status is Status.PROVED for r in secure.values())
    leaky = NIBBLES.replace("seen := extract(w[v], 3, 0)", "seen := extract(w[v], 7, 4)")
    second = run(split_over_two_files(tmp_path / "leaky", leaky, "KServ", order), tmp_path / "c", options)
    failed = second["L/WSC/peek/KServ"]
    assert failed.status is Status.FAILED and not failed.cached and failed.counterexample is not None
    assert_replayed(list(second.values()))


def test_a_type_an_importer_declares_is_in_the_key(tmp_path: Path) -> None:
    """The same imported layer under an 8-bit word leaks what it hides under a 4-bit one."""
    (tmp_path / "lib.mv").write_text("layer Lib {\n  state { secret : map[bv[1]] -> word\n pub : word }\n"
                                     "  observe KServ { pub }\n  observe VM(v) { secret[v] }\n"
                                     "  op copy(v: bv[1]) by KServ { pub := secret[v] >> 4 }\n}\n")
    for width in (4, 8):
        (tmp_path / f"w{width}.mv").write_text(f'principal KServ\nprincipal VM(v: bv[1])\n'
                                               f'type word = bv[{width}]\nimport "lib.mv"\n')
    narrow = run([load_file(tmp_path / "w4.mv", {})], tmp_path / "cache")
    assert narrow["Lib/WSC/copy/KServ"].status is Status.PROVED
    wide = run([load_file(tmp_path / "w8.mv", {})], tmp_path / "cache")
    assert wide["Lib/WSC/copy/KServ"].status is Status.FAILED


# -- what else is in the key


def test_the_options_that_decide_a_proof_are_in_the_key() -> None:
    module = load_text(SECURE, "m.mv")
    ob = obligations([module])[0][1]
    sliced = fingerprint.slice_module(module, ob)
    keys = {cache_key(sliced, ob, o) for o in (Options(), Options(rlimit=1000), Options(seed=1),
                                                 Options(timeout=1.0), Options(encoding="quantified"))}
    assert len(keys) == 5
    assert cache_key(sliced, ob, Options(max_memory=10)) == cache_key(sliced, ob, Options())


def test_different_values_never_digest_alike() -> None:
    """The serialisation under the digest delimits every part, so no two of these collide
    (strings that concatenate alike, a number and its text, a bool and a number, None and
    the letter of its tag, nesting), and a span is the only thing it leaves out."""
    here, there = Span("a.mv", 1, 1, 1, 2), Span("b.mv", 9, 3, 9, 4)
    values: list[object] = [
        ("ab", "c"), ("a", "bc"), ("aSb", "c"), ("a", "bSc"), ("abc",), "abc", ("1",), (1,), (True,), (1, 1), (11,), (None,), ("N",),
        ("B1",), (), ((),), ((), ()), (("a",),), ("a", ()), 0, "0", False, None, -1, "S1:a", ("S1:a",),
        Kind.INV, "INV", (Kind.INV,), (Kind.OC,), BOOL, BVType(4), BVType(5),
        ir.Ref("x", "field", BOOL, here), ir.Ref("x", "arg", BOOL, here), ir.Ref("xfield", "", BOOL, here),
        ir.Lit(True, BOOL, here), ir.Lit(1, BOOL, here), ir.Lit(1, BVType(4), here),
    ]
    # an expression leaf inside another node is written out, not digested: nested, in a tuple,
    # beside a string that spells a digest's tag, and under a principal's argument
    x, y = ir.Ref("x", "field", BVType(4), here), ir.Ref("y", "field", BVType(4), here)
    values += [ir.Unary("neg", x, BVType(4), here), ir.Unary("neg", y, BVType(4), here),
               ir.Unary("neg", ir.Unary("neg", x, BVType(4), here), BVType(4), here),
               ir.Binary("add", x, y, BVType(4), here), ir.Binary("add", y, x, BVType(4), here),
               (x, y), (y, x), (x,), ((x,),), ("H", x), ("D", x),
               ir.PrincipalVal("VM", x, PRINCIPAL, here), ir.PrincipalVal("VM", y, PRINCIPAL, here),
               ir.PrincipalVal("VM", None, PRINCIPAL, here), ir.EnumVal(0, BVType(4), here)]
    digests = [fingerprint.digest(v) for v in values]
    assert len(set(digests)) == len(values)
    assert fingerprint.digest(ir.Ref("x", "field", BOOL, there)) == fingerprint.digest(ir.Ref("x", "field", BOOL, here))
    assert fingerprint.digest((ir.Lit(1, BVType(4), there),)) == fingerprint.digest((ir.Lit(1, BVType(4), here),))
    moved = ir.Binary("add", ir.Ref("x", "field", BVType(4), there), ir.Ref("y", "field", BVType(4), there),
                      BVType(4), there)
    assert fingerprint.digest(moved) == fingerprint.digest(ir.Binary("add", x, y, BVType(4), here))  # in a leaf too


def test_the_tools_own_code_is_in_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_text(SECURE, "m.mv")
    ob = obligations([module])[0][1]
    sliced = fingerprint.slice_module(module, ob)
    before = cache_key(sliced, ob, Options())
    read: list[str] = []
    real = Path.read_bytes

    def counting(self: Path) -> bytes:
        read.append(self.name)
        return real(self)

    fingerprint.tool_digest.cache_clear()
    monkeypatch.setattr(Path, "read_bytes", counting)
    assert fingerprint.tool_digest() == fingerprint.tool_digest()
    assert {"solve.py", "qf.py", "lower.py", "encoding.py", "checker.py", "grammar.lark"} <= set(read)
    monkeypatch.setattr(fingerprint, "tool_digest", lambda: "another version of the code")
    assert cache_key(sliced, ob, Options()) != before


# -- the cache's size: least recently used entries go


def _entries(cache: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in cache.glob("??/*.json")}


def _prove_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", *args],
                          capture_output=True, text=True, timeout=300)


def _age(paths: list[Path], seconds: float) -> None:
    then = time.time() - seconds
    for p in paths:
        os.utime(p, (then, then))


def test_a_run_that_solves_removes_the_least_recently_used_entries_beyond_the_limit(tmp_path: Path) -> None:
    """Three models with disjoint keys: A proved long ago, B less long ago and then used again
    by a fully cached run (which touches its entries and removes nothing), then C proved with
    room for B's and C's entries only: A's go, and B's and C's stay (B re-proves nothing, A
    re-proves everything)."""
    cache = tmp_path / "cache"
    models = {}
    for name, width in (("a", 8), ("b", 7), ("c", 6)):
        models[name] = tmp_path / f"{name}.mv"
        models[name].write_text(SECURE.replace("bv[8]", f"bv[{width}]"))
    made: dict[str, list[Path]] = {}
    for name in ("a", "b"):
        before = set(_entries(cache)) if cache.exists() else set()
        assert _prove_cli("--cache-dir", str(cache), str(models[name])).returncode == 0
        made[name] = sorted(set(_entries(cache)) - before)
        assert made[name]
    _age(made["a"], 3000)
    _age(made["b"], 2000)
    reused = _prove_cli("--cache-dir", str(cache), "--cache-max-entries", "1", str(models["b"]))
    assert reused.returncode == 0 and "(cached)" not in reused.stdout  # -q
    entries = _entries(cache)
    assert set(entries) == {*made["a"], *made["b"]}, "a fully cached run removes nothing"
    assert min(entries[p] for p in made["b"]) > time.time() - 60, "a hit marks its entry used"
    assert max(entries[p] for p in made["a"]) < time.time() - 2500
    _age(made["b"], 1000)  # used after A's, before this run
    (cache / "notes.txt").write_text("not an entry")  # a folder shared with other files loses none of them
    (cache / "ab").mkdir(exist_ok=True)
    (cache / "ab" / "README").write_text("not an entry either")
    before = set(_entries(cache))
    limit = len(made["b"]) + len(_obligation_ids(models["c"]))
    assert _prove_cli("--cache-dir", str(cache), "--cache-max-entries", str(limit), str(models["c"])).returncode == 0
    after = set(_entries(cache))
    made["c"] = sorted(after - before)
    assert made["c"] and after == {*made["b"], *made["c"]}, "A's entries go, B's and C's stay"
    assert (cache / "notes.txt").exists() and (cache / "ab" / "README").exists()
    modules = {name: load_file(models[name], {}) for name in ("a", "b")}
    assert not fresh(run([modules["b"]], cache)), "B is still fully cached"
    assert fresh(run([modules["a"]], cache)) == {ob.id for _, ob in obligations([modules["a"]])}


def _obligation_ids(path: Path) -> list[str]:
    return [ob.id for _, ob in obligations([load_file(path, {})])]


def test_prune_keeps_what_the_run_used_and_removes_left_behind_temporary_files(tmp_path: Path) -> None:
    from microverify.prover.cache import prune

    shard = tmp_path / "0a"
    shard.mkdir()
    ast_dir = tmp_path / "ast"
    ast_dir.mkdir()
    old = [shard / f"0a{i:062x}.json" for i in range(4)]
    new = [shard / f"0a{i + 10:062x}.json" for i in range(3)]
    trees = [ast_dir / f"{i:064x}.json" for i in range(3)]
    (tmp_path / "runs").mkdir()
    fronts = [tmp_path / "runs" / f"{i:064x}.json" for i in range(3)]
    for p in [*old, *new, *trees, *fronts]:
        p.write_text("{}")
    for i, p in enumerate(old):
        _age([p], 5000 - i)  # old[0] is the least recently used
    _age(trees[:2], 5000)
    _age(fronts[:2], 5000)
    stale_tmp, fresh_tmp = shard / ".tmp-abc123.json", shard / ".tmp-def456.json"
    stale_tmp.write_text("half")
    fresh_tmp.write_text("being written")
    _age([stale_tmp], 7200)
    started = time.time() - 10  # `new` and trees[2] were used by this run
    removed = prune(tmp_path, 5, started)
    assert [p.exists() for p in old] == [False, False, True, True]
    assert all(p.exists() for p in new)
    assert all(p.exists() for p in trees), "parsed files are counted apart from results"
    assert not stale_tmp.exists() and fresh_tmp.exists()
    assert removed == 3
    assert prune(tmp_path, 1, started) == 6  # never what this run used, even beyond the limit
    assert [p.exists() for p in old] == [False] * 4 and all(p.exists() for p in new)
    assert [p.exists() for p in trees] == [False, False, True]
    assert [p.exists() for p in fronts] == [False, False, True], "and runs' front ends apart from both"
    assert prune(tmp_path, 1, started) == 0
    assert prune(tmp_path / "missing", 1, started) == 0


def test_prune_never_follows_a_link_out_of_the_cache(tmp_path: Path) -> None:
    """Found by a review: a shard folder that is a link to a folder elsewhere had its old
    entry-named files removed. The cache directory itself may be a link (it is the user's)."""
    from microverify.prover.cache import prune

    outside, real = tmp_path / "outside", tmp_path / "real"
    outside.mkdir()
    real.mkdir()
    victim = outside / f"{'a' * 64}.json"
    victim.write_text("{}")
    _age([victim], 5000)
    (real / "ab").symlink_to(outside)
    (real / "ast").symlink_to(outside)
    (real / "0a").mkdir()
    old = real / "0a" / f"0a{'b' * 62}.json"
    old.write_text("{}")
    _age([old], 5000)
    link = tmp_path / "cache-link"
    link.symlink_to(real)
    assert prune(link, 0, time.time()) == 1
    assert victim.exists() and not old.exists()
