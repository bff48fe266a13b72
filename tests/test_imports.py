"""A file imported by several others is proved once per meaning, not once per name: the layers of
lib.mv use type aliases their importers declare, so a.mv and b.mv give them different types."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

LIB = """layer Lib {
  state { secret : map[vmid] -> word
          pub : word }
  observe KServ { pub }
  observe VM(v) { secret[v] }
  // with 4-bit words this is always 0; with 8-bit words it is the secret's high nibble
  op copy(v: vmid) by KServ { pub := secret[v] >> 4 }
}
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "base.mv").write_text("principal KServ\nprincipal VM(v: bv[1])\n")
    (tmp_path / "lib.mv").write_text(LIB)
    a, b = tmp_path / "a.mv", tmp_path / "b.mv"
    for path, width in ((a, 4), (b, 8)):
        path.write_text(f'import "base.mv"\ntype vmid = bv[1]\ntype word = bv[{width}]\nimport "lib.mv"\n')
    return a, b


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_an_imported_layer_is_proved_under_each_importers_types(tmp_path: Path, order: str) -> None:
    a, b = _files(tmp_path)
    paths = [a, b] if order == "ab" else [b, a]
    r = subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", "--no-cache", *map(str, paths)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED   Lib/WSC/copy/KServ" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "27 of 28 obligations proved, 1 failed"
    # which importer's meaning failed, and a theorem for the other one's (docs/ci.md, "One layer,
    # several contexts")
    assert f"FAILED   Lib/WSC/copy/KServ [{b}]" in r.stdout
    assert f"no theorem for Lib [{b}] (via Lib): it does not follow, since 1 obligation(s) are not proved: " \
           f"Lib/WSC/copy/KServ [{b}]" in r.stdout
    assert f"theorem: Lib [{a}] is noninterfering" in r.stdout


