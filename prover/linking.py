"""Index-linking definitions substituted away: a pass of the quantifier-free encoding (prover/qf.py).

A universal hypothesis that sets an array at an index built from the bound variables, to a value
that depends on them, is outside the array property fragment: `∀v. owner[zext(v, 12)] = VM(v)`
(VM v owns page v), `∀p i. port[concat(p, i)] = p`. Over a small sort it can be expanded; over a
wide one Z3 must build a model of it, and gives up. Such a hypothesis is a *definition* when

- it is a conjunct at the top of an asserted term (positive, under `and`s only),
- it reads a declared array `a` (a constant) at an index f(v̄) that lays the bound variables out
  in the index's bits: a concatenation (a zero-extension is one) of the variables, each exactly
  once, under a constant prefix of high bits (none, or zeros for a zero-extension). Then f is
  injective, its range is the interval R = [c·2^k, (c+1)·2^k - 1] and its inverse takes each
  variable's bits out of the index;
- the value e(v̄) reads no array, and `a` has no other definition;
- it is outside the fragment (pass 3 of prover/qf.py instantiates `∀v. a[v] = e` already):
  the index is not a bare variable, or e depends on one.

The asserted formula F is then equisatisfiable with F[a := Λ], Λ = λj. if j ∈ R then
e(f⁻¹(j)) else a0[j], a0 a fresh array (only `e(f⁻¹(j))` when R is the whole sort): a model of F
is one of F[a := Λ] with a0 = a, since Λ = a where the definition holds; a model of F[a := Λ] is
one of F with a = Λ, which satisfies the definition (so it is dropped: it became true).

Reads of Λ are beta-reduced: at a ground index by pushing reads through writes (the read-over-write
axiom, as in pass 4 of prover/qf.py), under a binder by Z3's simplifier. A universal that reads Λ
at a bound index j then has `j ∈ R` in its body, and is split there in two, an equivalence: over R,
where `e(f⁻¹(j))` is often equal on both sides of what it is compared with (the body becomes true);
and outside R, where only a0 is read and the guard `j ∉ R` compares j with numerals, as the
fragment allows. Whatever stays outside the fragment is expanded or kept, as any other quantifier.

A model of the result is read back through the substitution (`reinstate`): `a` is Λ there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import z3

Piece = tuple[int | None, int, int]  # a bound variable's index (None: constant bits), the bits' value, width


@dataclass(frozen=True)
class Linked:
    """A definition substituted away: `array` stands for `value` (Λ); R = [lo, hi] of its sort."""

    array: z3.ExprRef
    value: z3.ExprRef
    lo: int
    hi: int
    rest: z3.ExprRef | None  # a0, read outside R (None when R is the whole sort)
    widths: tuple[int, ...]  # of the bound variables, as f lays them out from the high bits down

    @property
    def onto(self) -> bool:
        return self.rest is None

    @property
    def sort(self) -> z3.SortRef:
        return self.array.sort().domain()  # type: ignore[attr-defined, no-any-return]

    def variables(self) -> list[z3.ExprRef]:
        """Fresh bit-vectors, one per bound variable of the definition, in the order f lays them
        out from the high bits down."""
        return [z3.FreshConst(z3.BitVecSort(w, self.array.ctx), "u") for w in self.widths]

    def member(self, us: list[z3.ExprRef]) -> z3.ExprRef:
        """f(us): a bijection from the variables' values onto R."""
        width = self.sort.size()  # type: ignore[attr-defined]
        k = sum(self.widths)
        prefix = [z3.BitVecVal(self.lo >> k, width - k, self.array.ctx)] if k < width else []
        parts = prefix + us
        return parts[0] if len(parts) == 1 else z3.Concat(*parts)

    def guards(self, j: z3.ExprRef) -> list[z3.BoolRef]:
        """The comparisons that say j ∈ R, as they appear in the beta-reduced terms (none when R
        is the whole sort)."""
        return [] if self.onto else _range(j, self.lo, self.hi)

    def at(self, j: z3.ExprRef) -> z3.ExprRef:
        """e(f⁻¹(j)) for a j in R."""
        body = self.value.body() if self.onto else self.value.body().arg(1)  # type: ignore[attr-defined]
        return z3.substitute_vars(body, j)


def _layout(t: z3.ExprRef) -> list[Piece] | None:
    """The index term t, over the quantifier's bound variables (de Bruijn indices), as pieces
    from its high bits to its low ones, if it is made of bound variables and numerals by
    concatenation and zero-extension only. Builds no term: an obligation without a definition
    costs Z3 nothing more (its resource count included)."""
    if z3.is_var(t):
        return [(z3.get_var_index(t), 0, t.sort().size())]  # type: ignore[attr-defined]
    if z3.is_bv_value(t):
        return [(None, t.as_long(), t.sort().size())]  # type: ignore[attr-defined]
    if z3.is_app_of(t, z3.Z3_OP_ZERO_EXT):
        inner = _layout(t.arg(0))  # type: ignore[attr-defined]
        extra = t.sort().size() - t.arg(0).sort().size()  # type: ignore[attr-defined]
        return None if inner is None else [(None, 0, extra)] + inner
    if z3.is_app_of(t, z3.Z3_OP_CONCAT):
        out: list[Piece] = []
        for child in t.children():
            part = _layout(child)
            if part is None:
                return None
            out += part
        return out
    return None


def _plain(t: z3.ExprRef) -> bool:
    """t reads no array and binds nothing."""
    if z3.is_array(t) or z3.is_select(t) or z3.is_quantifier(t):
        return False
    return all(_plain(c) for c in t.children())


