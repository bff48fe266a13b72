"""Width sweep (not a test): the same model at index widths from 2 to 64 bits, in both encodings.

    python bench/widths.py [--widths 2,3,4,...]

A proof whose quantifiers range over an index sort should not get harder as the sort gets
smaller: the quantifier-free encoding expands a quantifier over every value of a small sort,
and it must not choose that where leaving the quantifier to Z3 is what a larger sort gets and is
cheaper. Each model is proved in-process at every width; the table gives, per width and
encoding, how many obligations are PROVED and the largest rlimit any of them used (the
deterministic measure of effort), and the last column the rlimit at that width over the least
rlimit at any larger width (above 1: a smaller sort costs more than a larger one).
"""

from __future__ import annotations

import argparse
import sys

from microverify.dsl.loader import load_text
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.verdict import Options, Status

# Every VM owns a page: an exists under a forall, over the page numbers.
EXISTS_PAGE = """\
principal KServ
principal VM(v: bv[1])
type pfn = bv[{w}]
layer L {{
  state {{ owner : map[pfn] -> principal }}
  init {{ owner[0] == VM(0) && owner[1] == VM(1) }}
  invariant every_vm_has_a_page {{ forall v: bv[1]. exists p: pfn. owner[p] == VM(v) }}
  observe KServ {{ owner[p] for p: pfn }}
  op swap(p: pfn, q: pfn) by KServ {{
    let a = owner[p]
    owner[p] := owner[q]
    owner[q] := a
  }}
}}
"""

# A boot state that links an index to a value: VM v owns page v (the page numbers are wider).
INDEX_LINK = """\
principal KServ
principal VM(v: vmid)
type vmid = bv[{w}]
type pfn = bv[{p}]
layer L {{
  state {{ owner : map[pfn] -> principal }}
  init {{ forall v: vmid. owner[zext(v, {p})] == VM(v) }}
  invariant own {{ forall v: vmid. owner[zext(v, {p})] == VM(v) }}
  observe KServ {{ owner[p] == KServ for p: pfn }}
  observe VM(v) {{ owner[p] == VM(v) for p: pfn }}
  op give(p: pfn) by KServ {{
    check owner[p] == KServ else halt
    owner[p] := KServ
  }}
}}
"""

# Ownership fixed by ranges, and boot images in pages KCore took (SeKVM's KCoreSpec): a model of
# these universals is what Z3 fails to build over wide sorts (the shaped check of docs/theory.md
# §2 gives it one).
OWNERSHIP = """\
principal KServ
principal VM(v: vmid)
policy {{ KServ -> VM }}
type vmid = bv[{w}]
type pfn  = bv[{p}]
type otag = enum {{ Host, Guest, Core }}
type img_t = record {{ loaded: bool, pfn: pfn }}
const CORE_END: pfn = 4
layer L {{
  state {{
    owner : map[pfn] -> otag
    ovm   : map[pfn] -> vmid
    ready : map[vmid] -> bool
    img   : map[vmid] -> img_t
  }}
  init {{
    forall p: pfn. owner[p] == (if p < CORE_END then Core else Host);
    forall v: vmid. !ready[v] && !img[v].loaded
  }}
  invariant statics {{ forall p: pfn. p < CORE_END ==> owner[p] == Core }}
  invariant images {{
    forall v: vmid. ready[v] && img[v].loaded ==> owner[img[v].pfn] == Core && img[v].pfn >= CORE_END;
    forall v: vmid, w: vmid. v != w && ready[v] && img[v].loaded && ready[w] && img[w].loaded
      ==> img[v].pfn != img[w].pfn
  }}
  invariant born {{ forall p: pfn. owner[p] == Guest ==> ready[ovm[p]] }}
  observe KServ {{ owner[p] for p: pfn }}
  observe VM(v) {{ owner[p] == Guest && ovm[p] == v for p: pfn }}
  op create(v: vmid) by KServ {{
    check !ready[v] else halt
    ready[v] := true
    img[v].loaded := false
  }}
  op assign(v: vmid, p: pfn) by KServ {{
    check owner[p] == Host && ready[v] else halt
    owner[p] := Guest
    ovm[p] := v
  }}
}}
"""

MODELS = {"exists-page": EXISTS_PAGE, "index-link": INDEX_LINK, "ownership": OWNERSHIP}


def sweep(name: str, template: str, widths: list[int]) -> None:
    print(f"{name}: width  " + "  ".join(f"{e:>22}" for e in ("qf", "quantified")) + "  qf rlimit / least at a larger width")
    rows = []
    for w in widths:
        module = load_text(template.format(w=w, p=w + 4), f"{name}-{w}.mv")
        pairs = obligations([module])
        cells = []
        for encoding in ("qf", "quantified"):
            results = prove_pairs(pairs, Options(encoding=encoding))
            proved = sum(r.status is Status.PROVED for r in results)
            cells.append((proved, len(results), max(r.rlimit_used for r in results)))
        rows.append((w, cells))
    for i, (w, cells) in enumerate(rows):
        larger = [c[0][2] for _, c in rows[i + 1:]]
        ratio = f"{cells[0][2] / min(larger):8.2f}" if larger else "       -"
        print(f"  {w:>11}  " + "  ".join(f"{p:>3}/{n:<3} rlimit {r:>10,}" for p, n, r in cells) + f"  {ratio}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="2,3,4,5,6,7,8,9,10,12,16,24,32,48,64")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    for name in args.models.split(","):
        sweep(name, MODELS[name], widths)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
