"""The adversarial review of pass 1b (prover/linking.py), kept: index-linking definitions with a
constant prefix, at the edge of their range, under `||`, `!` and `if` (not definitions there),
with values that read a state scalar, over Boolean maps, and two linked maps that point into each
other. At these widths Z3 decides the quantified encoding, the exact reference: both encodings
must give every obligation the same verdict, and every counterexample must replay."""

from __future__ import annotations

import pytest

from conftest import prove_text
from microverify.prover.replay import Outcome
from microverify.prover.verdict import Options, Status

HEAD = """\
principal KServ
principal VM(v: vmid)
type vmid = bv[2]
type pfn = bv[4]
const ONE: bv[2] = 1
const Z2: bv[2] = 0
"""


def layer(state: str, init: str = "", inv: str = "", obs: str = "", ops: str = "") -> str:
    return HEAD + f"""
layer L {{
  state {{ {state} }}
  {init}
  {inv}
  {obs}
  {ops}
}}
"""


OWN = "owner : map[pfn] -> principal\n mem : map[pfn] -> bv[8]"
OBS = """observe KServ { owner[p] == KServ for p: pfn; mem[p] for p: pfn where owner[p] == KServ }
  observe VM(v) { owner[p] == VM(v) for p: pfn; mem[p] for p: pfn where owner[p] == VM(v) }"""
OPS_SEC = """op kwrite(p: pfn, x: bv[8]) by KServ { check owner[p] == KServ else halt
    mem[p] := x }
  op vwrite(v: vmid, p: pfn, x: bv[8]) by VM(v) { check owner[p] == VM(v) else halt
    mem[p] := x }
  op give(v: vmid, p: pfn) by KServ { check owner[p] == KServ else halt
    owner[p] := VM(v) }"""
cases: dict[str, str] = {}
# A: high constant bits prefix (R = 4..7)
cases["A_prefix"] = layer(OWN, "init { forall v: vmid. owner[concat(ONE, v)] == VM(v); forall p: pfn. (p < 4 || p > 7) ==> owner[p] == KServ }",
   "invariant own { forall v: vmid. owner[concat(ONE, v)] == VM(v) }", OBS, OPS_SEC)
# A2: invariant contradicting at boundary -> VAC vacuous expected
cases["A2_vac_boundary"] = layer(OWN, "init { forall v: vmid. owner[concat(ONE, v)] == VM(v) }",
   "invariant own { forall v: vmid. owner[concat(ONE, v)] == VM(v) } invariant k { owner[7] == KServ }", OBS, OPS_SEC)
cases["A3_vac_boundary_ok"] = layer(OWN, "init { forall v: vmid. owner[concat(ONE, v)] == VM(v); owner[8] == KServ && owner[3] == KServ}",
   "invariant own { forall v: vmid. owner[concat(ONE, v)] == VM(v) } invariant k { owner[8] == KServ && owner[3] == KServ }", OBS, OPS_SEC)
# A4: guard universal over boundary
cases["A4_guard"] = layer(OWN, "init { forall v: vmid. owner[concat(ONE, v)] == VM(v) }",
   "invariant own { forall v: vmid. owner[concat(ONE, v)] == VM(v) } invariant k { forall p: pfn. p <= 4 ==> owner[p] == KServ }", OBS, OPS_SEC)
# B: def with give leaking: give doesn't check
cases["B_give_nocheck"] = layer(OWN, "init { forall v: vmid. owner[zext(v, 4)] == VM(v) }",
   "invariant own { forall v: vmid. owner[zext(v, 4)] == VM(v) }", OBS, OPS_SEC.replace("check owner[p] == KServ else halt\n    owner[p] := VM(v)", "owner[p] := VM(v)"))
# C: definition under || and negation: not a definition
cases["C_or"] = layer(OWN, "init { (forall v: vmid. owner[zext(v, 4)] == VM(v)) || (forall p: pfn. owner[p] == KServ) }",
   "invariant own { (forall v: vmid. owner[zext(v, 4)] == VM(v)) || (forall p: pfn. owner[p] == KServ) }", OBS, OPS_SEC)
