"""Turn a model of a failed obligation into a readable two-run counterexample.

Only the entries that decide the outcome are shown: those the failing conjunct reads (at its
witness, for a quantified one), those the executed path of each run reads (the fields of a
failed `check`, of the `if` that chose the path, of a range check) and writes, and for a
domain obligation those the domain reads. A field the failing conjunct or the operation
mentions but that no such read reaches (a whole map, an upper layer's field) is shown at the
keys that matter: arguments, locals, witnesses, the observer, written keys.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import z3

from microverify.dsl import ir
from microverify.dsl.spans import Span
from microverify.dsl.types import BoolType, BVType, EnumType, MapType, PrincipalType, RecordType, Type
from microverify.layers.encoding import MapVal, RecordVal, Value
from microverify.layers.lower import Env, scalar
from microverify.layers.model import Labeled, State, SymLayer, collect_fields, flow_scope, op_fields
from microverify.layers.values import Universe
from microverify.oracles.oracles import counter_field, field_label
from microverify.prover.concrete import Concretizer, ModelError, numeral
from microverify.prover.formula import Formula, Table
from microverify.prover.obligations import Kind, Obligation

_MAX_KEYS_PER_MAP = 6
_MAX_DIFFERING = 2  # entries of a map shown because the columns differ there (_differing)
PathStep = str | tuple[Type, int]  # a record field, or a map key (its type and value)
_MAX_ROWS = 40


@dataclass(frozen=True)
class Row:
    name: str
    values: tuple[str, ...]

    @property
    def varies(self) -> bool:
        return len(set(self.values)) > 1


@dataclass(frozen=True)
class Counterexample:
    operation: str | None  # "donate(v = 1, p = 0x03)"
    observer: str | None  # "VM(2)"
    doms: tuple[str, ...]  # per run
    results: tuple[tuple[str, str], ...]  # (run, result) when the operation has a result
    oracle_reads: tuple[str, ...]
    tables: tuple[tuple[str, tuple[str, ...], tuple[Row, ...]], ...]  # (title, columns, rows)
    failing: tuple[str, ...]
    responsible: tuple[Span, ...]
    configuration: tuple[str, ...] = ()  # "NAME = value" for each configuration constant read


class _Explainer:
    def __init__(self, formula: Formula, model: z3.ModelRef) -> None:
        self.f = formula
        self.L = formula.layer
        self.model = model
        self.keys: dict[Type, list[int]] = {}

    # -- values
    def num(self, term: z3.ExprRef) -> int | None:
        """The value of a scalar term in the model, or None if it has none that can be shown.

        The model evaluator leaves a quantifier (an `if forall ...` whose branch the term
        depends on) unevaluated, and then anything built on it, such as the index of a later
        oracle read: such a term is evaluated again with its quantifiers over small finite
        sorts expanded into their instances."""
        v = self.model.eval(term, model_completion=True)
        n = numeral(v)
        if n is None:
            expanded = _expand_quantifiers(term)
            if expanded is not None:
                n = numeral(self.model.eval(expanded, model_completion=True))
        return n

    def fmt(self, t: Type, n: int | None) -> str:
        if n is None:
            return "?"  # no value in the model (docs: a quantified condition it could not evaluate)
        if isinstance(t, BoolType):
            return "true" if n else "false"
        if isinstance(t, BVType):
            return str(n) if t.width < 8 else f"0x{n:0{(t.width + 3) // 4}x}"
        if isinstance(t, EnumType):
            return t.members[n] if n < len(t.members) else f"<{n}>"
        if isinstance(t, PrincipalType):
            pe = self.L.enc.principals
            tag = n >> pe.payload_bits
            if tag >= len(pe.principals):
                return f"<principal {n}>"
            p = pe.principals[tag]
            if p.param_type is None:
                return p.name
            payload = n & ((1 << pe.payload_bits) - 1)
            return f"{p.name}({self.index(p.param_type, payload)})"
        raise AssertionError(f"cannot format {t}")

    def index(self, t: Type, n: int | None) -> str:
        """A family member's index: in decimal at any width (VM(1), not VM(0x0001))."""
        return str(n) if isinstance(t, BVType) and n is not None else self.fmt(t, n)

    def show(self, t: Type, v: Value) -> str:
        if isinstance(t, RecordType):
            assert isinstance(v, RecordVal)
            return "{" + ", ".join(f"{f}: {self.show(ft, v.fields[f])}" for f, ft in t.fields) + "}"
        if isinstance(t, MapType):
            return "<map>"
        assert isinstance(v, z3.ExprRef)
        return self.fmt(t, self.num(v))

    def note_key(self, t: Type, term: z3.ExprRef) -> None:
        if isinstance(t, (BoolType, BVType, EnumType, PrincipalType)):
            n = self.num(term)
            if n is None:
                return
            seen = self.keys.setdefault(t, [])
            if n not in seen:
                seen.append(n)

    def literal(self, t: Type, n: int) -> z3.ExprRef:
        if isinstance(t, BoolType):
            return z3.BoolVal(bool(n), self.L.ctx)
        return z3.BitVecVal(n, self.L.enc.sort(t).size(), self.L.ctx)  # type: ignore[attr-defined]

    def holds(self, term: z3.BoolRef) -> bool:
        return self.num(term) == 1

    # -- rows
    def explode(self, t: Type, name: str) -> list[tuple[str, list[PathStep], Type]]:
        """(label, path, scalar type) for every scalar a field shows at the interesting keys."""
        if isinstance(t, RecordType):
            out = []
            for f, ft in t.fields:
                out.extend(self._prefix(self.explode(ft, f"{name}.{f}"), f))
            return out
        if isinstance(t, MapType):
            out = []
            for n in sorted(self.keys.get(t.key, []))[:_MAX_KEYS_PER_MAP]:
                inner = self.explode(t.value, f"{name}[{self.fmt(t.key, n)}]")
                out.extend(self._prefix(inner, (t.key, n)))
            return out
        return [(name, [], t)]

    @staticmethod
    def _prefix(items: list[tuple[str, list[PathStep], Type]], step: PathStep) -> list[tuple[str, list[PathStep], Type]]:
        return [(lbl, [step, *path], st) for lbl, path, st in items]

    def entries(self, t: Type, name: str, precise: list[list[PathStep]] | None) -> list[tuple[str, list[PathStep], Type]]:
        """(label, path, scalar type) for every scalar shown of a value of type t: at the entries
        known to be read, else at the keys that matter."""
        if not precise:
            return self.explode(t, name)
        items = []
        for keys in precise:
            leaf, label = t, name
            for step in keys:  # record fields and map keys, in order
                if isinstance(step, str):
                    assert isinstance(leaf, RecordType)
                    label += f".{step}"
                    leaf = dict(leaf.fields)[step]
                else:
                    assert isinstance(leaf, MapType)
                    label += f"[{self.fmt(leaf.key, step[1])}]"
                    leaf = leaf.value
            items += self._prefix_all(self.explode(leaf, label), keys)
        return items

    @staticmethod
    def _prefix_all(items: list[tuple[str, list[PathStep], Type]], steps: list[PathStep]) -> list[tuple[str, list[PathStep], Type]]:
        return [(lbl, [*steps, *path], st) for lbl, path, st in items]

    def navigate(self, v: Value, path: list[PathStep]) -> Value:
        for step in path:
            if isinstance(step, str):
                assert isinstance(v, RecordVal)
                v = v.fields[step]
            else:
                assert isinstance(v, MapVal)
                key_type, key = step
                v = self.L.enc.select(v, self.literal(key_type, key))
        return v

    def rows(self, layer: SymLayer, fields: list[str], states: list[State],
             precise: dict[str, list[list[PathStep]]] | None = None) -> list[Row]:
        types = {f.name: f.type for f in layer.fields}
        rows: list[Row] = []
        labels: set[str] = set()
        for name in fields:
            shown = field_label(name)
            for label, path, st in self.entries(types[name], shown, precise.get(name) if precise else None):
                if label in labels:  # an entry inside a record shown whole (`r[0]`), and on its own
                    continue
                labels.add(label)
                values = []
                for s in states:
                    v = self.navigate(s[name], path)
                    assert isinstance(v, z3.ExprRef)
                    values.append(self.fmt(st, self.num(v)))
                rows.append(Row(label, tuple(values)))
        return rows[:_MAX_ROWS]