SPEC = """type pfn = bv[2]
principal KServ
layer Spec {
  state { owner: map[pfn] -> principal; mem: map[pfn] -> bv[4] }
  observe KServ { mem[p] for p: pfn where owner[p] == KServ }
  op get(p: pfn) by KServ -> bv[4] { return mem[p] }
}
"""
IMPORTER = """import "spec.mv"
principal VM(v: bv[1])
layer X {
  state { z: bool }
  op nop() by KServ { z := z }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
@pytest.mark.parametrize("order", ["spec first", "importer first"])
def test_a_layer_secure_in_its_own_file_that_leaks_to_a_principal_an_importer_adds(
        tmp_path: Path, order: str, encoding: str) -> None:
    """spec.mv alone has one principal, so every page is KServ's and `get` leaks nothing; its
    importer adds VM(v), and a page VM(0) owns is no longer KServ's to read: `get(2)` returns
    15 in one run and 0 in the other, though the runs agree on KServ's view. Both contexts are
    proved and told apart, each with its own theorem; the counterexample shows the owner that
    hides mem[2] from KServ."""
    spec, importer = tmp_path / "spec.mv", tmp_path / "importer.mv"
    spec.write_text(SPEC)
    importer.write_text(IMPORTER)
    paths = [spec, importer] if order == "spec first" else [importer, spec]
    dump = tmp_path / "smt"
    dump.mkdir()
    r = subprocess.run([sys.executable, "-m", "microverify", "-j1", "--no-cache", "--encoding", encoding,
                        "--dump-smt", str(dump), "--only", "Spec/OC/get", "--only", "Spec/*/KServ",
                        *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"PROVED   Spec/OC/get [{spec}] ") for line in lines), r.stdout
    assert any(line.startswith(f"FAILED   Spec/OC/get [{importer}] ") for line in lines), r.stdout
    assert sum(line.startswith("FAILED") for line in lines) == 1
    assert "confirmed by the reference interpreter" in r.stdout
    hidden = re.search(r"^    owner\[(\d)\] +VM\(\d\) ", r.stdout, re.M)  # why KServ does not see mem[p]
    assert hidden is not None and f"  * mem[{hidden[1]}] " in r.stdout, r.stdout
    # one script per copy: the ids differ, so do the files
    assert len(list(dump.glob("spec-*__Spec_OC_get*.smt2"))) == 2
    full = subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", "--no-cache", "--encoding", encoding,
                           "--format", "json", *map(str, paths)], capture_output=True, text=True, timeout=300)
    report = json.loads(full.stdout)
    contexts = {(o["id"], tuple(o["context"])) for o in report["obligations"] if o["layer"] == "Spec"}
    assert (f"Spec/OC/get [{spec}]", (str(spec),)) in contexts
    assert (f"Spec/WSC/get/VM [{importer}]", (str(importer),)) in contexts  # only the importer has VM
    assert all(context for _, context in contexts)
    assert [t.split(" is ")[0] for t in report["theorems"] if t.startswith("theorem: Spec")] == [f"theorem: Spec [{spec}]"]
    assert any(t.startswith(f"no theorem for Spec [{importer}]") for t in report["theorems"])
    assert any(t.startswith("theorem: X ") for t in report["theorems"])
    [spec_theorem] = [t for t in report["theorems"] if t.startswith("theorem: Spec")]
    assert "observers KServ under" in spec_theorem and "It rests on 10 proved obligations" in spec_theorem


def test_layers_of_one_name_in_two_files_are_told_apart(tmp_path: Path) -> None:
    """Found in review: two files, each with its own layer A, gave `FAILED A/OC/g` and `no
    theorem for A` twice, and a proved and a failed copy could not be told apart. Each id and
    theorem now names the root file, in either order; the copy that fails is d2's."""
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    one, two = tmp_path / "d1" / "s.mv", tmp_path / "d2" / "s.mv"
    one.write_text("principal K\nlayer A { state { x: bv[8] }\n  observe K { x }\n"
                   "  op g() by K -> bv[8] { return x } }\n")
    two.write_text("principal K\nprincipal J\nlayer A { state { x: bv[8] }\n  observe K { x }\n"
                   "  op g() by J -> bv[8] { return x } }\n")
    for paths in ([one, two], [two, one]):
        r = subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", "--no-cache", *map(str, paths)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, r.stdout + r.stderr
        failed = [line.split()[1:3] for line in r.stdout.splitlines() if line.startswith("FAILED")]
        assert failed == [["A/OC/g", f"[{two}]"]], r.stdout
        assert any(line.startswith(f"theorem: A [{one}] is noninterfering") for line in r.stdout.splitlines())
        assert any(line.startswith(f"no theorem for A [{two}] (via A)") for line in r.stdout.splitlines())
    listed = subprocess.run([sys.executable, "-m", "microverify", "--list", str(one), str(two)],
                            capture_output=True, text=True, timeout=300).stdout.splitlines()[:-1]
    assert listed and all(line.split()[1] in (f"[{one}]", f"[{two}]") for line in listed), listed
    assert any(line.startswith("A/WSC/g/J ") for line in listed)  # only d2 has J: its file is said too
    only = subprocess.run([sys.executable, "-m", "microverify", "-j1", "--no-cache", "--only", f"A/OC/g [{two}]",
                           str(one), str(two)], capture_output=True, text=True, timeout=300)
    assert only.returncode == 1 and only.stdout.count("A/OC/g [") == 2, only.stdout  # the result and its theorem line


