"""The quantifier-free encoding of an obligation: its quantifiers replaced by ground instances.

Observation equivalence, invariants and well-formedness over maps are `forall`s over indices.
This module removes them where that is sound, in six passes over the asserted terms (the
hypotheses, and the goal as it is asserted: negated for a validity obligation):

0. Lambda definitions. Z3's simplifier beta-reduces a read of a lambda (an abstraction function
   of a refinement, layers/abstraction.py), but a lambda that is written to, chosen by an `if`
   or compared whole stays. Each such lambda `λx1…λxn. B` becomes a fresh array constant `a`
   with the hypothesis `∀x1…xn. a[x1]…[xn] = B`: by extensionality it makes `a` that lambda, so
   the formula is equisatisfiable, and the definition is a universal like any other (pass 3).
   The exported scripts use the same definitions (prover/export.py): SMT-LIB has no lambda.
1. Skolemization. A quantifier that is existential where it is asserted (`exists` in a positive
   position, `forall` in a negative one, e.g. in the negated goal) and is not under a universal
   one becomes its body over fresh constants. Equisatisfiable.
1a. Names for quantifiers in both polarities. A quantifier Q without free variables under `==`
   of Booleans or an `if` condition (a `check` on an `exists` in an operation), too large to
   expand into a disjunction, becomes a fresh Boolean b with the hypotheses b → Q and Q → b:
   equisatisfiable (b is Q's value in any model). Q now occurs in one polarity in each, so it is
   skolemized in the first where it is existential and instantiated (pass 3) in the other.
1b. Index-linking definitions (prover/linking.py). A universal hypothesis `∀v̄. a[f(v̄)] = e(v̄)`
   outside the fragment, f laying v̄ out in the index's bits (`owner[zext(v, 12)] = VM(v)`), is
   substituted away: `a` becomes λj. if j ∈ range(f) then e(f⁻¹(j)) else a0[j], equisatisfiably.
   A universal that then tests a bound index against range(f) is split there (pass 3).
2. The index set I: for each index sort, the ground terms the formula reads or writes arrays at
   (`select`/`store` indices), after skolemization.
3. Instantiation of every universal quantifier (in a positive position of the hypotheses):
   - in the array property fragment (Bradley, Manna and Sipma, "What's decidable about arrays?"),
     i.e. each bound variable occurs only as a whole index of an array read: over I ∪ {λ},
     λ a fresh index distinct from every term of I without a λ in it (an instance at λ can
     read at `b[λ]`, and nothing says λ ≠ b[λ]). For an index theory with equality only, this
     is complete: a model of the instances extends to a model of the quantifier by reading
     every array at an index outside I where it reads it at λ. When |I| + 1 would not be smaller
     than the sort, every value of the sort is taken instead;
   - otherwise, over every value of its (finite) sorts if there are at most EXPAND_LIMIT
     combinations, counted together with those of the expansions it is nested in (nested
     expansions multiply), and at most SPLIT_LIMIT if the expansion is a disjunction (an
     existential, or a quantifier in both polarities): an exact expansion. Z3 must search a
     disjunction case by case, so a large one costs more than the quantifier does (bench/widths.py
     measures it: a smaller sort must not be harder than a larger one, whose quantifier stays);
   - otherwise the quantifier stays, and the obligation is reported as quantified.
   A quantifier in both polarities (under `==` of Booleans or an `if` condition) is expanded or
   kept, never instantiated over I. Instances can read at new index terms: I grows with them
   and pass 3 is redone, at most MAX_ROUNDS times, each round making at most INSTANCE_LIMIT
   instances; an I that does not close keeps the quantifiers (or, for a weakened result, the
   last finished round's instances: implied by the input).
4. Reads pushed down (when no quantifier is left): by the read-over-write axiom, a read of a
   store or of an `if` between arrays becomes an `if` over reads, until every read is of an
   array the formula declares. An equivalence; it makes the formula easier for Z3 and cvc5.

Soundness does not rest on completeness: replacing a universal hypothesis by some of its
instances only weakens the hypotheses, so `unsat` (PROVED) carries over to the quantified
obligation whatever the instances. Completeness (a `sat` answer being a real counterexample, and
the vacuity check being exact) rests on the fragment argument above; tests/test_qf.py compares
the verdicts of both encodings on every shipped proof, case and mutant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import z3
from z3.z3 import _to_expr_ref  # a raw AST as an expression (not exported by z3)

from microverify.prover import linking

EXPAND_LIMIT = 256  # the most values an exact expansion of one quantifier may range over
SPLIT_LIMIT = 4  # the same for an expansion into a disjunction (existential, or both polarities)
MAX_ROUNDS = 8  # growing the index set I with the terms the instances read at, until it closes
INSTANCE_LIMIT = 4096  # the most instances one round of pass 3 may make, all quantifiers together


_Round = tuple[list[z3.BoolRef], list[z3.BoolRef], dict[tuple[z3.SortRef, int, int], z3.ExprRef], list[str], list[str]]


class _TooMany(Exception):
    """A round of instantiation would make more than INSTANCE_LIMIT instances."""


@dataclass
class Elimination:
    """The rewritten terms, the extra hypotheses (λ distinct from I, lambdas' constants defined),
    and what stayed quantified."""

    hypotheses: list[z3.BoolRef]
    goals: list[z3.BoolRef]
    side: list[z3.BoolRef] = field(default_factory=list)
    definitions: list[z3.BoolRef] = field(default_factory=list)  # of lambdas' constants, instantiated
    kept: list[str] = field(default_factory=list)  # why quantifiers stay, if any do
    completion: Completion | None = None  # how a model of the result extends to the quantifiers
    # Universals instantiated only at some terms (pass 3w): the result is then implied by the
    # input but not equisatisfiable with it, so only its `unsat` carries over.
    weakened: list[str] = field(default_factory=list)

    @property
    def quantifier_free(self) -> bool:
        return not self.kept


@dataclass(frozen=True)
class Completion:
    """What turns a model of the instantiated formula into a model of the quantified one (the
    fragment argument of pass 3): every array is read, at an index of its sort outside I that
    lies in a region with a λ, where it is read at that λ; elsewhere as the model has it."""

    index: dict[z3.SortRef, list[z3.ExprRef]]  # I, per index sort
    regions: list[tuple[z3.SortRef, int, int, z3.ExprRef]]  # (sort, lo, hi, λ): λ stands for [lo, hi)
    linked: tuple[linking.Linked, ...] = ()  # arrays substituted away (pass 1b): each is its Λ


def _simplify(t: z3.ExprRef) -> z3.ExprRef:
    """Z3's simplifier (it also beta-reduces reads of lambdas), but keeping comparisons of
    bit-vectors whole: by default it splits `k < 10` into tests of k's high and low bits, which
    would hide a guard of the fragment."""
    return z3.simplify(t, bv_le2extract=False)


def _expandable(q: z3.QuantifierRef, limit: int) -> bool:
    """Whether q's bound variables have at most `limit` values together."""
    sizes = [_sort_size(q.var_sort(i)) for i in range(q.num_vars())]
    return all(n is not None for n in sizes) and math.prod(n or 0 for n in sizes) <= limit


def _sort_size(sort: z3.SortRef) -> int | None:
    if sort.kind() == z3.Z3_BOOL_SORT:
        return 2
    if sort.kind() == z3.Z3_BV_SORT:
        return 1 << sort.size()  # type: ignore[attr-defined, no-any-return]
    return None


def _values(sort: z3.SortRef) -> list[z3.ExprRef]:
    if sort.kind() == z3.Z3_BOOL_SORT:
        return [z3.BoolVal(False, sort.ctx), z3.BoolVal(True, sort.ctx)]
    return [z3.BitVecVal(v, sort.size(), sort.ctx) for v in range(1 << sort.size())]  # type: ignore[attr-defined]


def _open(q: z3.QuantifierRef, names: str) -> tuple[list[z3.ExprRef], z3.ExprRef]:
    """The body of q over fresh constants, one per bound variable (in var_name order)."""
    consts = [z3.FreshConst(q.var_sort(i), names) for i in range(q.num_vars())]
    return consts, z3.substitute_vars(q.body(), *reversed(consts))


# Term walks use Z3's C API on raw ASTs: z3py's wrappers cost more than the walk itself.
APP, _QUANT = z3.Z3_APP_AST, z3.Z3_QUANTIFIER_AST


def _unchecked(checked: Callable[..., Any]) -> Callable[..., Any]:
    """The C function behind one of z3core's wrappers, without the wrapper's check of the error
    code (half the cost of a call). Only for getters called on what they accept: an id or a
    kind of any term, the arguments and operator of an application; every caller below tests
    the kind first. If z3core is built differently, the checked wrapper itself."""
    elements = (checked.__defaults__ or (None,))[-1]
    return getattr(elements, "f", checked)


_ast_id, _ast_kind = _unchecked(z3.Z3_get_ast_id), _unchecked(z3.Z3_get_ast_kind)
_num_args, _arg = _unchecked(z3.Z3_get_app_num_args), _unchecked(z3.Z3_get_app_arg)
_app_decl, _decl_kind = _unchecked(z3.Z3_get_app_decl), _unchecked(z3.Z3_get_decl_kind)


class Terms:
    """Raw views of the ASTs of one context."""

    def __init__(self, ctx: z3.Context) -> None:
        self.ctx = ctx
        self.c = ctx.ref()
        # AST id -> whether that term has no binder in it; the terms are kept referenced, since
        # Z3 may give the id of a freed term to a new, different one
        self._plain: dict[int, bool] = {}
        self._pinned: list[z3.AstRef] = []

    def id(self, a: z3.Ast) -> int:
        return _ast_id(self.c, a)  # type: ignore[no-any-return]

    def kind(self, a: z3.Ast) -> int:
        k = _ast_kind(self.c, a)
        return APP if k == z3.Z3_NUMERAL_AST else k  # type: ignore[no-any-return]

    def args(self, a: z3.Ast) -> list[z3.Ast]:
        """The arguments of an application."""
        c = self.c
        return [_arg(c, a, i) for i in range(_num_args(c, a))]

    def updated(self, a: z3.Ast, args: list[z3.Ast], new: list[z3.Ast]) -> z3.Ast | None:
        """The application a with the arguments `new` in place of its `args`, or None if they
        are the same terms (a new term is not referenced yet: the caller keeps it)."""
        if all(self.id(x) == self.id(y) for x, y in zip(args, new)):
            return None
        return z3.Z3_update_term(self.c, a, len(new), (z3.Ast * len(new))(*new))

    def op(self, a: z3.Ast) -> int:
        """The operator of an application."""
        return _decl_kind(self.c, _app_decl(self.c, a))  # type: ignore[no-any-return]

    def body(self, a: z3.Ast) -> z3.Ast:
        return z3.Z3_get_quantifier_body(self.c, a)

    def is_lambda(self, a: z3.Ast) -> bool:
        return bool(z3.Z3_is_lambda(self.c, a))

    def expr(self, a: z3.Ast) -> z3.ExprRef:
        return _to_expr_ref(a, self.ctx)  # type: ignore[no-any-return]

    def children_polarity(self, a: z3.Ast, pol: int) -> list[tuple[z3.Ast, int]]:
        """Each argument of a with its polarity: +1 positive, -1 negative, 0 both."""
        args, op = self.args(a), self.op(a)
        if op == z3.Z3_OP_NOT:
            return [(args[0], -pol)]
        if op in (z3.Z3_OP_AND, z3.Z3_OP_OR):
            return [(x, pol) for x in args]
        if op == z3.Z3_OP_IMPLIES:
            return [(args[0], -pol), (args[1], pol)]
        if op == z3.Z3_OP_ITE:
            return [(args[0], 0), (args[1], pol), (args[2], pol)]
        return [(x, 0) for x in args]

    def walk(self, roots: list[z3.Ast]) -> Iterator[z3.Ast]:
        """Every distinct subterm once, quantifier bodies included."""
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            a = stack.pop()
            i = self.id(a)
            if i in seen:
                continue
            seen.add(i)
            yield a
            k = self.kind(a)
            if k == APP:
                stack.extend(self.args(a))
            elif k == _QUANT:
                stack.append(self.body(a))

    def plain(self, root: z3.Ast) -> bool:
        """No binder (forall, exists, lambda) in root: remembered for every subterm, so the
        walks for binders skip what they have seen to have none. Keeping root referenced keeps
        each of its subterms (and their ids) alive."""
        memo = self._plain
        if self.id(root) in memo:
            return memo[self.id(root)]
        self._pinned.append(z3.AstRef(root, self.ctx))
        stack = [(root, False)]
        while stack:
            a, expanded = stack.pop()
            i = self.id(a)
            if i in memo:
                continue
            k = self.kind(a)
            if k != APP:
                memo[i] = k != _QUANT  # a bound variable has no binder in it
            elif not expanded:
                args = self.args(a)
                stack.append((a, True))
                stack.extend((x, False) for x in args)
                continue
            else:
                memo[i] = all(memo[self.id(x)] for x in self.args(a))
        return memo[self.id(root)]

    def indices(self, roots: list[z3.Ast]) -> Iterator[z3.Ast]:
        """The index arguments of every read and write in the roots (not the value written)."""
        for a in self.walk(roots):
            if self.kind(a) != APP:
                continue
            op = self.op(a)
            if op in (z3.Z3_OP_SELECT, z3.Z3_OP_STORE):
                args = self.args(a)
                yield from args[1:len(args) - (op == z3.Z3_OP_STORE)]

    def ground(self, a: z3.Ast, memo: dict[int, bool]) -> bool:
        """No free (de Bruijn) variable in a."""
        i = self.id(a)
        if i not in memo:
            k = self.kind(a)
            memo[i] = k == APP and all(self.ground(x, memo) for x in self.args(a))
        return memo[i]

    def closed(self, a: z3.Ast, memo: dict[tuple[int, int], bool], depth: int = 0) -> bool:
        """No variable in a bound outside it (a de Bruijn index of `depth` or more, counted
        from a's top, where `depth` binders are around a)."""
        key = (self.id(a), depth)
        if key not in memo:
            k = _ast_kind(self.c, a)
            if k == z3.Z3_VAR_AST:
                memo[key] = z3.Z3_get_index_value(self.c, a) < depth
            elif k == _QUANT:
                memo[key] = self.closed(self.body(a), memo, depth + z3.Z3_get_quantifier_num_bound(self.c, a))
            else:
                memo[key] = k != APP or all(self.closed(x, memo, depth) for x in self.args(a))
        return memo[key]

    def mentions(self, a: z3.Ast, ids: set[int], memo: dict[int, bool]) -> bool:
        """One of the terms `ids` (AST ids) occurs in the ground term a."""
        i = self.id(a)
        if i not in memo:
            memo[i] = i in ids or any(self.mentions(x, ids, memo) for x in self.args(a))
        return memo[i]


def _outermost(terms: Terms, t: z3.ExprRef, pol: int) -> dict[int, tuple[z3.QuantifierRef, set[int]]]:
    """The binders of t not inside another one (lambdas too), with their polarities."""
    found: dict[int, tuple[z3.QuantifierRef, set[int]]] = {}
    seen: set[tuple[int, int]] = set()
    stack = [(t.as_ast(), pol)]
    while stack:
        a, p = stack.pop()
        key = (terms.id(a), p)
        if key in seen:
            continue
        seen.add(key)
        k = terms.kind(a)
        if k == _QUANT:
            found.setdefault(key[0], (terms.expr(a), set()))[1].add(p)  # type: ignore[arg-type]
        elif k == APP and not terms.plain(a):
            stack.extend(terms.children_polarity(a, p))
    return found


class Definitions:
    """Lambdas replaced by array constants, each with its defining universal hypothesis."""

    def __init__(self, ctx: z3.Context) -> None:
        self.terms = Terms(ctx)
        # lambda's AST id -> (the lambda, its constant). The lambda is kept referenced: once Z3
        # frees a term it may give its id to a new, different one, which would then be taken
        # for the first lambda and get its constant.
        self.constants: dict[int, tuple[z3.QuantifierRef, z3.ExprRef]] = {}
        self.new: list[z3.BoolRef] = []  # definitions not yet taken by the caller

    def constant(self, lam: z3.QuantifierRef) -> z3.ExprRef:
        """The constant standing for a lambda without free variables (defined on first use)."""
        key = lam.get_id()
        if key not in self.constants:
            a = z3.FreshConst(lam.sort(), "abs")
            self.constants[key] = (lam, a)
            consts: list[z3.ExprRef] = []
            body: z3.ExprRef = lam
            read: z3.ExprRef = a
            while z3.is_quantifier(body) and body.is_lambda():  # type: ignore[attr-defined]
                fresh, body = _open(body, "x")  # type: ignore[arg-type]
                consts += fresh
                read = z3.Select(read, *fresh)  # one level of nesting, all of its indices
            # Lambdas inside body may read consts: they are defined once instantiated (pass 3).
            self.new.append(z3.ForAll(consts, read == body))
        return self.constants[key][1]

    def replace(self, t: z3.ExprRef) -> z3.ExprRef:
        """t with each lambda not under a binder replaced by its constant."""
        pairs = [(q, self.constant(q)) for q, _ in _outermost(self.terms, t, 1).values() if q.is_lambda()]
        return z3.substitute(t, *pairs) if pairs else t

    def take(self) -> list[z3.BoolRef]:
        out, self.new = self.new, []
        return out


def define_lambdas(terms: list[z3.BoolRef]) -> tuple[list[z3.BoolRef], list[z3.BoolRef]]:
    """The terms with their lambdas (outside binders) replaced by constants, and the constants'
    definitions (pass 0)."""
    if not terms:
        return [], []
    d = Definitions(terms[0].ctx)
    out = [d.replace(t) for t in terms]
    return out, d.take()  # type: ignore[return-value]


def _existential(q: z3.QuantifierRef, pol: int) -> bool:
    return (q.is_exists() and pol == 1) or (q.is_forall() and pol == -1)


class _Eliminator:
    def __init__(self, ctx: z3.Context, weaken: bool) -> None:
        self.ctx = ctx
        self.terms = Terms(ctx)
        self.definitions = Definitions(ctx)
        self.index: dict[z3.SortRef, dict[int, z3.ExprRef]] = {}
        self.lambdas: dict[tuple[z3.SortRef, int, int], z3.ExprRef] = {}  # λ per sort and region
        self.fresh: dict[tuple[z3.SortRef, int, int], z3.ExprRef] = {}  # the λs this round uses
        self.kept: list[str] = []  # why a quantifier stays
        self.made: list[z3.ExprRef] = []  # the instances made this round
        self.count = 0  # how many instances this round made, nested ones included
        # The regions of each index sort: cut at every numeral a guard compares a bound variable
        # with (and the next value), over all quantifiers; completeness needs one partition.
        self.cuts: dict[z3.SortRef, set[int]] = {}
        self.refined = False  # the partition got finer this round
        self.linked: list[linking.Linked] = []  # index-linking definitions (pass 1b)
        self.weaken = weaken  # pass 3w allowed
        self.weakened: list[str] = []  # the quantifiers pass 3w instantiated this round
        self.named: list[z3.BoolRef] = []  # definitions of names of quantifiers (pass 1a)

    # -- passes 0, 1 and 1a, in one walk
    def skolemize(self, t: z3.ExprRef, pol: int) -> z3.ExprRef:
        pairs = []
        for q, pols in _outermost(self.terms, t, pol).values():
            if q.is_lambda():
                pairs.append((q, self.definitions.constant(q)))
            elif len(pols) == 1 and _existential(q, p := next(iter(pols))):
                _, body = _open(q, "sk")
                pairs.append((q, self.skolemize(body, p)))
            elif (len(pols) > 1 or 0 in pols) and not _expandable(q, SPLIT_LIMIT):
                name = z3.FreshBool("named", self.ctx)
                self.named += [z3.Implies(name, q), z3.Implies(q, name)]
                pairs.append((q, name))
        return z3.substitute(t, *pairs) if pairs else t

    def name_definitions(self) -> list[z3.BoolRef]:
        """The definitions of the names pass 1a gave quantifiers in both polarities, each
        quantifier now in one polarity (and skolemized where it is existential)."""
        out: list[z3.BoolRef] = []
        while self.named:
            batch, self.named = self.named, []
            out += [self.skolemize(t, 1) for t in batch]  # type: ignore[misc]
        return out

    # -- pass 2
    def collect_index(self, roots: list[z3.ExprRef]) -> None:
        memo: dict[int, bool] = {}
        for i in self.terms.indices([r.as_ast() for r in roots]):
            if self.terms.ground(i, memo):
                index = self.terms.expr(i)
                self.index.setdefault(index.sort(), {})[index.get_id()] = index

    # -- pass 3
    def instantiate(self, t: z3.ExprRef, pol: int, budget: int = EXPAND_LIMIT) -> z3.ExprRef:
        """`t` with its quantifiers replaced by instances. An exact expansion may make at most
        `budget` instances, counting those of the expansions it is nested in: nested expansions
        multiply, and a smaller sort must never cost more than a larger one, whose quantifiers
        stay."""
        pairs = []
        for q, pols in _outermost(self.terms, t, pol).values():
            p = next(iter(pols)) if len(pols) == 1 else 0
            replaced = self._replace(q, p, budget)
            if replaced is not None:
                pairs.append((q, replaced))
        return z3.substitute(t, *pairs) if pairs else t

    def _replace(self, q: z3.QuantifierRef, pol: int, budget: int, split: bool = True) -> z3.ExprRef | None:
        if q.is_lambda():  # inside an instance: without free variables
            return self.definitions.constant(q)
        consts, body = _open(q, "i")
        sorts = [q.var_sort(i) for i in range(q.num_vars())]
        universal = pol != 0 and not _existential(q, pol)
        atoms = _fragment_atoms(self.terms, body, consts) if universal else None
        if atoms is None and universal and split:
            parts = self._split(q, consts, body)
            if parts is not None:
                return self._parts(q, parts, pol, budget)
        limit = budget if universal else min(budget, SPLIT_LIMIT)
        cap: int | None = None  # how many instances, if not all
        if atoms is not None:
            choices = [self._choices(c, atoms[c.get_id()]) for c in consts]
        elif _expandable(q, limit):
            choices = [[(v, []) for v in _values(s)] for s in sorts]
            budget //= math.prod(len(c) for c in choices)
        elif universal and self.weaken:
            choices = [[(t, []) for t in self._matching(c, body)] for c in consts]
            cap = min(math.prod(len(c) for c in choices), budget)
            self.weakened.append(f"universal quantifier over {', '.join(map(str, sorts))} instantiated at "
                                 f"{cap} of its values: {q.sexpr()[:160]}")
            budget //= max(1, cap)
        else:
            self.kept.append(f"{'universal' if universal else 'existential' if pol else 'mixed-polarity'} "
                             f"quantifier over {', '.join(map(str, sorts))} outside the array property "
                             f"fragment, too large to expand"
                             f"{'' if budget == EXPAND_LIMIT else ' inside another expansion'}: {q.sexpr()[:160]}")
            return None
        neutral = z3.BoolVal(q.is_forall(), self.ctx)
        instances = []
        # at most `cap` instances of a weakened quantifier (any of them is implied); every
        # other expansion is exact, all of its instances
        for combo in itertools.islice(itertools.product(*choices), cap):
            fixed = [pair for _, known in combo for pair in known]  # guard atoms known in a region
            instance = _simplify(z3.substitute(z3.substitute(body, *fixed) if fixed else body,
                                                 *zip(consts, (term for term, _ in combo))))
            self.count += 1
            if self.count > INSTANCE_LIMIT:
                raise _TooMany
            if not instance.eq(neutral):
                instances.append(self.instantiate(instance, pol, budget))
                self.made.append(instance)
        if q.is_forall():
            return z3.And(instances + [neutral])
        return z3.Or(instances + [neutral])

    def _matching(self, c: z3.ExprRef, body: z3.ExprRef) -> list[z3.ExprRef]:
        """Where pass 3w instantiates the bound constant c: at each index term of its sort in I,
        and, where body reads or writes an array at an index that holds c in some of its bits
        (`concat(v, c)`, `zext(c)`), at those bits of each index term of that array's index
        sort in I (`extract(k)` for `a[k]`: the instance reads `a[concat(v, extract(k))]`,
        which is `a[k]` when v is the rest of k)."""
        found = {t.get_id(): t for t in self.index.get(c.sort(), {}).values()}
        for raw in self.terms.indices([body.as_ast()]):
            index = self.terms.expr(raw)
            for hi, lo in _positions(index, c):
                for k in self.index.get(index.sort(), {}).values():
                    t = _simplify(z3.Extract(hi, lo, k))
                    found.setdefault(t.get_id(), t)
        return list(found.values())

    def _split(self, q: z3.QuantifierRef, consts: list[z3.ExprRef], body: z3.ExprRef) -> list[z3.ExprRef] | None:
        """The quantifier `Qconsts. body` as parts whose conjunction (a `forall`) or disjunction
        (an `exists`) it is, if body tests a bound constant c against the range R of an
        index-linking definition (pass 1b); else None.

        It is split at each such guard g: for a `forall`, `g → body[g := true]` and
        `¬g → body[g := false]`; for an `exists`, `g ∧ body[g := true]` and `¬g ∧ body[g := false]`;
        the parts that became neutral are left out. In a part over R (or when R is the whole
        sort), c becomes f(ū) for fresh ū, one per variable of the definition (a bijection onto
        R), if then the one-point rule removes some u (`∀u. u ≠ t ∨ B` and `∃u. u = t ∧ B` are
        B[u := t] for a t without u); else c stays. All equivalences."""
        present = {self.terms.id(x) for x in self.terms.walk([body.as_ast()])}
        ranges = [(c, d) for c in consts for d in self.linked
                  if d.sort.eq(c.sort()) and (d.onto or any(g.get_id() in present for g in d.guards(c)))]
        if not ranges:
            return None
        forall = q.is_forall()
        guards = list({g.get_id(): g for c, d in ranges for g in d.guards(c)}.values())
        parts: list[tuple[dict[int, bool], z3.ExprRef]] = [({}, body)]
        for g in guards:
            parts = [({**fixed, g.get_id(): value}, _simplify(z3.substitute(b, (g, z3.BoolVal(value, self.ctx)))))
                     for fixed, b in parts for value in (True, False)]
        neutral = z3.is_true if forall else z3.is_false
        out = []
        for fixed, b in parts:
            if neutral(b):
                continue
            if forall:
                tests = [z3.Not(g) if fixed[g.get_id()] else g for g in guards]
                part = z3.Or(tests + [b]) if tests else b
            else:
                tests = [g if fixed[g.get_id()] else z3.Not(g) for g in guards]
                part = z3.And(tests + [b]) if tests else b
            bound = list(consts)
            for c, d in ranges:
                if any(x.eq(c) for x in bound) and all(fixed[g.get_id()] for g in d.guards(c)):
                    us = d.variables()
                    renamed, left = _one_point(_simplify(z3.substitute(part, (c, d.member(us)))),
                                               [y for x in bound for y in (us if x.eq(c) else [x])], forall)
                    if len(left) < len(bound) + len(us) - 1:  # else c stays: a whole index, as the fragment wants
                        part, bound = renamed, left
            if not neutral(part):
                out.append((z3.ForAll if forall else z3.Exists)(bound, part) if bound else part)
        return out

    def _parts(self, q: z3.QuantifierRef, parts: list[z3.ExprRef], pol: int, budget: int) -> z3.ExprRef:
        """A split quantifier as its parts (a conjunction for a `forall`, a disjunction for an
        `exists`), each instantiated, or kept whole."""
        out = []
        for part in parts:
            if not z3.is_quantifier(part):  # its quantifier gone by the one-point rule
                self.made.append(part)
                out.append(self.instantiate(part, pol, budget))
                continue
            replaced = self._replace(part, pol, budget, split=False)  # type: ignore[arg-type]
            out.append(part if replaced is None else replaced)
        if q.is_forall():
            return z3.And(out + [z3.BoolVal(True, self.ctx)])
        return z3.Or(out + [z3.BoolVal(False, self.ctx)])

    def _choices(self, const: z3.ExprRef, atoms: list[z3.BoolRef]) -> list[Choice]:
        """Where to instantiate a bound variable of the fragment: at each index term of I, and in
        each region of its sort between the numerals its guard atoms compare it with, at a fresh
        λ of that region outside I (where the atoms are constant), or at every value of the
        region when it is too small to surely hold such a λ."""
        sort = const.sort()
        index = list(self.index.get(sort, {}).values())
        out: list[Choice] = [(t, []) for t in index]
        width = sort.size()  # type: ignore[attr-defined]
        cuts = self.cuts.setdefault(sort, {0})  # one partition per sort, shared by every quantifier
        size = len(cuts)
        for atom in atoms:
            n = next(x for x in atom.children() if z3.is_bv_value(x)).as_long()  # type: ignore[attr-defined]
            cuts.update(c for c in (n, n + 1) if c < 1 << width)
        self.refined |= len(cuts) > size
        bounds = sorted(cuts) + [1 << width]
        for lo, hi in zip(bounds, bounds[1:]):
            known = [(atom, _simplify(z3.substitute(atom, (const, z3.BitVecVal(lo, width, self.ctx)))))
                     for atom in atoms]
            if hi - lo <= len(index) + 1:
                out += [(z3.BitVecVal(v, width, self.ctx), []) for v in range(lo, hi)]
                continue
            key = (sort, lo, hi)
            if key not in self.lambdas:
                self.lambdas[key] = z3.FreshConst(sort, "lambda")
            lam = self.fresh[key] = self.lambdas[key]
            out.append((lam, known))
        return out

    def side(self, fixed: dict[z3.SortRef, list[z3.ExprRef]]) -> list[z3.BoolRef]:
        """Each λ lies in its region and differs from the index terms of its sort fixed before
        it is chosen (`fixed`, ground_index; satisfiable: the region has more values)."""
        out = []
        for (sort, lo, hi), lam in self.fresh.items():
            width = sort.size()  # type: ignore[attr-defined]
            inside = [z3.ULE(z3.BitVecVal(lo, width, self.ctx), lam), z3.ULE(lam, z3.BitVecVal(hi - 1, width, self.ctx))]
            out.append(z3.And(inside + [lam != t for t in fixed[sort]]))
        return out

    def ground_index(self, sort: z3.SortRef) -> list[z3.ExprRef]:
        """The index terms of a sort that mention no λ. An instance at λ can read at a term of
        λ (`b[λ]`, for `∀i. a[b[i]]`); "λ differs from b[λ]" would say that λ is on no short cycle of
        b, which the input does not imply. λ must only differ from what is fixed before it is
        chosen: any model of the input then extends to a λ, when the region is large enough."""
        lams = {self.terms.id(lam.as_ast()) for lam in self.lambdas.values()}
        memo: dict[int, bool] = {}
        return [t for t in self.index.get(sort, {}).values() if not self.terms.mentions(t.as_ast(), lams, memo)]


def _positions(index: z3.ExprRef, c: z3.ExprRef) -> list[tuple[int, int]]:
    """The bits (high, low) of a bit-vector term that are exactly the constant c, through
    concatenation and zero-extension."""
    if index.eq(c):
        return [(c.size() - 1, 0)]  # type: ignore[attr-defined]
    if z3.is_app_of(index, z3.Z3_OP_ZERO_EXT):
        return _positions(index.arg(0), c)  # type: ignore[attr-defined]
    if not z3.is_app_of(index, z3.Z3_OP_CONCAT):
        return []
    out: list[tuple[int, int]] = []
    offset = 0
    for part in reversed(index.children()):
        out += [(hi + offset, lo + offset) for hi, lo in _positions(part, c)]
        offset += part.size()  # type: ignore[attr-defined]
    return out


def _one_point(body: z3.ExprRef, bound: list[z3.ExprRef], forall: bool) -> tuple[z3.ExprRef, list[z3.ExprRef]]:
    """`∀u. u ≠ t ∨ B` (forall) or `∃u. u = t ∧ B` (exists) as B[u := t], for each such disjunct
    (conjunct) of body whose t does not mention u."""
    while bound:
        items = body.children() if (z3.is_or(body) if forall else z3.is_and(body)) else [body]
        for lit in items:
            eq = lit.arg(0) if forall and z3.is_not(lit) else lit if not forall else None
            if eq is None or not z3.is_eq(eq):
                continue
            x, y = eq.children()
            pair = next(((u, t) for u, t in ((x, y), (y, x))
                         if any(u.eq(b) for b in bound) and not linking.mentions(t, u)), None)
            if pair is not None:
                body = _simplify(z3.substitute(body, pair))
                bound = [b for b in bound if not b.eq(pair[0])]
                break
        else:
            break
    return body, bound


Choice = tuple[z3.ExprRef, list[tuple[z3.BoolRef, z3.BoolRef]]]  # a term, and guard atoms fixed there
_COMPARISONS = {z3.Z3_OP_EQ, z3.Z3_OP_ULEQ, z3.Z3_OP_ULT, z3.Z3_OP_UGEQ, z3.Z3_OP_UGT}


def _fragment_atoms(terms: Terms, body: z3.ExprRef, consts: list[z3.ExprRef]) -> dict[int, list[z3.BoolRef]] | None:
    """None unless each bit-vector constant of consts occurs in body only as a whole index of an
    array read or in an (unsigned) comparison with a numeral; else those comparisons per constant."""
    bound = {c.get_id() for c in consts}
    if body.get_id() in bound or any(not z3.is_bv(c) for c in consts):
        return None
    atoms: dict[int, dict[int, z3.BoolRef]] = {i: {} for i in bound}
    for a in terms.walk([body.as_ast()]):
        if terms.kind(a) != APP:
            continue
        args = terms.args(a)
        mine = [x for x in args if terms.id(x) in bound]
        if not mine:
            continue
        op = terms.op(a)
        if op == z3.Z3_OP_SELECT and terms.id(args[0]) not in bound:
            continue
        numeral = [x for x in args if z3.Z3_get_ast_kind(terms.c, x) == z3.Z3_NUMERAL_AST]
        if op in _COMPARISONS and len(args) == 2 and len(mine) == 1 and len(numeral) == 1:
            atoms[terms.id(mine[0])][terms.id(a)] = terms.expr(a)  # type: ignore[assignment]
            continue
        return None  # a bound constant used some other way
    return {i: list(found.values()) for i, found in atoms.items()}


class Reads:
    """Reads pushed through writes and choices, down to the arrays the formula declares (pass 4):
    `select(store(a, j, v), i)` becomes `ite(i = j, v, select(a, i))` and `select(ite(c, a, b), i)`
    becomes `ite(c, select(a, i), select(b, i))`, the read-over-write axiom: an equivalence."""

    def __init__(self, ctx: z3.Context, binders: bool = False) -> None:
        self.t = Terms(ctx)
        self.c = self.t.c
        self.binders = binders  # into the bodies of forall and exists too
        self.closed_memo: dict[tuple[int, int], bool] = {}  # Terms.closed of the lambdas read
        self.made: dict[int, z3.Ast] = {}  # a rewritten term per AST id
        self.reads: dict[tuple[int, int], z3.Ast] = {}
        # Every term in `made` and `reads` is kept referenced until the rewriting ends: the
        # terms given to expand (and so their subterms), and each term made here
        self.alive: list[z3.AstRef] = []

    def expand(self, t: z3.ExprRef) -> z3.ExprRef:
        self.alive.append(t)
        return self.t.expr(self.term(t.as_ast()))

    def push(self, read: z3.Ast) -> z3.Ast:
        """A read (a raw `select` term) as `expand` rewrites it (prover/goalform.py)."""
        self.alive.append(z3.AstRef(read, self.t.ctx))
        return self.term(read)

    def _keep(self, raw: z3.Ast) -> z3.Ast:
        """raw, referenced until the rewriting ends; a new term is already rewritten."""
        i = self.t.id(raw)
        if i not in self.made:
            self.made[i] = raw
            self.alive.append(z3.AstRef(raw, self.t.ctx))
        return raw

    def term(self, a: z3.Ast) -> z3.Ast:
        key = self.t.id(a)
        if key not in self.made:
            args = self.t.args(a) if self.t.kind(a) == APP else []
            if args and self.t.op(a) == z3.Z3_OP_SELECT and len(args) == 2:
                out = self.read(args[0], self.term(args[1]))
            elif self.binders and self.t.kind(a) == _QUANT and not self.t.is_lambda(a):
                body = self.t.body(a)
                new = self.term(body)
                out = a if self.t.id(new) == self.t.id(body) else \
                    self._keep(z3.Z3_update_term(self.c, a, 1, (z3.Ast * 1)(new)))
            else:
                changed = self.t.updated(a, args, [self.term(x) for x in args])
                out = a if changed is None else self._keep(changed)
            self.made[key] = out
        return self.made[key]

    def read(self, array: z3.Ast, i: z3.Ast) -> z3.Ast:
        """The value of `select(array, i)`, i already rewritten."""
        key = (self.t.id(array), self.t.id(i))
        if key not in self.reads:
            self.reads[key] = self._keep(self._read(array, i))
        return self.reads[key]

    def _read(self, array: z3.Ast, i: z3.Ast) -> z3.Ast:
        op = self.t.op(array) if self.t.kind(array) == APP else None
        args = self.t.args(array) if op is not None else []
        if op == z3.Z3_OP_STORE and len(args) == 3:
            j, v = self.term(args[1]), self.term(args[2])
            if self.t.id(i) == self.t.id(j):
                return v
            if self._value(i) and self._value(j):  # distinct values
                return self.read(args[0], i)
            same = self._keep(z3.Z3_mk_eq(self.c, i, j))  # kept now: the read below makes terms
            return self._ite(same, v, self.read(args[0], i))
        if op == z3.Z3_OP_ITE:
            return self._ite(self.term(args[0]), self.read(args[1], i), self.read(args[2], i))
        if op == z3.Z3_OP_CONST_ARRAY:
            return self.term(args[0])
        # a lambda read is reduced if it has no variable bound outside it (under a quantifier,
        # it may read that quantifier's: substituting for its own alone would leave them
        # pointing one binder too far out)
        if op is None and self.t.is_lambda(array) and z3.Z3_get_quantifier_num_bound(self.c, array) == 1 \
                and (not self.binders or self.t.closed(array, self.closed_memo)):
            return self.term(self._keep(z3.Z3_substitute_vars(self.c, self.t.body(array), 1, (z3.Ast * 1)(i))))
        whole = self.term(array)
        if self.t.id(whole) != self.t.id(array):  # a read of a nested array, now pushed down
            return self.read(whole, i)
        return z3.Z3_mk_select(self.c, array, i)

    def _ite(self, c: z3.Ast, a: z3.Ast, b: z3.Ast) -> z3.Ast:
        return a if self.t.id(a) == self.t.id(b) else z3.Z3_mk_ite(self.c, c, a, b)

    def _value(self, a: z3.Ast) -> bool:
        return bool(z3.Z3_is_numeral_ast(self.c, a)) or \
            self.t.kind(a) == APP and self.t.op(a) in (z3.Z3_OP_TRUE, z3.Z3_OP_FALSE)


def expand_reads(terms: list[z3.BoolRef], binders: bool = False) -> list[z3.BoolRef]:
    """Quantifier-free terms with every read pushed down to a declared array (pass 4); with
    `binders`, terms with quantifiers too, their bodies rewritten alike (a read whose index
    mentions a bound variable is pushed down the same way)."""
    if not terms:
        return []
    reads = Reads(terms[0].ctx, binders)
    return [reads.expand(t) for t in terms]  # type: ignore[misc]


def _binders(terms: list[z3.BoolRef]) -> Iterator[str]:
    """Each binder in the terms, as it is met: "lambda" or "quantifier" (forall or exists)."""
    if not terms:
        return
    raw = Terms(terms[0].ctx)
    for a in raw.walk([t.as_ast() for t in terms]):
        if raw.kind(a) == _QUANT:
            yield "lambda" if raw.is_lambda(a) else "quantifier"


def binders(terms: list[z3.BoolRef]) -> set[str]:
    """Which binders the terms contain: "lambda", "quantifier" (forall or exists), or none."""
    return set(_binders(terms))


def has_quantifier(terms: list[z3.BoolRef]) -> bool:
    """A forall, exists or lambda: not quantifier-free (a lambda is a quantifier to a solver).
    The walk stops at the first one."""
    return next(_binders(terms), None) is not None


def eliminate(hypotheses: list[z3.BoolRef], goals: list[z3.BoolRef], goal_polarity: int,
              weaken: bool = False) -> Elimination:
    """Hypotheses and goals without quantifiers where that is sound. goal_polarity is -1 when
    the goals are asserted negated (a validity obligation), +1 when asserted as they are.

    With `weaken`, a universal (in effect) that neither the fragment nor an expansion removes is
    instantiated at the terms `_matching` finds (pass 3w): the result is then only implied by
    the input, and `Elimination.weakened` says so."""
    ctx = (hypotheses + goals)[0].ctx
    e = _Eliminator(ctx, weaken)
    polarity = [1] * len(hypotheses) + [goal_polarity] * len(goals)
    skolem = [e.skolemize(_simplify(t), p) for t, p in zip(hypotheses + goals, polarity)]
    named = e.name_definitions()
    definitions = e.definitions.take() + named  # universal hypotheses: nothing to skolemize
    linked, e.linked = linking.find(skolem + definitions, polarity + [1] * len(definitions))
    if e.linked:  # pass 1b: Λ's reads beta-reduced, through writes at ground indices
        reads = Reads(ctx)
        linked = [_simplify(reads.expand(t)) for t in linked]
        skolem, definitions = linked[:len(skolem)], linked[len(skolem):]
    e.collect_index(skolem + definitions)
    done, defined = skolem, definitions
    last: _Round | None = None  # the last round that finished
    for _ in range(MAX_ROUNDS):
        e.kept, e.fresh, e.made, e.refined, e.weakened, e.count = [], {}, [], False, [], 0
        try:
            done = [e.instantiate(t, p) for t, p in zip(skolem, polarity)]
            defined = [e.instantiate(t, 1) for t in definitions]
        except _TooMany:
            # Growing I further costs more than the round may make. A finished round's instances
            # are still implied by the input (enough for a weakened result); nothing else is.
            why = f"the index set did not close within {INSTANCE_LIMIT} instances per round"
            if weaken and last is not None:
                done, defined, e.fresh, e.kept, e.weakened = last
                e.weakened = [*e.weakened, why]
            else:
                done, defined, e.fresh, e.kept = skolem, definitions, {}, [why]
            break
        new = e.definitions.take()  # of lambdas met in instances
        definitions += new
        if not e.fresh and not new:
            break  # no instantiation over I: nothing rests on I being complete
        before = {s: set(terms) for s, terms in e.index.items()}
        e.collect_index(e.made + new)  # the rest of the terms was collected before
        for lam in e.lambdas.values():  # λs are not index terms
            e.index.get(lam.sort(), {}).pop(lam.get_id(), None)
        if not new and not e.refined and all(set(terms) <= before.get(s, set()) for s, terms in e.index.items()):
            break  # instances read arrays only at I ∪ {λ}, over one partition: I is closed
        last = (done, defined, e.fresh, e.kept, e.weakened)
    else:  # the instances may not be complete: fine for a weakened result, used only for `unsat`
        (e.weakened if weaken else e.kept).append("the index set or the regions did not close: "
                                                  "instances may not be complete")
    fixed = {sort: e.ground_index(sort) for sort, _, _ in e.fresh}
    if any(hi - lo <= len(fixed[sort]) for sort, lo, hi in e.fresh):
        # Only when I did not close: a region too small for a λ outside I (side() would then
        # constrain λ unsatisfiably). A model of the input must extend to the λs, even for `unsat`.
        e.kept.append("a region of an index sort has no value outside the index set")
    side = e.side(fixed)
    if not e.kept:  # pass 4
        reads = Reads(ctx)
        done, side, defined = ([reads.expand(t) for t in group] for group in (done, side, defined))
    n = len(hypotheses)
    completion = Completion({sort: list(terms.values()) for sort, terms in e.index.items()},
                            [(sort, lo, hi, lam) for (sort, lo, hi), lam in e.fresh.items()], tuple(e.linked))
    return Elimination(done[:n], done[n:], side, defined, e.kept, completion, e.weakened)  # type: ignore[arg-type]