def explain(ob: Obligation, formula: Formula, model: z3.ModelRef) -> Counterexample:
    x = _Explainer(formula, model)
    L, op = formula.layer, formula.op
    runs = formula.runs
    # Keys that matter: arguments, locals, doms, observer, witnesses, written keys, oracle reads.
    if op is not None:
        for (name, t), v in zip(op.params, formula.args.values()):
            if isinstance(v, z3.ExprRef):
                x.note_key(t, v)
    if formula.observer is not None:
        principal, param = formula.observer
        if param is not None and principal.param_type is not None:
            x.note_key(principal.param_type, param)
    # The conjuncts the model makes false; only if there are none, those it leaves undecided (a
    # quantifier it does not evaluate), said to be so: such a conjunct may hold, and was listed as
    # failing like the others (`∃q. ∀p. tag[p] <= tag[q]`, true of every map).
    values = [(g, x.num(g.term)) for g in formula.goals]
    failing = [g for g, n in values if n == 0]
    undecided = not failing
    if undecided:
        failing = [g for g, n in values if n is None]
    for g in failing:
        for t, c in g.witnesses.values():
            x.note_key(t, c)
    written: set[str] = set()
    responsible: list[Span] = []
    reads: list[str] = []
    for r in runs:
        if r.dom is not None:
            x.note_key(PrincipalType(), r.dom)
        if r.step is None:
            continue
        for t, v in r.step.locals.values():
            if isinstance(v, z3.ExprRef):
                x.note_key(t, v)
        for w in r.step.writes:
            if x.holds(w.guard):
                written.add(w.field)
                for step in w.path:
                    if not isinstance(step, str):
                        x.note_key(*step)
        for rd in r.step.reads:
            if x.holds(rd.guard):
                x.note_key(PrincipalType(), rd.principal)
                otype = L.module.oracle(rd.oracle).type
                reads.append(f"{rd.oracle}({x.fmt(PrincipalType(), x.num(rd.principal))}, "
                             f"#{x.num(rd.index)}) = {x.show(otype, rd.value)}   [run {r.name}]")
        for b in r.step.bindings:
            if x.holds(b.guard):
                otype = L.module.oracle(b.oracle).type
                source = f" from {x.fmt(PrincipalType(), x.num(b.source))}" if b.source is not None else ""
                reads.append(f"{b.oracle}({x.fmt(PrincipalType(), x.num(b.principal))}, "
                             f"#{x.num(b.index)}) bound to {x.show(otype, b.value)}{source}   [run {r.name}]")
    # The entries the failing conjuncts and the executed path read, and the ones written.
    entries = _Entries(x)
    for g in failing:
        for pred_source, env in g.sources:
            entries.walk(pred_source, env.bind({n: c for n, (_, c) in g.witnesses.items()}))
    for r in runs:
        if r.step is None or r.upper:
            continue
        for evaluated, env, guard in r.step.trace:
            if x.holds(guard):
                for expr in evaluated:
                    entries.walk(expr, env)
        for w in r.step.writes:
            if x.holds(w.guard):
                entries.add(w.field, [p if isinstance(p, str) else (p[0], x.num(p[1])) for p in w.path])
        if ob.kind in (Kind.DC, Kind.DR) and op is not None:
            entries.walk(op.dom, L.env(r.pre, dict(formula.args)))
        if formula.observer is not None and r.dom is not None:  # whether dom flows to the observer
            principal, param = formula.observer
            entries.flows(L, r.dom, L.enc.principals.make(principal.name, param, L.ctx))
    # Fields that matter.
    relevant: set[str] = set().union(*(g.fields for g in failing)) if failing else set()
    if op is not None and any(not g.fields for g in failing):  # a result, halting or dom
        relevant |= op_fields(op)
    for g in failing:
        blame = g.fields | _abstraction_sources(L, g.fields)
        for r in runs:
            if r.step is None or r.upper:
                continue
            for w in r.step.writes:
                if w.field in blame and x.holds(w.guard) and w.span not in responsible:
                    responsible.append(w.span)
            for rd in r.step.reads:  # a read advances its principal's counter
                if counter_field(rd.oracle) in g.fields and x.holds(rd.guard) and rd.span not in responsible:
                    responsible.append(rd.span)
    if ob.kind in (Kind.R_ARGS, Kind.R_BIND):  # the `implements` argument or the `bind`
        for g in failing:
            if g.span is not None and g.span not in responsible:
                responsible.append(g.span)
    if ob.kind in (Kind.OC, Kind.DC, Kind.DR) and op is not None:
        relevant |= op_fields(op)
        if ob.kind is Kind.OC:
            for r in runs:
                for e in (r.step.exits if r.step else []):
                    if x.holds(e.guard) and e.span not in responsible:
                        responsible.append(e.span)
        else:
            responsible.append(op.dom.span)
    relevant |= written
    relevant |= _agreement_masks(ob, formula, x, relevant)
    own = [r for r in runs if not r.upper]
    columns = [r.pre for r in own] + [r.step.post for r in own if r.step]
    quantified: set[str] = set()  # fields a failing conjunct reads under a quantifier
    for g in failing:
        for pred_source, _ in g.sources:
            for node in ir.nodes(pred_source):
                if isinstance(node, ir.Quant):
                    collect_fields(node, quantified)
    differing: dict[str, list[list[PathStep]]] = {}
    if quantified:
        try:
            reader = Concretizer(formula, model, Universe(L.module.principals))
            differing = {f.name: keys for f in L.fields if f.name in quantified
                         and (keys := _differing(x, reader, f.type, [c[f.name] for c in columns]))}
        except ModelError:
            pass  # a model the replay cannot read either (it says so): the table as it is
    tables = formula.tables or [Table("", L, [r.name for r in own] + [f"step({r.name})" for r in own if r.step],
                                      columns)]
    lower_sources = _abstraction_sources(L, relevant)
    types = {f.name: f.type for f in L.fields}
    shown = []
    for table in tables:
        mine = table.layer.layer is L.layer
        wanted = relevant | (lower_sources | set(entries.found) if mine else set())
        order = [f.name for f in table.layer.fields if f.name in wanted]
        # a field of this layer read or written at known entries shows those; any other the
        # keys that matter (arguments, locals, witnesses, the observer, written keys)
        precise = {f: entries.found[f] for f in order if mine and f in entries.found}
        for f, keys in differing.items():  # besides the entries or keys it shows anyway
            if mine and f in order:
                t = types[f]
                assert isinstance(t, MapType)
                known = precise.get(f) or [[(t.key, n)] for n in sorted(x.keys.get(t.key, []))[:_MAX_KEYS_PER_MAP]]
                precise[f] = known + [k for k in keys if k not in known]
        shown.append((table.title, tuple(table.columns), tuple(x.rows(table.layer, order, table.states, precise))))
    operation = None
    if op is not None:
        args = ", ".join(f"{n} = {x.show(t, formula.args[n])}" for n, t in op.params)
        operation = f"{op.name}({args})"
    observer = None
    family = None  # the observer's parameter, as `v = 1`
    if formula.observer is not None:
        principal, param = formula.observer
        index = None if param is None else x.index(principal.param_type, x.num(param))  # type: ignore[arg-type]
        observer = principal.name if index is None else f"{principal.name}({index})"
        if index is not None and principal.param is not None:
            family = f"{principal.param} = {index}"
    doms = tuple(x.fmt(PrincipalType(), x.num(r.dom)) for r in runs if r.dom is not None and not r.upper)
    results = tuple((r.name, x.show(op.result, r.step.result)) for r in runs if op is not None
                    and op.result is not None and r.step is not None and r.step.result is not None)
    configuration = []
    for c in L.module.configs:
        v = L.enc.configs.get(c.name)
        if v is not None:
            for label, path, st in x.entries(c.type, c.name, entries.configs.get(c.name)):
                entry = x.navigate(v, path)
                assert isinstance(entry, z3.ExprRef)
                configuration.append(f"{label} = {x.fmt(st, x.num(entry))}")
    return Counterexample(operation, observer, doms, results, tuple(reads), tuple(shown),
                          tuple(_describe(x, g, family) + (_UNDECIDED if undecided else "") for g in failing),
                          tuple(responsible),
                          tuple(configuration))


