"""Looking for a model among states of a simple shape: a satisfiability check that scales.

Z3 builds models of universals over a wide sort poorly (a map over 2^36 pages constrained by
ranges and by other maps); it finds one at once when the maps are given as terms. So, before
a satisfiability check on a formula that keeps quantifiers, prover/solve.py equates every map
of every run's pre-state to the term `shaped` gives it: the layer's `init` definition of that
map when `init` has one (`forall p. owner[p] == e(p)`), else a constant map, updated at
free indices with free values (one, and if no model of that shape is found, POINTS: `shapes`);
or, as it is, the map an index-linking definition of `init` gives (`forall p, i.
port[concat(p, i)] == p`).

Only `sat` is used, and it is exact: the equations only add constraints, so a model of them
and the formula is a model of the formula. (A map whose shape is built on a lambda is also put
into the formula in place of the map, reads pushed through it: equivalent under its equation,
which stays; prover/solve.py `_in_shape`.) `unsat` or `unknown` says only that no state of
that shape fits, and the exact check follows (docs/theory.md §2, "Shaped states").
"""

from __future__ import annotations

from collections.abc import Iterator

import z3

from microverify.dsl import ir
from microverify.layers.encoding import each_leaf, leaves
from microverify.layers.terms import free_constants
from microverify.layers.model import State, SymLayer
from microverify.prover import fingerprint, linking, shared
from microverify.prover.formula import Formula, Run
from microverify.prover.linking import conjuncts

POINTS = 2  # indices at which each map may differ from its base, at most
# The shapes `shapes` offers, in turn: each map updated at one free index, then at POINTS. Most
# models need one (every shown-satisfiable and VAC search of the shipped proofs does), and each
# free index costs Z3 its width in bits: at SeKVM's hardware sizes the shaped searches took 0.15
# of their resource units with one, and 0.26 of their time (docs/theory.md §2, "Shaped states").
LADDER = (1, POINTS)

Shape = list[tuple[z3.ExprRef, z3.ExprRef]]  # each map constant, and the term it is equated to


