"""A counterexample shows the entries that decide it (prover/counterexample.py): the fields a
failed `check` or the chosen `if` read, the entry whose `where` hides a value from the observer,
the bases and lengths of a range check, the witness of a quantified observation; and not
entries that merely sit at an index equal to an argument."""

from __future__ import annotations

import re

import pytest

from microverify.dsl.loader import load_text
from microverify.prover.driver import prove_modules
from microverify.prover.replay import Outcome
from microverify.prover.verdict import Options, Result, Status

MODEL = """\
type vmid = bv[2]
principal KServ
principal VM(v: vmid)
layer L {
  state { running : map[vmid] -> bool
          reg     : map[vmid] -> bv[8]
          busy    : bool
          pub     : bv[8]
          owner   : map[bv[3]] -> principal
          mem     : map[bv[3]] -> bv[8]
          base    : map[vmid] -> bv[8]
          len     : map[vmid] -> bv[8]
          off     : map[vmid] -> bool }
  observe KServ { pub }
  observe VM(v) { reg[v]; base[v]; len[v]; off[v]; mem[p] for p: bv[3] where owner[p] == VM(v) && !off[v] }
  op get(v: vmid) by VM(v) -> bv[8] {          // OC: the check reads running, which nobody sees
    check running[v] else return 0
    return reg[v]
  }
  op tick() by KServ {                          // WSC: the path depends on busy
    if busy { pub := pub + 1 }
  }
  op give(v: vmid, p: bv[3]) by KServ {         // LR: the entry that hid mem[p] from VM(v) changes
    owner[p] := VM(v)
  }
  op copy(v: vmid, i: bv[8]) by VM(v) {         // WSC: copies another VM's register
    check i - base[v] < len[v] else halt
    reg[v] := reg[v + 1]
  }
}
"""


def _failed(id_: str) -> Result:
    results = prove_modules([load_text(MODEL, "<test>")], Options())
    [r] = [r for r in results if r.obligation.id == id_]
    assert r.status is Status.FAILED and r.counterexample is not None, (r.status, r.detail)
    return r


def _rows(r: Result) -> list[str]:
    assert r.counterexample is not None
    return [row.name for _, _, rows in r.counterexample.tables for row in rows]


def test_the_field_a_failed_check_reads_is_shown() -> None:
    r = _failed("L/OC/get")
    assert _rows(r) == ["running[0]", "reg[0]"]
    assert r.counterexample is not None and r.counterexample.operation == "get(v = 0)"


def test_the_flag_that_chose_the_path_is_shown() -> None:
    assert _rows(_failed("L/WSC/tick/KServ")) == ["busy", "pub"]


def test_the_entry_that_hides_a_value_and_the_witness_are_shown_not_the_arguments_others() -> None:
    r = _failed("L/LR/give/VM")
    cex = r.counterexample
    assert cex is not None
    observer = cex.observer
    assert observer is not None and observer.startswith("VM(") and observer[3:-1].isdigit()
    rows = _rows(r)
    page = [row for row in rows if row.startswith("owner[")]
    assert len(page) == 1 and page[0].replace("owner", "mem") in rows  # the witness page, both fields
    assert f"off[{observer[3:-1]}]" in rows  # the observer's flag, read by the where
    assert [row for row in rows if row.startswith("off[")] == [f"off[{observer[3:-1]}]"]  # not the argument's


def test_the_bases_and_lengths_of_a_range_check_are_shown() -> None:
    r = _failed("L/WSC/copy/VM")
    rows = _rows(r)
    assert r.counterexample is not None and r.counterexample.operation is not None
    v = r.counterexample.operation.split("v = ")[1].split(",")[0]
    assert {f"base[{v}]", f"len[{v}]", f"reg[{v}]"} <= set(rows)
    other = (int(v) + 1) % 4
    assert f"reg[{other}]" in rows  # the other VM's register it copied