def _differing(x: _Explainer, reader: Concretizer, t: Type, values: list[Value]) -> list[list[PathStep]]:
    """The entries of a map of scalars at which the columns (runs and steps) differ, at most
    _MAX_DIFFERING, for a map a failing conjunct reads under a quantifier (`forall w. flag[w]`
    in a view): such a read is at no single key, and without these the entry that makes the
    views differ was not in the table. The keys tried are those the model lists an entry at
    and, in the qf encoding, the index terms of I and the λs (where the model is the completed
    one, prover/concrete.py), else one key the model lists in no column (where the columns'
    defaults may differ); only values of the key type."""
    if not isinstance(t, MapType) or isinstance(t.value, (MapType, RecordType)):
        return []
    arrays = [v.inner for v in values if isinstance(v, MapVal) and isinstance(v.inner, z3.ArrayRef)]
    sid = x.L.enc.sort(t.key).get_id()
    keys = set().union(*(reader.listed(a) for a in arrays), reader.known.get(sid, set()),
                       (lam for _, _, lam in reader.regions.get(sid, [])))
    if x.f.completion is None:
        keys.add(next(k for k in itertools.count() if k not in keys))
    out: list[list[PathStep]] = []
    for k in sorted(keys):
        try:
            reader.universe.decode(t.key, k)  # a value of the key type, as a bound variable ranges over
        except ValueError:
            continue
        if len({x.num(z3.Select(a, x.literal(t.key, k))) for a in arrays}) > 1:
            out.append([(t.key, k)])
            if len(out) == _MAX_DIFFERING:
                break
    return out


