"""Benchmark microverify on the tutorial Pages model against a hand-written z3py encoding.

    python bench/handwritten.py [--repeat N]        (default N = 3)

The hand-written encoding is the one an expert would write in the style of Nickel's specs: the
state is z3 arrays, each operation a Python function computing the post-state with `If` and
`Store`, principals a z3 Datatype `KServ | VM(vmid)`, the oracles `alloc` and `donated`
uninterpreted functions of (principal, that principal's counter), and observation equivalence
a `ForAll` over the page index as a hypothesis and the same body at a fresh witness page as a
goal. It has every obligation `prove --list proofs/tutorial/pages.mv` has (the ids are checked),
with the formulas of docs/theory.md §2, and is solved as microverify solves: a fresh
`z3.Context` per obligation, seed 0, the same rlimit and timeout; first the hypotheses alone
(tracked, and without those about the second run, which hold when t = s) must be sat, then with
the rest and the negated goal unsat (the goal itself sat, for VAC). All must be PROVED.

How it differs from what microverify builds (hand-optimisations an expert would make):
- A Datatype has no junk: no well-formedness hypothesis `∀p. owner[p] is a principal`.
- The domain of every operation is known (`by KServ` or `by VM(v)`), so `s ~dom t` is that
  principal's view, not a case split over the families; `~>` (policy isolation) is `==`.
- A view is one `ForAll` (microverify: one per observation component, each comparing its
  `where` mask too), and a goal has one witness page (microverify: one per component).
- `check ... else halt` only adds to the halting condition: the post-state is computed as if
  the check passed (no obligation looks at a halting run); microverify guards every write by
  its path condition. A failed `check ... else return` keeps the whole state, as in microverify.
- No middle check: for a formula that keeps quantifiers, microverify adds the second-run
  hypotheses between its two checks and checks once more (answer ignored; it helps Z3 find
  counterexamples under quantified hypotheses). That is in the quantified encoding's solve time;
  the quantifier-free encoding skips it.

Times are per obligation, the minimum of N runs, the three sides interleaved obligation by
obligation and garbage collected in between (outside the timings). Solve = the solver's checks;
build = making the terms (for microverify its lowering, including the quantifier elimination of
the "qf" encoding). The machine is shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import z3

from microverify.dsl.loader import load_file
from microverify.prover.driver import Pair, obligations, prove_pairs
from microverify.prover.verdict import Options, Status

PAGES = Path(__file__).resolve().parent.parent / "proofs" / "tutorial" / "pages.mv"
KINDS = ("INIT", "VAC", "VIEW", "INV", "OC", "DC", "WSC", "LR", "DR")


@dataclass(frozen=True)
class State:
    owner: z3.ArrayRef  # pfn -> Principal
    pending: z3.ArrayRef  # pfn -> Bool
    mem: z3.ArrayRef  # pfn -> word
    off: z3.ArrayRef  # vmid -> Bool
    n_alloc: z3.ArrayRef  # Principal -> bv[32], the oracle counters
    n_donated: z3.ArrayRef


@dataclass(frozen=True)
class Outcome:
    post: State
    out: z3.ExprRef | None  # None: the operation has no result
    halt: z3.BoolRef  # a `check ... else halt` fails (KCore panics)
    ok: z3.BoolRef  # no `check ... else return` fails


@dataclass(frozen=True)
class Ob:
    hyps: list[z3.BoolRef]  # checked alone first: they must be satisfiable
    more: list[z3.BoolRef]  # about the second run t: they hold when t = s
    goal: z3.BoolRef
    valid: bool = True  # False: hypotheses and goal must be satisfiable together (VAC)


class Pages:
    """Layer Pages of proofs/tutorial/pages.mv in one z3 context."""

    def __init__(self, ctx: z3.Context) -> None:
        self.ctx = ctx
        self.pfn, self.vmid = z3.BitVecSort(8, ctx), z3.BitVecSort(2, ctx)
        self.word, self.counter = z3.BitVecSort(64, ctx), z3.BitVecSort(32, ctx)
        dt = z3.Datatype("Principal", ctx=ctx)
        dt.declare("KServ")
        dt.declare("VM", ("vm_id", self.vmid))
        self.P = dt.create()
        self.kserv: z3.ExprRef = self.P.KServ
        self.alloc = z3.Function("alloc", self.P, self.counter, self.pfn)
        self.donated = z3.Function("donated", self.P, self.counter, self.word)
        self.true, self.false = z3.BoolVal(True, ctx), z3.BoolVal(False, ctx)
        self.zero = z3.BitVecVal(0, 64, ctx)
        kserv, vm = (lambda v, *_: self.kserv), (lambda v, *_: self.vm(v))
        # name -> (argument sorts, its `by` principal, its semantics); kserv_* take no v.
        self.ops: dict[str, tuple[list[z3.SortRef], Callable[..., z3.ExprRef], Callable[..., Outcome]]] = {
            "donate": ([self.vmid, self.pfn], kserv, self.donate),
            "map_donated": ([self.vmid], vm, self.map_donated),
            "vm_write": ([self.vmid, self.pfn, self.word], vm, self.vm_write),
            "vm_read": ([self.vmid, self.pfn], vm, self.vm_read),
            "kserv_write": ([self.pfn, self.word], kserv, self.kserv_write),
            "kserv_read": ([self.pfn], kserv, self.kserv_read),
            "power_off": ([self.vmid], vm, self.power_off),
            "reclaim": ([self.vmid, self.pfn], kserv, self.reclaim),
        }

    def vm(self, v: z3.ExprRef) -> z3.ExprRef:
        return self.P.VM(v)

    def state(self, tag: str) -> State:
        b = z3.BoolSort(self.ctx)
        sorts = [(self.pfn, self.P), (self.pfn, b), (self.pfn, self.word), (self.vmid, b),
                 (self.P, self.counter), (self.P, self.counter)]
        return State(*(z3.Array(f"{f.name}_{tag}", k, v) for f, (k, v) in zip(fields(State), sorts)))

    # -- init and the invariant pending_not_kserv
    def init(self, s: State) -> z3.BoolRef:
        p, v = z3.Const("p", self.pfn), z3.Const("v", self.vmid)
        return z3.And(z3.ForAll([p], z3.And(s.owner[p] == self.kserv, z3.Not(s.pending[p]))),
                      z3.ForAll([v], z3.Not(s.off[v])))

    def inv_at(self, s: State, p: z3.ExprRef) -> z3.BoolRef:
        return z3.Implies(s.pending[p], s.owner[p] != self.kserv)

    def inv(self, s: State) -> z3.BoolRef:
        p = z3.Const("p", self.pfn)
        return z3.ForAll([p], self.inv_at(s, p))

    # -- operations
    def checked(self, ok: z3.BoolRef, new: State, old: State, out: z3.ExprRef) -> Outcome:
        """`check ok else return ...` before the updates: a failure keeps the whole state."""
        changed = {f.name: z3.If(ok, getattr(new, f.name), getattr(old, f.name))
                   for f in fields(State) if not getattr(new, f.name).eq(getattr(old, f.name))}
        return Outcome(replace(old, **changed), out, self.false, ok)

    def donate(self, s: State, v: z3.ExprRef, p: z3.ExprRef) -> Outcome:
        ok = s.owner[p] == self.kserv
        return self.checked(ok, replace(s, owner=z3.Store(s.owner, p, self.vm(v)),
                                        pending=z3.Store(s.pending, p, True)), s, ok)

    def map_donated(self, s: State, v: z3.ExprRef) -> Outcome:
        me = self.vm(v)
        p = self.alloc(me, s.n_alloc[me])
        halt = z3.Or(s.off[v], z3.Not(z3.And(s.owner[p] == me, s.pending[p])))
        post = replace(s, pending=z3.Store(s.pending, p, False),
                       mem=z3.Store(s.mem, p, self.donated(me, s.n_donated[me])),
                       n_alloc=z3.Store(s.n_alloc, me, s.n_alloc[me] + 1),
                       n_donated=z3.Store(s.n_donated, me, s.n_donated[me] + 1))
        return Outcome(post, None, halt, self.true)

    def mine(self, s: State, v: z3.ExprRef, p: z3.ExprRef) -> z3.BoolRef:
        return z3.And(z3.Not(s.off[v]), s.owner[p] == self.vm(v), z3.Not(s.pending[p]))

    def vm_write(self, s: State, v: z3.ExprRef, p: z3.ExprRef, x: z3.ExprRef) -> Outcome:
        ok = self.mine(s, v, p)
        return self.checked(ok, replace(s, mem=z3.Store(s.mem, p, x)), s, ok)

    def vm_read(self, s: State, v: z3.ExprRef, p: z3.ExprRef) -> Outcome:
        ok = self.mine(s, v, p)
        return self.checked(ok, s, s, z3.If(ok, s.mem[p], self.zero))

    def kserv_write(self, s: State, p: z3.ExprRef, x: z3.ExprRef) -> Outcome:
        ok = s.owner[p] == self.kserv
        return self.checked(ok, replace(s, mem=z3.Store(s.mem, p, x)), s, ok)

    def kserv_read(self, s: State, p: z3.ExprRef) -> Outcome:
        ok = s.owner[p] == self.kserv
        return self.checked(ok, s, s, z3.If(ok, s.mem[p], self.zero))

    def power_off(self, s: State, v: z3.ExprRef) -> Outcome:
        return Outcome(replace(s, off=z3.Store(s.off, v, True)), None, self.false, self.true)

    def reclaim(self, s: State, v: z3.ExprRef, p: z3.ExprRef) -> Outcome:
        halt = z3.Not(z3.And(s.off[v], s.owner[p] == self.vm(v)))
        post = replace(s, mem=z3.Store(s.mem, p, self.zero), pending=z3.Store(s.pending, p, False),
                       owner=z3.Store(s.owner, p, self.kserv))
        return Outcome(post, None, halt, self.true)

    # -- observation: s ~who t; with a witness page, the goal form
    def view(self, who: z3.ExprRef, s: State, t: State, witness: z3.ExprRef | None = None,
             counters: bool = True) -> z3.BoolRef:
        p = witness if witness is not None else z3.Const("p", self.pfn)
        same = [s.n_alloc[who] == t.n_alloc[who], s.n_donated[who] == t.n_donated[who]] if counters else []
        if who.eq(self.kserv):
            sees_s, sees_t = s.owner[p] == who, t.owner[p] == who
            body = z3.And(sees_s == sees_t, z3.Implies(sees_s, s.mem[p] == t.mem[p]))
        else:  # VM(v): nothing but `off` once it is off
            v = who.arg(0)
            sees_s = z3.And(s.owner[p] == who, z3.Not(s.pending[p]))
            sees_t = z3.And(t.owner[p] == who, z3.Not(t.pending[p]))
            same.append(s.off[v] == t.off[v])
            body = z3.Implies(z3.Not(s.off[v]), z3.And(sees_s == sees_t, z3.Implies(sees_s, s.mem[p] == t.mem[p])))
        return z3.And(same + [body if witness is not None else z3.ForAll([p], body)])

    # -- the obligations of docs/theory.md §2
    def obligation(self, kind: str, op: str | None, observer: str | None) -> Ob:
        w = z3.Const("w", self.pfn)  # the witness page of a goal
        s, t = self.state("s"), self.state("t")
        if kind == "INIT":
            return Ob([self.init(s)], [], self.inv_at(s, w))
        if op is None:  # VAC of the layer: the invariant is satisfiable
            return Ob([], [], self.inv(s), valid=False)
        if kind == "VIEW":  # Pages/VIEW/<observer>: the block (not the counters) tells s, t apart
            u = self.kserv if op == "KServ" else self.vm(z3.Const("u_v", self.vmid))
            return Ob([], [], z3.And(self.inv(s), self.inv(t), z3.Not(self.view(u, s, t, w, counters=False))),
                      valid=False)
        sorts, by, run = self.ops[op]
        args = [z3.Const(f"arg{i}", sort) for i, sort in enumerate(sorts)]
        a, b, d = run(s, *args), run(t, *args), by(*args)
        one, two = [self.inv(s), z3.Not(a.halt)], [self.inv(t), z3.Not(b.halt)]
        if kind == "VAC":
            return Ob([], [], z3.And(self.inv(s), z3.Not(a.halt), a.ok), valid=False)
        if kind == "INV":
            return Ob(one, [], self.inv_at(a.post, w))
        if kind == "OC":
            return Ob(one, two + [self.view(d, s, t)], self.true if a.out is None else a.out == b.out)
        if kind == "DC":
            return Ob(one, two + [self.view(d, s, t)], d == by(*args))
        u = self.kserv if observer == "KServ" else self.vm(z3.Const("u_v", self.vmid))
        if kind == "WSC":
            return Ob(one, two + [self.view(u, s, t), self.view(d, s, t)], self.view(u, a.post, b.post, w))
        if kind == "LR":  # under policy isolation, d ~> u iff d == u
            return Ob(one, [], z3.Implies(d != u, self.view(u, s, a.post, w)))
        assert kind == "DR", kind
        return Ob(one, two + [self.view(u, s, t)], (d == u) == (by(*args) == u))

    def ids(self) -> list[str]:
        out = ["Pages/VAC", "Pages/INIT", "Pages/VIEW/KServ", "Pages/VIEW/VM"]
        out += [f"Pages/{k}/{op}" for op in self.ops for k in ("VAC", "INV")]
        for op in self.ops:
            out += [f"Pages/OC/{op}", f"Pages/DC/{op}"]
            out += [f"Pages/{k}/{op}/{u}" for u in ("KServ", "VM") for k in ("WSC", "LR", "DR")]
        return out


@dataclass(frozen=True)
class Timing:
    build: float
    solve: float

    @property
    def total(self) -> float:
        return self.build + self.solve


def solve_handwritten(ob_id: str, options: Options) -> Timing:
    start = time.perf_counter()
    ctx = z3.Context()
    kind, *rest = ob_id.split("/")[1:]  # "Pages/KIND[/op[/observer]]"
    ob = Pages(ctx).obligation(kind, rest[0] if rest else None, rest[1] if len(rest) > 1 else None)
    built = time.perf_counter()
    solver = z3.Solver(ctx=ctx)
    solver.set("rlimit", options.rlimit, "timeout", int(options.timeout * 1000), "random_seed", options.seed)
    for n, h in enumerate(ob.hyps):  # tracked for an unsat core, as microverify does
        solver.assert_and_track(h, z3.Bool(f"hyp!{n}", ctx))
    answer = solver.check()
    assert answer == z3.sat, f"{ob_id}: the hypotheses alone are {answer}: VACUOUS"
    solver.add(ob.more + [z3.Not(ob.goal) if ob.valid else ob.goal])
    answer = solver.check()
    assert answer == (z3.unsat if ob.valid else z3.sat), f"{ob_id}: {answer}, not PROVED"
    return Timing(built - start, time.perf_counter() - built)


def solve_ours(pair: Pair, encoding: str) -> Timing:
    (r,) = prove_pairs([pair], Options(encoding=encoding))
    assert r.status is Status.PROVED, f"{r.obligation.id} ({encoding}): {r.status.value} {r.detail}"
    return Timing(r.lower_seconds, r.seconds - r.lower_seconds)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the minimum counts")
    repeat = max(1, parser.parse_args(argv).repeat)

    pairs = obligations([load_file(PAGES, {})])
    ids = [ob.id for _, ob in pairs]
    assert sorted(ids) == sorted(Pages(z3.Context()).ids()), "not the obligations microverify generates"
    sides: dict[str, Callable[[Pair], Timing]] = {
        "hand-written": lambda pair: solve_handwritten(pair[1].id, Options()),
        "ours (qf)": lambda pair: solve_ours(pair, "qf"),
        "ours (quantified)": lambda pair: solve_ours(pair, "quantified"),
    }
    best: dict[str, dict[str, Timing]] = {name: {} for name in sides}
    for _ in range(repeat):
        for pair in pairs:  # interleaved, so that changes in the machine's load hit every side alike
            for name, run in sides.items():
                gc.collect()  # free the last obligation's context now, not while timing the next
                t, old = run(pair), best[name].get(pair[1].id)
                best[name][pair[1].id] = t if old is None else Timing(min(t.build, old.build), min(t.solve, old.solve))
    hand = best["hand-written"]

    def total(side: dict[str, Timing], what: str, kind: str | None = None) -> float:
        return sum(getattr(t, what) for i, t in side.items() if kind is None or i.split("/")[1] == kind)

    print(f"{len(ids)} obligations of {PAGES.name}, all PROVED by every side; "
          f"seconds, summed over obligations, each the minimum of {repeat} runs")
    print(f"{'':18} {'build':>7} {'solve':>7} {'total':>7} {'solve / hand':>13} {'total / hand':>13}")
    for name, side in best.items():
        solve, whole = total(side, "solve"), total(side, "total")
        print(f"{name:18} {total(side, 'build'):7.3f} {solve:7.3f} {whole:7.3f} "
              f"{solve / total(hand, 'solve'):13.2f} {whole / total(hand, 'total'):13.2f}")
    print("\nsolve / hand-written solve, by kind of obligation:")
    print(f"{'':18}" + "".join(f"{k:>6}" for k in KINDS))
    ours = [(name, side) for name, side in best.items() if side is not hand]
    for name, side in ours:
        print(f"{name:18}" + "".join(f"{total(side, 'solve', k) / total(hand, 'solve', k):6.2f}" for k in KINDS))
    for name, side in ours:
        worst = sorted(ids, key=lambda i: side[i].solve / hand[i].solve, reverse=True)[:3]
        print(f"largest solve ratios, {name}: " + ", ".join(f"{i} {side[i].solve / hand[i].solve:.1f}" for i in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