def mentions(t: z3.ExprRef, a: z3.ExprRef) -> bool:
    return t.eq(a) or (z3.is_app(t) and any(mentions(c, a) for c in t.children()))


def _has_var(t: z3.ExprRef) -> bool:
    return z3.is_var(t) or (z3.is_app(t) and any(_has_var(c) for c in t.children()))


def definition(q: z3.ExprRef, taken: set[int],
               outside: Callable[[z3.ExprRef], z3.ExprRef] | None = None) -> Linked | None:
    """The definition q states, if it is one (module docstring), of an array not in taken;
    a0 is `outside(array)` if given, else a fresh array."""
    if not (z3.is_quantifier(q) and q.is_forall()):  # type: ignore[attr-defined]
        return None
    body = q.body()  # type: ignore[attr-defined]
    if not z3.is_eq(body):
        return None
    for read, e in (body.children(), reversed(body.children())):
        if not (z3.is_select(read) and read.num_args() == 2):  # type: ignore[attr-defined]
            continue
        a, index = read.children()
        if not (z3.is_const(a) and a.decl().kind() == z3.Z3_OP_UNINTERPRETED) or a.get_id() in taken:
            continue
        if not z3.is_bv(index) or not _plain(e):
            continue
        pieces = _layout(index)
        if pieces is None or (len(pieces) == 1 and not _has_var(e)):
            continue  # no layout; or `∀v. a[v] = e`, in the array property fragment (pass 3)
        linked = _linked(a, e, pieces, q.num_vars(), outside)  # type: ignore[attr-defined]
        if linked is not None:
            return linked
    return None


def _linked(a: z3.ExprRef, e: z3.ExprRef, pieces: list[Piece], n: int,
            outside: Callable[[z3.ExprRef], z3.ExprRef] | None) -> Linked | None:
    """Λ for `∀v0…vn-1. a[f] = e`, f given by its pieces; None unless f is a layout (docstring)."""
    if sorted(p[0] for p in pieces if p[0] is not None) != list(range(n)):
        return None  # a variable missing (not injective) or used twice
    prefix = 0
    while prefix < len(pieces) and pieces[prefix][0] is None:
        prefix += 1
    if any(p[0] is None for p in pieces[prefix:]):
        return None  # constant bits below a variable: the range is no interval
    width = sum(p[2] for p in pieces)
    low = sum(p[2] for p in pieces[prefix:])  # k: the bits the variables fill
    top = 0
    for _, value, w in pieces[:prefix]:
        top = (top << w) | value
    lo, hi = top << low, (top << low) + (1 << low) - 1
    j = z3.Const("j", a.sort().domain())  # type: ignore[attr-defined]
    inverse: dict[int, z3.ExprRef] = {}
    offset = low
    for var, _, w in pieces[prefix:]:
        offset -= w
        assert var is not None
        inverse[var] = z3.Extract(offset + w - 1, offset, j)
    value = z3.substitute_vars(e, *(inverse[i] for i in range(n)))
    widths = tuple(w for _, _, w in pieces[prefix:])
    if low == width:
        return Linked(a, z3.Lambda([j], value), lo, hi, None, widths)
    rest = z3.FreshConst(a.sort(), "rest") if outside is None else outside(a)
    tests = _range(j, lo, hi)
    inside = tests[0] if len(tests) == 1 else z3.And(tests)
    return Linked(a, z3.Lambda([j], z3.If(inside, value, z3.Select(rest, j))), lo, hi, rest, widths)


def _range(j: z3.ExprRef, lo: int, hi: int) -> list[z3.BoolRef]:
    """`lo <= j` (left out when lo is 0) and `j <= hi`: the test of R that Λ makes, and the
    guards pass 3 splits a quantifier at, the same terms (Z3 shares equal terms, so the split
    finds them by id)."""
    width = j.sort().size()  # type: ignore[attr-defined]
    out = [] if lo == 0 else [z3.ULE(z3.BitVecVal(lo, width, j.ctx), j)]
    return out + [z3.ULE(j, z3.BitVecVal(hi, width, j.ctx))]


def conjuncts(t: z3.ExprRef) -> list[z3.ExprRef]:
    """The conjuncts of t, nested conjunctions flattened."""
    if z3.is_and(t):
        return [c for x in t.children() for c in conjuncts(x)]
    return [t]


def find(terms: list[z3.BoolRef], polarity: list[int]) -> tuple[list[z3.BoolRef], list[Linked]]:
    """The definitions among the top-level conjuncts of the positive terms, and the terms with
    each definition made true and its array replaced by Λ (not yet beta-reduced)."""
    found: list[Linked] = []
    dropped: list[tuple[z3.ExprRef, z3.BoolRef]] = []
    taken: set[int] = set()
    for t, p in zip(terms, polarity):
        if p != 1:
            continue
        for c in conjuncts(t):
            d = definition(c, taken)
            if d is not None:
                found.append(d)
                taken.add(d.array.get_id())
                dropped.append((c, z3.BoolVal(True, t.ctx)))
    if not found:
        return terms, []
    pairs = [(d.array, d.value) for d in found]
    out = [z3.substitute(z3.substitute(t, *dropped), *pairs) for t in terms]
    return out, found  # type: ignore[return-value]


def reinstate(model: z3.ModelRef, linked: tuple[Linked, ...]) -> None:
    """Give each substituted array its value in the model: Λ, with the model's a0."""
    for d in linked:
        model.update_value(d.array, model.eval(d.value, model_completion=True))
