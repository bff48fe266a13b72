"""A goal's conjuncts rewritten into an equivalent form Z3 proves faster: prover/solve.py's
`_goals_unsat` asks each conjunct in this form when Z3 gives up on the goal as a whole.

`rewritten(goals)` gives, for each goal term, a term equal to it in every interpretation: each
step is an equivalence of the theories of arrays and bit-vectors, so a proof of the rewritten
goal is a proof of the goal as stated, and a model of its negation is a counterexample to it.
Only unsigned comparisons (`<`, `<=`, `>`, `>=`) are rewritten; quantifier bodies are left as
they are.

1. A read compared is pushed through writes and choices down to the arrays the formula
   declares (the read-over-write axiom, prover/qf.py's pass 4): `select(store(a, j, v), i)`
   is `ite(i = j, v, select(a, i))`, and `select(ite(c, a, b), i)` is
   `ite(c, select(a, i), select(b, i))`.
2. A comparison of a choice is a choice of comparisons: `ite(c, a, b) <= y` is
   `ite(c, a <= y, b <= y)`, when only one side is a choice (so the comparison grows by the
   branches of that side, no more).
3. A comparison with a successor is one without it, the wrap-around case said: `x < y + 1` is
   `y != ~0 && x <= y` (when y is all ones, y + 1 is 0, and nothing is below 0), and
   `x + 1 <= y` is `x == ~0 || x < y` (when x is all ones, x + 1 is 0, below or equal to every y).

An operation that does `wr[id] := wr[id] + 1` gives goals like `i < select(store(wr, id,
wr[id] + 1), x)`; rewritten, they compare `i` with `wr[x]` and `wr[id]` as the hypotheses do,
and Z3 no longer bit-blasts an adder under every instance of a quantified hypothesis
(docs/theory.md §4). Reads that are not compared are left as they are: pushing every read down
made some of SeKVM's goals three times as costly.
"""

from __future__ import annotations

import z3

from microverify.prover.qf import APP, Reads, Terms

_ULT, _ULE = z3.Z3_OP_ULT, z3.Z3_OP_ULEQ
_FLIPPED = {z3.Z3_OP_UGT: _ULT, z3.Z3_OP_UGEQ: _ULE}  # x > y is y < x; x >= y is y <= x


def rewritten(goals: list[z3.BoolRef]) -> list[z3.BoolRef]:
    """The goals, each rewritten into an equivalent term (see the module's docstring)."""
    if not goals:
        return []
    comparisons = _Comparisons(goals[0].ctx)
    return [comparisons.rewrite(t) for t in goals]


class _Comparisons:
    """The three steps, one rewritten term per term of one context."""

    def __init__(self, ctx: z3.Context) -> None:
        self.t = Terms(ctx)
        self.c = ctx.ref()
        self.reads = Reads(ctx)
        self.made: dict[int, z3.Ast] = {}  # a rewritten term per AST id
        self.compared: dict[tuple[int, int, int], z3.Ast] = {}  # see compare
        self.alive: list[z3.AstRef] = []  # every term in `made`, referenced (ids are reused)

    def rewrite(self, t: z3.BoolRef) -> z3.BoolRef:
        self.alive.append(t)
        return self.t.expr(self.term(t.as_ast()))  # type: ignore[return-value]

    def _keep(self, raw: z3.Ast) -> z3.Ast:
        self.alive.append(z3.AstRef(raw, self.t.ctx))
        return raw

    def term(self, a: z3.Ast) -> z3.Ast:
        key = self.t.id(a)
        if key not in self.made:
            out = a
            args = self.t.args(a) if self.t.kind(a) == APP else []
            if args:
                op = self.t.op(a)
                new = [self.term(x) for x in args]
                if op in (_ULT, _ULE) and len(new) == 2:
                    out = self.compare(op, new[0], new[1])
                elif op in _FLIPPED and len(new) == 2:
                    out = self.compare(_FLIPPED[op], new[1], new[0])
                elif (changed := self.t.updated(a, args, new)) is not None:
                    out = self._keep(changed)
            self.made[key] = out
        return self.made[key]

    def read(self, a: z3.Ast) -> z3.Ast:
        """Step 1: a read pushed down to declared arrays (any other term as it is)."""
        if self.t.kind(a) == APP and self.t.op(a) == z3.Z3_OP_SELECT:
            return self.reads.push(a)
        return a

    def compare(self, op: int, x: z3.Ast, y: z3.Ast) -> z3.Ast:
        """x < y (op _ULT) or x <= y (op _ULE), by steps 1 to 3; once per (op, x, y): the
        choices a read is pushed into share their branches, and a walk of them as a tree
        would take time exponential in the writes above the read."""
        key = (op, self.t.id(x), self.t.id(y))  # x and y are kept (terms of the goal, or made here)
        if key not in self.compared:
            self.compared[key] = self._compare(op, x, y)
        return self.compared[key]

    def _compare(self, op: int, x: z3.Ast, y: z3.Ast) -> z3.Ast:
        x, y = self.read(x), self.read(y)
        x_ite, y_ite = self._is(x, z3.Z3_OP_ITE), self._is(y, z3.Z3_OP_ITE)
        if x_ite != y_ite:
            c, a, b = self.t.args(x if x_ite else y)
            pair = ((a, y), (b, y)) if x_ite else ((x, a), (x, b))
            then = self.compare(op, *pair[0])  # kept by compare
            return self._keep(z3.Z3_mk_ite(self.c, c, then, self.compare(op, *pair[1])))
        # each new term is kept at once: Z3 may free an unreferenced one at the next call
        if op == _ULT and (before := self._predecessor(y)) is not None:  # x < w + 1
            wraps = self._keep(z3.Z3_mk_not(self.c, self._is_ones(before)))
            return self._keep(z3.Z3_mk_and(self.c, 2, (z3.Ast * 2)(wraps, self.compare(_ULE, x, before))))
        if op == _ULE and (before := self._predecessor(x)) is not None:  # w + 1 <= y
            wraps = self._is_ones(before)
            return self._keep(z3.Z3_mk_or(self.c, 2, (z3.Ast * 2)(wraps, self.compare(_ULT, before, y))))
        return self._keep((z3.Z3_mk_bvult if op == _ULT else z3.Z3_mk_bvule)(self.c, x, y))

    def _is(self, a: z3.Ast, op: int) -> bool:
        return self.t.kind(a) == APP and self.t.op(a) == op  # a constant's operator is none of these

    def _predecessor(self, a: z3.Ast) -> z3.Ast | None:
        """w, if a is `w + 1` or `1 + w`."""
        if not self._is(a, z3.Z3_OP_BADD):
            return None
        args = self.t.args(a)
        if len(args) != 2:
            return None
        if self._is_one(args[1]):
            return args[0]
        if self._is_one(args[0]):
            return args[1]
        return None

    def _is_one(self, a: z3.Ast) -> bool:
        return bool(z3.Z3_is_numeral_ast(self.c, a)) and z3.Z3_get_numeral_string(self.c, a) == "1"

    def _is_ones(self, w: z3.Ast) -> z3.Ast:
        """w == ~0 (every bit of w set)."""
        sort = z3.Z3_get_sort(self.c, w)
        ones = self._keep(z3.Z3_mk_numeral(self.c, str((1 << z3.Z3_get_bv_sort_size(self.c, sort)) - 1), sort))
        return self._keep(z3.Z3_mk_eq(self.c, w, ones))