def _agreement_masks(ob: Obligation, formula: Formula, x: _Explainer, relevant: set[str]) -> set[str]:
    """The fields in the `where` conditions of the views the runs are assumed to agree on (the
    actor's for OC, DC and WSC, the observer's for WSC and DR), of the components that show a
    field already shown: what says why an entry that differs is not seen, e.g. `owner[p]` of
    `mem[p] for p where owner[p] == KServ`."""
    L = formula.layer
    names: set[str] = set()
    if ob.kind in (Kind.OC, Kind.DC, Kind.WSC):
        names |= {p.name for r in formula.runs if r.dom is not None and not r.upper
                  for p in L.module.principals if x.holds(L.enc.principals.is_(p.name, r.dom))}
    if ob.kind in (Kind.WSC, Kind.DR) and formula.observer is not None:
        names.add(formula.observer[0].name)
    found: set[str] = set()
    for name in names:
        view = L.layer.observation(name)
        for component in view.components if view is not None else ():
            shows: set[str] = set()
            collect_fields(component.expr, shows)
            if component.where is not None and shows & relevant:
                collect_fields(component.where, found)
    return found


class _Entries:
    """The state entries expressions read, as concrete key paths in the model: `m[a][b].f` read
    in some run is the entry (m, [a, b]); a scalar field is (x, [])."""

    def __init__(self, x: _Explainer) -> None:
        self.x = x
        self.found: dict[str, list[list[PathStep]]] = {}  # state fields
        self.configs: dict[str, list[list[PathStep]]] = {}  # configuration constants

    def add(self, name: str, steps: list[str | tuple[Type, int | None]],
            into: dict[str, list[list[PathStep]]] | None = None) -> None:
        """The entry at `steps` (record fields and map keys) of field `name`: a record there is
        shown whole (the other fields of `frame[p]` when `frame[p].data` is written)."""
        if any(not isinstance(s, str) and s[1] is None for s in steps):
            return  # a key the model gives no value: nothing precise to show
        path: list[PathStep] = list(steps)  # type: ignore[arg-type]
        while path and isinstance(path[-1], str):
            path.pop()
        seen = (self.found if into is None else into).setdefault(name, [])
        if path not in seen:
            seen.append(path)

    def walk(self, e: ir.Expr, env: Env) -> None:
        chain = _field_chain(e)
        if chain is not None:
            kind, name, steps = chain
            self.add(name, [s if isinstance(s, str) else (s.type, self.x.num(scalar(s, env))) for s in steps],
                     self.configs if kind == "config" else None)
        if isinstance(e, ir.Quant):
            return  # entries under a quantifier (not a witnessed goal): the keys are not one value
        for attr in ("base", "index", "operand", "left", "right", "cond", "then", "other", "arg", "principal"):
            child = getattr(e, attr, None)
            if isinstance(child, (ir.Lit, ir.Ref, ir.EnumVal, ir.PrincipalVal, ir.Index, ir.Field, ir.Unary,
                                  ir.Binary, ir.Ite, ir.Quant, ir.Resize, ir.Counter, ir.ReadOracle)):
                if attr == "base" and chain is not None:
                    continue  # the chain's own prefixes are not entries of their own
                self.walk(child, env)
        if chain is not None:
            for ix in chain[2]:
                if not isinstance(ix, str):
                    self.walk(ix, env)


    def flows(self, L: SymLayer, source: z3.ExprRef, target: z3.ExprRef) -> None:
        """The entries the policy's conditions read for these two principals (the flows they match)."""
        pe = L.enc.principals
        for f in L.module.flows:
            if f.cond is not None and self.x.holds(pe.is_(f.source, source)) and self.x.holds(pe.is_(f.target, target)):
                self.walk(f.cond, flow_scope(L.enc, f, source, target))