cases["C_not"] = layer(OWN, "init { !(exists v: vmid. owner[zext(v, 4)] != VM(v)) }",
   "invariant own { !(exists v: vmid. owner[zext(v, 4)] != VM(v)) }", OBS, OPS_SEC)
cases["C_if"] = layer(OWN + "\n flag: bool", "init { if flag then (forall v: vmid. owner[zext(v, 4)] == VM(v)) else (forall p: pfn. owner[p] == KServ) }",
   "invariant own { if flag then (forall v: vmid. owner[zext(v, 4)] == VM(v)) else (forall p: pfn. owner[p] == KServ) }", OBS, OPS_SEC)
# D: value mentions state scalar
cases["D_scalar"] = layer("mem : map[pfn] -> bv[8]\n base: bv[8]", "init { forall v: vmid. mem[zext(v, 4)] == base + zext(v, 8) }",
   "invariant b { forall v: vmid. mem[zext(v, 4)] == base + zext(v, 8) }",
   "observe KServ { base } observe VM(v) { mem[zext(v, 4)] }",
   "op bump() by KServ { base := base + 1 }")
cases["D_scalar2"] = layer("mem : map[pfn] -> bv[8]\n base: bv[8]", "init { forall v: vmid. mem[zext(v, 4)] == base + zext(v, 8) }",
   "invariant b { forall v: vmid. mem[zext(v, 4)] == base + zext(v, 8) }",
   "observe KServ { base } observe VM(v) { mem[zext(v, 4)] }",
   "op bump() by KServ { base := base + 1 \n mem[0] := mem[0] + 1\n mem[1] := mem[1] + 1\n mem[2] := mem[2] + 1\n mem[3] := mem[3]+1 }")
# E: boolean maps
cases["E_bool"] = layer("flag : map[pfn] -> bool\n mem : map[pfn] -> bv[8]", "init { forall v: vmid. flag[zext(v, 4)] == (v == 0) }",
   "invariant f { forall v: vmid. flag[zext(v, 4)] == (v == 0) }",
   "observe KServ { mem[p] for p: pfn where !flag[p] } observe VM(v) { mem[p] for p: pfn where flag[p] }",
   "op kw(p: pfn, x: bv[8]) by KServ { check !flag[p] else halt\n mem[p] := x }\n op vw(v: vmid, p: pfn, x: bv[8]) by VM(v) { check flag[p] else halt\n mem[p] := x }")
# F: two arrays referring to each other's indices
cases["F_cross"] = layer("nxt : map[pfn] -> pfn\n owner: map[pfn] -> principal\n mem : map[pfn] -> bv[8]",
   "init { forall v: vmid. nxt[zext(v, 4)] == concat(ONE, v); forall v: vmid. owner[concat(ONE, v)] == VM(v) }",
   "invariant n { forall v: vmid. nxt[zext(v, 4)] == concat(ONE, v) } invariant o { forall v: vmid. owner[concat(ONE, v)] == VM(v) }",
   "observe VM(v) { mem[p] for p: pfn where owner[p] == VM(v) }",
   "op w(v: vmid, x: bv[8]) by VM(v) { mem[nxt[zext(v, 4)]] := x }\n op w2(v: vmid, x: bv[8]) by VM(v) { mem[nxt[zext(v + 1, 4)]] := x }")


@pytest.mark.parametrize("name", sorted(cases))
def test_both_encodings_agree_and_every_counterexample_replays(name: str) -> None:
    verdicts = {}
    for encoding in ("qf", "quantified"):
        results = prove_text(cases[name], Options(encoding=encoding, rlimit=5_000_000))
        verdicts[encoding] = {r.obligation.id: r.status for r in results}
        for r in results:
            assert r.status in (Status.PROVED, Status.FAILED, Status.VACUOUS), (encoding, r.obligation.id, r.detail)
            if r.status is Status.FAILED:
                assert r.replay is not None and r.replay.outcome is Outcome.CONFIRMED, (encoding, r.obligation.id, r.replay)
    assert verdicts["qf"] == verdicts["quantified"]