# Two files, one layer name, the same operations and views: d1's Pages keeps a VM's page from
# KServ; d2's `peek` forgets the owner check, so two runs that differ only in the contents of a
# page VM(0) owns give KServ different results.
SAME_NAME = """principal KServ
principal VM(v: bv[1])
layer Pages {
  state { owner: map[bv[2]] -> principal  mem: map[bv[2]] -> bv[8] }
  observe KServ { mem[p] for p: bv[2] where owner[p] == KServ }
  observe VM(v) { owner[p] for p: bv[2]; mem[p] for p: bv[2] where owner[p] == VM(v) }
  op peek(p: bv[2]) by KServ -> bv[8] {
    check owner[p] == KServ else return 0
    return mem[p]
  }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
@pytest.mark.parametrize("order", ["secure first", "leaky first"])
def test_a_leaky_layer_named_like_a_proved_one_is_never_proved(tmp_path: Path, order: str, encoding: str) -> None:
    """Attack on the ids of layers of one name in two files (driver.obligations, by_file): the
    secure file is proved first into the cache; the leaky one, given with it in either order,
    must still fail OC/peek with a counterexample, and only its theorem be missing."""
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    secure, leaky = tmp_path / "d1" / "pages.mv", tmp_path / "d2" / "pages.mv"
    secure.write_text(SAME_NAME)
    leaky.write_text(SAME_NAME.replace("    check owner[p] == KServ else return 0\n", ""))
    cache = ["--cache-dir", str(tmp_path / "cache"), "--encoding", encoding, "-j1", "-q"]
    first = subprocess.run([sys.executable, "-m", "microverify", *cache, str(secure)],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    paths = [secure, leaky] if order == "secure first" else [leaky, secure]
    r = subprocess.run([sys.executable, "-m", "microverify", *cache, *map(str, paths)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    failed = [line.split()[1:3] for line in r.stdout.splitlines() if line.startswith("FAILED")]
    assert failed == [["Pages/OC/peek", f"[{leaky}]"]], r.stdout
    assert f"{leaky}:8:5: note: responsible statement: return mem[p]" in r.stdout, r.stdout
    assert "confirmed by the reference interpreter" in r.stdout
    theorems = [line for line in r.stdout.splitlines() if "theorem" in line]
    assert any(t.startswith(f"theorem: Pages [{secure}] is noninterfering") for t in theorems), theorems
    assert any(t.startswith(f"no theorem for Pages [{leaky}]") for t in theorems), theorems


@pytest.mark.parametrize("order", ["b first", "c first"])
def test_a_constant_an_imported_file_uses_from_a_file_imported_after_it_is_said_so(tmp_path: Path, order: str) -> None:
    """Found in review: c.mv uses the constant M of b.mv, which it does not import. Imports are
    textual (docs/language.md §10.1), so the file importing b.mv before c.mv checks, and the
    other order said only `unknown name M`: it now says where M is, and what to do."""
    (tmp_path / "d.mv").write_text("type pfn = bv[4]\nconst N: pfn = 3\nprincipal KServ\n"
                                   "layer D { state { x: pfn } init { x == N } invariant { x == N } observe KServ { x } }\n")
    (tmp_path / "b.mv").write_text('import "d.mv"\nconst M: pfn = N + 1\n'
                                   "layer B { state { y: pfn } init { y == M } invariant { y == M } observe KServ { y } }\n")
    (tmp_path / "c.mv").write_text("const K: pfn = M + 1\n"
                                   "layer C extends D { state { z: pfn } init { z == K } invariant { z == K } }\n")
    first, second = ("b.mv", "c.mv") if order == "b first" else ("c.mv", "b.mv")
    (tmp_path / "a.mv").write_text(f'import "{first}"\nimport "{second}"\n')
    r = subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", "--no-cache", "a.mv"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if order == "b first":
        assert r.returncode == 0, r.stdout + r.stderr
        return
    assert r.returncode == 2
    assert "c.mv:1:16: error: `M` is used before it is declared [unknown-name]" in r.stderr
    assert ("note: it is declared at b.mv:2:1, in b.mv, which comes after c.mv where an `import` includes it (a "
            "file is included where it is imported, in order): declare or import it before the `import` of c.mv: "
            "a constant or a def must be declared before it is used") in r.stderr
    # the root file's own constant, declared after the import of the file that uses it (review)
    (tmp_path / "lib.mv").write_text("const LIB: pfn = ROOT + 1\nlayer Lib { state { w: pfn } init { w == LIB } "
                                     "invariant { w == LIB } observe KServ { w } }\n")
    (tmp_path / "root.mv").write_text('import "d.mv"\nimport "lib.mv"\nconst ROOT: pfn = 2\n')
    r = subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", "--no-cache", "root.mv"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "lib.mv:1:18: error: `ROOT` is used before it is declared" in r.stderr, r.stderr
    assert "declare or import it before the `import` of lib.mv" in r.stderr