def _is_map_constant(t: z3.ExprRef) -> bool:
    return z3.is_const(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED and z3.is_array(t)


def _definitions(init: z3.ExprRef, maps: set[int]) -> dict[int, tuple[z3.ExprRef, bool]]:
    """The maps `init` defines pointwise, each as a lambda: conjuncts `forall x. ... m[x] == e
    ...` (or `m[x]`, `!m[x]` for a boolean map) where e mentions no map of `maps`; for a map of
    maps, `forall x, y. ... m[x][y] == e ...`, a lambda of lambdas; and the maps an
    index-linking definition sets (`forall p, i. m[concat(p, i)] == p`: its Λ, `_outside`
    where it sets nothing). With each, whether it is updated at free indices: all but the
    index-linking ones (their invariant, where they have one, pins the indices they set, and
    updates over their Λ cost Z3 more than they find: the index-linking model of
    bench/widths.py took 2.5 to 13 times the resource units with them, at 3 bits)."""
    found: dict[int, tuple[z3.ExprRef, bool]] = {}
    for n, c in enumerate(conjuncts(init)):
        if not (z3.is_quantifier(c) and c.is_forall()):
            continue
        xs = [z3.Const(f"shape!x{n}!{i}", c.var_sort(i)) for i in range(c.num_vars())]
        body = z3.substitute_vars(c.body(), *reversed(xs))  # de Bruijn: the last variable is 0
        if z3.is_implies(body):  # the key's domain ==> what holds in it
            body = body.arg(1)
        for part in conjuncts(body):
            value: z3.ExprRef = z3.BoolVal(True, c.ctx)
            if z3.is_not(part):
                part, value = part.arg(0), z3.BoolVal(False, c.ctx)
            if z3.is_eq(part):
                part, value = part.arg(0), part.arg(1)
                if not z3.is_select(part):
                    part, value = value, part
            indices: list[z3.ExprRef] = []
            while z3.is_select(part):
                indices.insert(0, part.arg(1))
                part = part.arg(0)
            if not (len(indices) == len(xs) and all(i.eq(x) for i, x in zip(indices, xs))
                    and part.get_id() in maps and part.get_id() not in found):
                continue
            if any(c.get_id() in maps for c in free_constants(value)):
                continue
            for x in reversed(xs):
                value = z3.Lambda([x], value)
            if value.sort() == part.sort():
                found[part.get_id()] = value, True
        # an index-linking definition (of a map no other conjunct defined), its domain's
        # `true ==>` simplified away (no fresh name: shapes are built in shared.CONTEXT, see there)
        linked = linking.definition(z3.simplify(c), set(found), _outside)
        if linked is not None and linked.array.get_id() in maps:
            found[linked.array.get_id()] = linked.value, False
    return found


def _outside(m: z3.ExprRef) -> z3.ExprRef:
    """The value an index-linking definition's Λ (prover/linking.py) gives `m` outside the
    indices it sets: a constant map of a free value, the map's own (each run's map has its own:
    a shared one would make the runs agree there)."""
    sort = m.sort()
    assert isinstance(sort, z3.ArraySortRef)
    return z3.K(sort.domain(), z3.Const(f"shape!{m}!base", sort.range()))


# Shapes built in this process, in its own context (shared.CONTEXT), by what they are built
# from (`built_from`). The obligations of a layer share them: every run of every operation starts from
# the same pre-state constants, and `init` is the layer's. A shape is always built there and
# translated into the formula's context, found or not, so the terms an obligation gets do not
# depend on what ran before it.
_BUILT: dict[tuple[tuple[object, ...], int], Shape] = {}
_BUILT_LIMIT = 10_000  # shapes remembered, at most (then forgotten: only a speed-up)


def shapes(formula: Formula, ctx: z3.Context | None = None) -> Iterator[Shape]:
    """The shapes to try in turn (LADDER), each built when asked for; one that would be the
    same as the one before (every map's shape is index-linking, or there is none) is not
    offered again."""
    before: Shape | None = None
    for points in LADDER:
        shape = shaped(formula, ctx, points)
        if before is None or len(shape) != len(before) or \
                not all(a.eq(b) for (_, a), (_, b) in zip(shape, before)):
            yield shape
        before = shape


def shaped(formula: Formula, ctx: z3.Context | None = None, points: int = POINTS) -> Shape:
    """A term of the shape above for each map constant of each run's pre-state, updated at
    `points` free indices, in `ctx` (default: the formula's context, where shapes that are not
    shared are built either way)."""
    ctx = ctx or formula.ctx
    key = built_from(formula)
    if key is None:  # built from the formula's own terms, in its context
        pairs = _shaped(formula.layer, formula.runs, points)
        return pairs if ctx is formula.ctx else [(m.translate(ctx), term.translate(ctx)) for m, term in pairs]
    with shared.LOCK:  # every term of shared.CONTEXT this touches is released before the lock is
        return _remembered(formula, key, points, ctx)


def _remembered(formula: Formula, key: tuple[object, ...], points: int, ctx: z3.Context) -> Shape:
    """The shapes under `key` (what they are built from) with `points` free indices (built now
    if they are not yet), translated into `ctx`. Called under shared.LOCK."""
    built = _BUILT.get((key, points))
    if built is None:
        layer = SymLayer(formula.layer.module, formula.layer.layer, shared.CONTEXT)
        runs = [Run(run.name, _in_shared(run), upper=run.upper) for run in formula.runs]
        if len(_BUILT) >= _BUILT_LIMIT:
            _BUILT.clear()
        built = _BUILT[key, points] = _shaped(layer, runs, points)
    return [(m.translate(ctx), term.translate(ctx)) for m, term in built]


def _in_shared(run: Run) -> State:
    """The run's pre-state made anew in shared.CONTEXT (its constants, by name and sort: nothing
    is translated into that context, see shared.CONTEXT). Of a refined layer's run, the fields
    whose leaves are all constants: the others hold terms, which get no shape (`built_from`)."""
    return {f: each_leaf(v, shared.constant_in_shared) for f, v in run.pre.items()
            if not run.upper or all(_constant(leaf) is not None for leaf in leaves(v))}


# built_from's answers, by the module and each run's name, whether it is of the upper layer, and
# its fields: the pre-states are made from these (SymLayer.fresh_state, and the abstraction of a
# refined layer's), so the same ones give the same constants. Reading every leaf's name and sort
# through Z3 took 1.1 ms per obligation on ARINC 653 (3% of `prove -j1`); its 187 obligations
# have 29 such keys.
_FROM: dict[tuple[object, ...], tuple[ir.Module, tuple[object, ...] | None]] = {}


def built_from(formula: Formula) -> tuple[object, ...] | None:
    """What the formula's shapes are built from (`_built_from`), remembered (_FROM)."""
    runs = tuple((run.name, run.upper, tuple(run.pre)) for run in formula.runs)
    return fingerprint.per_module(_FROM, formula.layer.module, (formula.layer.layer.name, runs),
                                  lambda: _built_from(formula))


def _built_from(formula: Formula) -> tuple[object, ...] | None:
    """What a formula's shapes are built from: the module with its operations left out (`init`,
    types, sizes, principals), the layer, and the constants of each run's pre-state, names and
    sorts (a refined layer's run may have terms there, which get no shape: None). Two formulas
    with the same key get the same shapes. None when a pre-state `init` is read from has a
    leaf that is no constant: the shape is built for that formula alone."""
    runs = []
    for run in formula.runs:
        constants = [_constant(leaf) for v in run.pre.values() for leaf in leaves(v)]
        if None in constants and not run.upper:  # a refined layer's terms: no map constant, no init
            return None
        runs.append((run.upper, tuple(run.pre), tuple(constants)))
    return fingerprint.digest_without_ops(formula.layer.module), formula.layer.layer.name, tuple(runs)


def _constant(t: z3.ExprRef) -> tuple[str, str] | None:
    """The name and sort of an uninterpreted constant, else None (through Z3's C API: called
    for every leaf of every pre-state, where z3py's wrappers cost most of the time)."""
    ctx, ast = t.ctx_ref(), t.as_ast()
    if z3.Z3_get_ast_kind(ctx, ast) != z3.Z3_APP_AST or z3.Z3_get_app_num_args(ctx, ast) != 0:
        return None
    decl = z3.Z3_get_app_decl(ctx, ast)
    if z3.Z3_get_decl_kind(ctx, decl) != z3.Z3_OP_UNINTERPRETED:
        return None
    return (z3.Z3_get_symbol_string(ctx, z3.Z3_get_decl_name(ctx, decl)),
            z3.Z3_sort_to_string(ctx, z3.Z3_get_sort(ctx, ast)))


def _shaped(layer: SymLayer, runs: list[Run], points: int) -> Shape:
    """The shape of each map constant of the runs' pre-states, updated at `points` free indices,
    built in `layer`'s context from its `init`."""
    maps = {leaf.get_id(): leaf for run in runs for v in run.pre.values() for leaf in leaves(v)
            if _is_map_constant(leaf)}
    if not maps:
        return []
    wanted = set(maps)
    definitions: dict[int, tuple[z3.ExprRef, bool]] = {}
    for run in runs:
        if run.upper:
            continue
        definitions.update(_definitions(layer.init(run.pre), wanted))
    pairs = []
    for n, (key, m) in enumerate(maps.items()):
        sort = m.sort()
        assert isinstance(sort, z3.ArraySortRef)
        definition, updated = definitions.get(key, (None, True))
        if definition is None:
            base = z3.K(sort.domain(), z3.Const(f"shape!{n}!base", sort.range()))
            pairs.append((m, _updated(base, sort, f"shape!{n}", False, points)))
        else:
            pairs.append((m, _updated(definition, sort, f"shape!{n}", True, points) if updated else definition))
    return pairs


def _updated(base: z3.ExprRef, sort: z3.ArraySortRef, name: str, nested: bool, points: int) -> z3.ExprRef:
    """`base` updated at `points` free indices with free values; if `nested` and it holds maps,
    the value at each index is the map `base` has there, updated alike (a page table that
    `init` empties gets a few entries)."""
    term = base
    inner = sort.range()
    for i in range(points):
        at = z3.Const(f"{name}!at{i}", sort.domain())
        if nested and isinstance(inner, z3.ArraySortRef):
            value = _updated(z3.Select(base, at), inner, f"{name}!{i}", nested, points)
        else:
            value = z3.Const(f"{name}!val{i}", inner)
        term = z3.Store(term, at, value)
    return term