def test_no_row_merely_at_an_argument_s_index() -> None:
    """pages_no_owner_check: KServ's donate(v = 1, p) takes VM(0)'s page. VM(0)'s view reads
    off[0]; off[1] (the argument's VM) decides nothing and is not shown."""
    from conftest import CASES, prove_path
    results = prove_path(CASES / "leak" / "pages_no_owner_check.mv")
    [r] = [r for r in results if r.obligation.id == "Pages/LR/donate/VM"]
    cex = r.counterexample
    assert r.status is Status.FAILED and cex is not None and cex.observer is not None and cex.operation is not None
    u = cex.observer[3:-1]
    v = cex.operation.split("v = ")[1].split(",")[0]
    assert u != v  # the case this test is about
    offs = [row for row in _rows(r) if row.startswith("off[")]
    assert offs == [f"off[{u}]"]


def test_a_member_s_index_is_decimal_at_any_width() -> None:
    wide = """\
principal VM(v: bv[16])
layer W {
  state { reg : map[bv[16]] -> bv[8] }
  observe VM(v) { reg[v] }
  op copy(v: bv[16]) by VM(v) { reg[v] := reg[v + 1] }
}
"""
    results = prove_modules([load_text(wide, "<test>")], Options())
    [r] = [r for r in results if r.obligation.id == "W/WSC/copy/VM"]
    cex = r.counterexample
    assert r.status is Status.FAILED and cex is not None and cex.observer is not None
    assert cex.observer.startswith("VM(") and cex.observer[3:-1].isdigit(), cex.observer
    assert r.replay is not None and "VM(0x" not in r.replay.line()


UNDECIDED = """\
type pfn = bv[9]
type vmid = bv[2]
principal KServ
principal VM(v: vmid)
layer L {
  state { owner: map[pfn] -> principal; tag: map[pfn] -> bv[4]; n: bv[4] }
  invariant has { forall v: vmid. exists p: pfn. owner[p] == VM(v) }
  invariant ea { exists q: pfn. forall p: pfn. tag[p] <= tag[q] }
  invariant small { n < 8 }
  op take(p: pfn) by KServ { owner[p] := KServ }
  op count() by KServ { n := n + 1 }
}
"""


def test_a_conjunct_the_model_leaves_undecided_is_not_said_to_fail() -> None:
    """Under --encoding quantified Z3's model leaves `has` and `ea` unevaluated (a quantifier
    over 512 pages); `ea` (some page has the largest tag) holds of every map, yet a why line said
    it did not. A conjunct the model makes false is listed alone; if there is none, the
    undecided ones are listed as such, and the replay says which fails."""
    results = {r.obligation.id: r for r in prove_modules([load_text(UNDECIDED, "<test>")],
                                                         Options(encoding="quantified"))}
    take, count = results["L/INV/take"], results["L/INV/count"]
    assert take.status is count.status is Status.FAILED
    assert take.counterexample is not None and count.counterexample is not None
    assert all(why.endswith("the replay decides)") for why in take.counterexample.failing)
    assert any(why.startswith("invariant has does not hold") for why in take.counterexample.failing)
    assert take.replay is not None and "invariant `has` does not hold after the step" in take.replay.line()
    assert "invariant `ea`" not in take.replay.line()
    assert count.counterexample.failing == ("invariant small does not hold",)