def _field_chain(e: ir.Expr) -> tuple[str, str, list[str | ir.Expr]] | None:
    """`m[a].r[b].f` -> ("field", m, [a, "r", b, "f"]) for a read of a state field or a
    configuration constant ("config") that ends at a scalar or a record; `x` -> (kind, x, []) for
    a scalar one; None for anything else (a whole map, a local)."""
    steps: list[str | ir.Expr] = []
    node = e
    while isinstance(node, (ir.Index, ir.Field)):
        steps.append(node.index if isinstance(node, ir.Index) else node.name)
        node = node.base
    if not (isinstance(node, ir.Ref) and node.kind in ("field", "config")) or isinstance(e.type, MapType):
        return None
    return node.kind, node.name, steps[::-1]


def _abstraction_sources(L: SymLayer, upper_fields: set[str]) -> set[str]:
    """The lower fields the abstraction of these upper fields reads."""
    found: set[str] = set()
    for d in L.layer.abstraction:
        if d.field in upper_fields:
            collect_fields(d.value, found)
    return found


_UNDECIDED = " (or not: the model leaves a quantifier in it unevaluated; the replay decides)"


def _describe(x: _Explainer, g: Labeled, family: str | None = None) -> str:
    where = ", ".join(f"{name} = {x.fmt(t, x.num(c))}" for name, (t, c) in g.witnesses.items()
                      if not name.startswith("key#"))
    keys = [f"{x.fmt(t, x.num(c))}" for name, (t, c) in g.witnesses.items() if name.startswith("key#")]
    text = g.failure or f"{g.label} does not hold"
    if g.component is not None:
        text = f"{g.label} differs"
        where = ", ".join(w for w in (where, family) if w)  # the observer's index too: `at p = 0, v = 1`
    if where:
        text += f" at {where}"
    if keys:
        text += f" (entry {', '.join(keys)})"
    if g.shown:
        text += ": " + ", ".join(f"{name} = {x.fmt(t, x.num(c))}" for name, (t, c) in g.shown.items())
    return text


