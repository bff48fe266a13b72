"""Goals that an operation leaves as they were: a goal about the state after a step that the
step does not change is the hypothesis it was before, and is left out of the obligation.

INV asks `I(step(s))` under `I(s)`, and WSC `step(s) ~u step(t)` under `s ~u t`. A clause of
the invariant, or a component of the view, whose fields the operation leaves as they were (the
same terms after the step as before, in every run) states after the step the formula the
hypothesis states of it before. Which fields a goal reads only picks the candidates: a goal is
left out only if the formula it states after the step, with its outer quantifiers, is a
conjunct of the hypothesis, compared term by term up to the names of bound variables
(`alpha_equal`), whatever it reads. Leaving it out changes no answer (the hypothesis implies
it), only what Z3 is asked: an operation that writes one field is asked about that field's
clauses and components alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import z3

from microverify.layers.encoding import MapVal, RecordVal, Value
from microverify.layers.model import Labeled
from microverify.prover.formula import Run


def alpha_equal(a: z3.ExprRef, b: z3.ExprRef) -> bool:
    """Whether a and b are the same formula up to the names of the variables their quantifiers
    bind (Z3 keeps the names, which lowering makes fresh each time; a body refers to its
    variables by position, so two bodies that differ only there are the same term). Patterns
    are not compared: they do not change what a quantifier means."""
    todo, seen = [(a, b)], set()
    while todo:
        x, y = todo.pop()
        key = (x.get_id(), y.get_id())
        if x.eq(y) or key in seen:
            continue
        seen.add(key)
        if isinstance(x, z3.QuantifierRef) and isinstance(y, z3.QuantifierRef):
            n = x.num_vars()
            if (x.is_forall(), x.is_exists(), n) != (y.is_forall(), y.is_exists(), y.num_vars()) or \
                    not all(x.var_sort(i).eq(y.var_sort(i)) for i in range(n)):
                return False
            todo.append((x.body(), y.body()))
        elif z3.is_app(x) and z3.is_app(y) and x.decl().eq(y.decl()) and x.num_args() == y.num_args():
            todo.extend(zip(x.children(), y.children()))
        else:
            return False
    return True


def same_value(a: Value, b: Value) -> bool:
    """Whether two values are the same terms, leaf by leaf."""
    if isinstance(a, RecordVal) and isinstance(b, RecordVal):
        return a.fields.keys() == b.fields.keys() and all(same_value(a.fields[f], b.fields[f]) for f in a.fields)
    if isinstance(a, MapVal) and isinstance(b, MapVal):
        return same_value(a.inner, b.inner)
    return isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef) and a.eq(b)


def unassumed(count: int, fields: Callable[[int], set[str]], goal: Callable[[int], Labeled],
              after: Callable[[int], z3.BoolRef], runs: Sequence[Run],
              hypothesis: z3.BoolRef) -> tuple[list[Labeled], list[int]]:
    """The goals about the state after the runs' steps, `goal(i)` for i < count, without those
    the step leaves as they were, and the indices of those: goal i is left out (and not built)
    if no run's step changes a field in `fields(i)` and `after(i)`, the formula goal i states
    with its outer quantifiers, is a conjunct of `hypothesis` (the same formula of the states
    before the steps)."""
    conjuncts = hypothesis.children() if z3.is_and(hypothesis) else [hypothesis]
    kept, left_out = [], []
    for i in range(count):
        if all(same_value(r.step.post[f], r.pre[f]) for r in runs if r.step is not None for f in fields(i)):
            restated = after(i)
            if any(alpha_equal(restated, c) for c in conjuncts[i:i + 1] + conjuncts):  # its own place first
                left_out.append(i)
                continue
        kept.append(goal(i))
    return kept, left_out