QUANTIFIED_VIEW = """\
type vmid = bv[16]
principal KServ
principal VM(v: vmid)
oracle coin : bool from KServ
layer L {
  state { flag: map[vmid] -> bool; data: map[vmid] -> bv[64] }
  observe VM(v) { data[v]; (forall w: vmid. flag[w]) where data[v] != 0 }
  op vm_set(v: vmid) by VM(v) { flag[v] := read coin }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
def test_an_entry_a_view_reads_under_a_quantifier_is_shown_where_the_runs_differ(encoding: str) -> None:
    """Found in review: VM(u)'s view holds `forall w. flag[w]`, and `vm_set` may make it true in
    one run and not in the other; the table showed only flag[v], the same in both runs, not the
    entry of flag that decides it. Now an entry where the columns differ is shown (at most two)."""
    results = prove_modules([load_text(QUANTIFIED_VIEW, "<test>")], Options(encoding=encoding))
    [r] = [r for r in results if r.obligation.id == "L/WSC/vm_set/VM"]
    assert r.status is Status.FAILED and r.counterexample is not None
    assert r.replay is not None and r.replay.outcome is Outcome.CONFIRMED
    [(_, columns, rows)] = r.counterexample.tables
    assert columns == ("s", "t", "step(s)", "step(t)")
    written = f"flag[{r.counterexample.operation.split('v = ')[1].split(')')[0]}]"  # type: ignore[union-attr]
    flags = [row for row in rows if row.name.startswith("flag[")]
    assert flags[0].name == written
    deciding = [row for row in flags[1:] if row.values[0] != row.values[1]]
    assert 1 <= len(deciding) <= 2 and len(flags) <= 3, rows


MAP_IN_RECORD = """\
principal K
principal J
layer L {
  state { f: map[bv[2]] -> record { d: map[bv[2]] -> bv[8], e: bool }
          s: bv[8] }
  observe K { f[p].d[q] for p: bv[2], q: bv[2] }
  op w(p: bv[2], q: bv[2]) by J { f[p].d[q] := s }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
def test_an_entry_of_a_map_inside_a_record_is_shown(encoding: str) -> None:
    """Found in review: a write or read of `f[p].d[q]` crashed the counterexample (exit 3): its
    path lost the record field between the keys. The entry is shown by its whole path."""
    results = {r.obligation.id: r for r in prove_modules([load_text(MAP_IN_RECORD, "<test>")], Options(encoding=encoding))}
    for id_ in ("L/WSC/w/K", "L/LR/w/K"):
        r = results[id_]
        assert r.status is Status.FAILED and r.counterexample is not None
        names = _rows(r)
        assert any(re.fullmatch(r"f\[\d\]\.d\[\d\]", n) for n in names) and "s" in names, names


ODD_KEYS = """\
type color = enum { Red, Green, Blue }
principal KServ
principal VM(v: bv[2])
oracle w8 : bv[8] from KServ
layer L {
  state { byk: map[principal] -> bv[8]
          en: map[color] -> bv[8]
          d: map[bv[2]] -> bv[8] }
  observe VM(v) { d[v]; (forall q: principal. byk[q] == 0) where d[v] != 0;
                  (forall c: color. en[c] == 0) where d[v] != 0 }
  op s1(v: bv[2]) by VM(v) { byk[VM(v)] := read w8 }
  op s2(v: bv[2], a: color, b: color) by VM(v) { en[a] := read w8  en[b] := read w8 }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
def test_entries_shown_where_the_runs_differ_are_at_values_of_the_key_type(encoding: str) -> None:
    """Found in review: the model's arrays list keys that are no value of the key type (an
    enum's fourth code, a principal with junk payload bits), and such an entry was shown as
    `en[<3>]`, or as a second `byk[KServ]` row with other values."""
    results = prove_modules([load_text(ODD_KEYS, "<test>")], Options(encoding=encoding))
    failed = [r for r in results if r.status is Status.FAILED and r.obligation.kind.value in ("WSC", "LR")]
    assert {r.obligation.op for r in failed} == {"s1", "s2"}
    for r in failed:
        names = _rows(r)
        assert not any("<" in n for n in names) and len(names) == len(set(names)), (r.obligation.id, names)


WHOLE_AND_INNER = """\
type vmid = bv[1]
principal VM(v: vmid)
layer D {
  state { r: map[vmid] -> record { lo: bv[8], tab: map[bv[1]] -> bv[8] } }
  observe VM(v) { r[v] }
  op k(v: vmid) by VM(v) {
    r[v].tab[1] := r[v ^ 1].lo
  }
}
"""


@pytest.mark.parametrize("encoding", ["qf", "quantified"])
def test_an_entry_of_a_record_shown_whole_is_listed_once(encoding: str) -> None:
    """Found in review: `r[0]` is shown whole (the view reads it) and `r[0].tab[1]` is written,
    so the table listed that entry twice, in the JSON report too."""
    results = {r.obligation.id: r for r in prove_modules([load_text(WHOLE_AND_INNER, "<test>")], Options(encoding=encoding))}
    r = results["D/WSC/k/VM"]
    assert r.status is Status.FAILED and r.counterexample is not None
    names = _rows(r)
    assert "r[0].tab[1]" in names and len(names) == len(set(names)), names