_EXPAND_LIMIT = 256  # the most instances one quantifier is expanded into
_EXPAND_BUDGET = 100_000  # the most terms an expansion may build in all


def _instances(sort: z3.SortRef) -> list[z3.ExprRef] | None:
    if sort.kind() == z3.Z3_BOOL_SORT:
        return [z3.BoolVal(False, sort.ctx), z3.BoolVal(True, sort.ctx)]
    if sort.kind() == z3.Z3_BV_SORT and sort.size() <= 8:  # type: ignore[attr-defined]
        return [z3.BitVecVal(i, sort.size(), sort.ctx) for i in range(1 << sort.size())]  # type: ignore[attr-defined]
    return None


def _expand_quantifiers(term: z3.ExprRef) -> z3.ExprRef | None:
    """term with every quantifier over small finite sorts replaced by the conjunction (forall)
    or disjunction (exists) of its instances; None if some quantifier is too large for that."""
    budget = [_EXPAND_BUDGET]
    memo: dict[int, z3.ExprRef] = {}

    def walk(t: z3.ExprRef) -> z3.ExprRef:
        key = t.get_id()
        if key in memo:
            return memo[key]
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooLarge()
        if z3.is_quantifier(t) and not t.is_lambda():  # type: ignore[attr-defined]
            q: z3.QuantifierRef = t  # type: ignore[assignment]
            domains = [_instances(q.var_sort(i)) for i in range(q.num_vars())]
            size = 1
            for d in domains:
                if d is None:
                    raise _TooLarge()
                size *= len(d)
            if size > _EXPAND_LIMIT:
                raise _TooLarge()
            cases = []
            for values in itertools.product(*domains):  # type: ignore[arg-type]
                # de Bruijn index 0 is the last bound variable
                cases.append(walk(z3.substitute_vars(q.body(), *reversed(values))))
            both = z3.And(cases) if q.is_forall() else z3.Or(cases)
            out: z3.ExprRef = both
        elif z3.is_app(t) and t.num_args() > 0:
            args = [walk(a) for a in t.children()]
            out = t.decl()(*args) if any(not a.eq(b) for a, b in zip(args, t.children())) else t
        else:
            out = t
        memo[key] = out
        return out

    try:
        return walk(term)
    except (_TooLarge, z3.Z3Exception, RecursionError):
        return None


class _TooLarge(Exception):
    pass
