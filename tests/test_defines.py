"""`prove -D NAME=VALUE` (dsl/defines.py): a model's sizes and constants set from the command
line, checked and proved as if the file said so, never confused with the file's own values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROOFS, configuration

# B's write lands on page SECRET; A observes the pages below LIMIT. Secure as written (15 >= 8);
# -D SECRET=3 makes B's write visible to A: local respect fails.
MODEL = """\
principal A
principal B
type pfn = bv[4]
const SECRET: pfn = 15
const LIMIT: pfn = 8
layer L {
  state { mem : map[pfn] -> bv[8] }
  observe A { mem[p] for p: pfn where p < LIMIT }
  op write(x: bv[8]) by B { mem[SECRET] := x }
}
"""


def prove(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microverify", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.mv"
    path.write_text(MODEL)
    return path


def test_a_define_changes_the_verdict_and_is_named_in_the_theorem(model: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    secure = prove(str(model), "--cache-dir", cache)
    assert secure.returncode == 0, secure.stdout + secure.stderr
    assert "theorem: L is noninterfering" in secure.stdout
    # Same cache: the PROVED of the file's own value must not be taken for the defined one.
    leaky = prove(str(model), "--cache-dir", cache, "-D", "SECRET=3")
    assert leaky.returncode == 1, leaky.stdout + leaky.stderr
    assert "FAILED   L/LR/write/A" in leaky.stdout
    assert "no theorem for L" in leaky.stdout
    # A define that keeps the model secure is named in its theorem.
    wider = prove(str(model), "--cache-dir", cache, "-D", "pfn=bv[12]", "-D", "SECRET=0xFFF")
    assert wider.returncode == 0, wider.stdout + wider.stderr
    assert "theorem: L (with -D pfn=bv[12], -D SECRET=0xFFF) is noninterfering" in wider.stdout
    # given with a line break (found in review): the theorem stays one line
    broken = prove(str(model), "--cache-dir", cache, "-D", "pfn=bv[12]", "-D", "SECRET=\n 0xFFF // high\n - 0")
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert "theorem: L (with -D pfn=bv[12], -D SECRET=\\n 0xFFF // high\\n - 0) is noninterfering" in broken.stdout


def test_a_define_is_checked_like_the_file(model: Path) -> None:
    """A type that makes a constant of the file too wide: the error is the file's, at its line."""
    r = prove(str(model), "-D", "pfn=bv[2]", "--check")
    assert r.returncode == 2
    assert "m.mv:4:21: error: 15 does not fit in bv[2] [literal-range]" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,expected", [
    (["-D", "SECRTE=3"], "<-D SECRTE>:1:1: error: no file declares a type or constant `SECRTE` for -D to set "
                         "[define]\n  SECRTE=3\n  ^~~~~~\n  note: did you mean `SECRET`?"),
    (["-D", "A=1"], "<-D A>:1:1: error: -D sets a `type` alias or a `const`, and `A` is a principal [define]\n"
                    "  A=1\n  ^\n  note: declared at "),
    (["-D", "SECRET=0x1G"], "<-D SECRET>:1:"),
    (["-D", "SECRET=300"], "<-D SECRET>:1:8: error: 300 does not fit in bv[4] [literal-range]\n"
                           "  SECRET=300\n         ^~~"),
    (["-D", "pfn=bv[9"], "<-D pfn>:1:8: error: unexpected end of file (expected ']') [syntax]"),
    (["-D", "SECRET"], "error: -D `SECRET`: write NAME=VALUE"),
    (["-D", "SECRET=1", "-D", "SECRET=2"], "error: -D `SECRET` is defined twice"),
    (["-D", "3x=1"], "error: -D `3x=1`: `3x` is not a name"),
])
def test_a_bad_define_is_a_diagnostic_with_exit_2(model: Path, args: list[str], expected: str) -> None:
    r = prove(str(model), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_resize_width_may_name_a_type(tmp_path: Path) -> None:
    """`trunc(e, T)` with T a bit-vector type: the width follows a -D of T."""
    path = tmp_path / "r.mv"
    path.write_text("principal A\ntype byte = bv[8]\ntype half = bv[4]\nlayer L {\n"
                    "  state { x : byte, y : half }\n  observe A { y }\n"
                    "  op f() by A { y := trunc(x, half) }\n}\n")
    assert prove(str(path), "--check").returncode == 0
    assert prove(str(path), "--check", "-D", "half=bv[6]").returncode == 0
    r = prove(str(path), "--check", "-D", "half=bv[9]")
    assert r.returncode == 2 and "`trunc` cannot turn bv[8] into bv[9] [width-mismatch]" in r.stderr, r.stderr
    r = prove(str(path), "--check", "-D", "half=bool")
    assert r.returncode == 2 and "`trunc(e, T)` takes a bit-vector type, and `half` is bool" in r.stderr, r.stderr


@pytest.mark.parametrize("system,name", [("xmhf", "small"), ("sekvm", "hardware")])
def test_a_shipped_system_states_its_second_configuration_and_it_checks(system: str, name: str) -> None:
    config = configuration(system)
    assert config is not None and config.name == name
    args = [a for d in config.defines for a in ("-D", d)]
    files = [str(PROOFS / system / f) for f in config.files] or [str(PROOFS / system)]
    assert prove(*files, "--check", *args).returncode == 0


def test_an_error_in_a_file_two_roots_load_is_reported_once() -> None:
    """xmhf_dev.mv imports xmhf.mv, and both are loaded: a bad -D of a constant of xmhf.mv (or any
    error in it) is one error, not one per file that loads it."""
    r = prove(str(PROOFS / "xmhf"), "--check", "-D", "HYP_BASE=HYP_END")
    assert r.returncode == 2
    assert r.stderr.count("error: `HYP_END` is used before it is declared") == 1, r.stderr
    assert r.stderr.strip().endswith("1 error(s) in the input; nothing was proved")


LIB = """\
principal A
principal B
type pfn = bv[4]
const SECRET: pfn = 15
def hidden(p: pfn) -> bool = p >= 8
"""
USER = """\
import "lib.mv"
layer LAYER {
  state { mem : map[pfn] -> bv[8] }
  observe A { mem[p] for p: pfn where !hidden(p) }
  op write(x: bv[8]) by B { mem[SECRET] := x }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
def test_a_define_reaches_a_def_in_an_imported_file_in_either_order(tmp_path: Path, encoding: str) -> None:
    """Attack: B writes page SECRET, A sees the pages `hidden` does not hide, both from a shared
    file. Secure as written (15 is hidden); -D SECRET=3 makes B's write visible to A, two runs
    differing only in x. With the secure result cached, in both file orders, it must fail LR."""
    (tmp_path / "lib.mv").write_text(LIB)
    (tmp_path / "a.mv").write_text(USER.replace("LAYER", "La"))
    (tmp_path / "b.mv").write_text(USER.replace("LAYER", "Lb"))
    cache = str(tmp_path / "cache")
    files = [str(tmp_path / "a.mv"), str(tmp_path / "b.mv")]
    secure = prove(*files, "--cache-dir", cache, "--encoding", encoding)
    assert secure.returncode == 0, secure.stdout + secure.stderr
    for order in (files, files[::-1]):
        leaky = prove(*order, "--cache-dir", cache, "--encoding", encoding, "-D", "SECRET=3")
        assert leaky.returncode == 1, leaky.stdout + leaky.stderr
        assert "FAILED   La/LR/write/A" in leaky.stdout and "FAILED   Lb/LR/write/A" in leaky.stdout
        assert "differs at p = 3" in leaky.stdout  # the page -D SECRET=3 moved into A's view
        assert "a.mv:5:29: note: responsible statement" in leaky.stdout  # at `mem[SECRET] := x`
        assert "confirmed by the reference interpreter" in leaky.stdout


def test_a_define_of_a_constant_by_itself_is_said_so(model: Path) -> None:
    """Found in review: `-D SECRET=SECRET` said SECRET was used before its declaration."""
    r = prove(str(model), "--check", "-D", "SECRET=SECRET")
    assert r.returncode == 2
    assert "<-D SECRET>:1:8: error: `SECRET` is used in its own declaration [unknown-name]" in r.stderr, r.stderr
