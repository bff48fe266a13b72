"""Exhaustive checks of the theorems `prove` prints, with the reference interpreter (issue 13).

For a layer whose theorem was printed (all its obligations, and those of the layers above it,
PROVED), every observer `u`, and `W = C(u)` (the principals that reach `u` through flows):

- single layer (docs/theory.md §3): every pair of distinct states `s0 ~w t0` (all `w` in `W`)
  that satisfy `init`;
- stack (§7.1, bottom layer `L0`, `α` the composed abstraction): every pair of distinct `L0`
  states that satisfy `init_0` with `α(s0) ~w α(t0)` at the top layer;

then both runs are stepped together, with the same operation, the same arguments and one oracle
function ω (from a small fixed family: constant minimum, constant maximum, two hashes of the
oracle, principal and index), breadth first, up to `Bounds.depth` steps, remembering the pairs
already seen. A branch ends where a run halts (termination-insensitive) and, for a stack, where
premise (B) fails: both runs bind one oracle at one principal and index, from sources outside
`W`, with different values. Refuted are: an output of an operation whose domain is in `W` that
differs (or whose domain differs) between the runs; a pair of states after a step (or, for a
stack, at the start) that some `w` in `W` tells apart at any layer of the stack; a reachable
state (or its abstraction) that breaks an invariant (INIT, INV and R-INV were proved).

Every field ranges over its whole finite type; the oracle counters start at 0, and also, in one
run, at 1 for one principal outside `W` (the premise lets them differ there); a layer with
more than `Bounds.max_states` states, or an exploration beyond `Bounds.max_pairs` pairs, is
reported as too large, not as checked, and a layer whose `init` no state with its counters at 0
satisfies (`init { counter(o, KServ) == 5 }`) as empty: neither is counted as checked.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections import deque
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field

from microverify.dsl import ir
from microverify.dsl.ir import counter_field
from microverify.dsl.loader import load_text
from microverify.dsl.types import COUNTER, PRINCIPAL, MapType, RecordType, Type
from microverify.layers.interpret import Interpreter, OmegaFn, OracleEvent, State, View
from microverify.layers.values import MapValue, Principal, Record, Universe, Value
from microverify.prover.driver import obligations, prove_modules
from microverify.prover.report import stacks, theorems
from microverify.prover.verdict import Options, Status

ENCODINGS = ("qf", "quantified")


@dataclass(frozen=True)
class Bounds:
    max_states: int = 4096  # states of the bottom layer (counters aside)
    depth: int = 3  # operations per run
    max_pairs: int = 400_000  # pairs of states explored per observer


# ---------------------------------------------------------------- values and states

def freeze(v: Value, u: Universe) -> Hashable:
    """A hashable canonical form (MapValue hashes coarsely: by its key type only)."""
    if isinstance(v, MapValue):
        return tuple(freeze(v[k], u) for k in u.members(v.key))
    if isinstance(v, Record):
        return tuple((n, freeze(x, u)) for n, x in v.fields)
    return v


def size_of(u: Universe, t: Type) -> int:
    if isinstance(t, RecordType):
        return _product(size_of(u, ft) for _, ft in t.fields)
    if isinstance(t, MapType):
        return int(size_of(u, t.value) ** u.size(t.key))
    return u.size(t)


def _product(xs: Iterator[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def values_of(u: Universe, t: Type) -> list[Value]:
    """Every value of a type (its canonical members; maps and records as all combinations)."""
    if isinstance(t, RecordType):
        names = [n for n, _ in t.fields]
        return [Record.of(dict(zip(names, combo))) for combo in itertools.product(*(values_of(u, ft) for _, ft in t.fields))]
    if isinstance(t, MapType):
        keys = list(u.members(t.key))
        return [u.tabulate(t, zip(keys, combo)) for combo in itertools.product(values_of(u, t.value), repeat=len(keys))]
    return list(u.members(t))


def show(v: Value | None) -> str:
    if isinstance(v, MapValue):
        return "{" + ", ".join(f"{k}: {show(v[k])}" for k in sorted(v.entries, key=str)) + \
            (f", else {show(v.default)}" if len(v.entries) < v.size else "") + "}"
    if isinstance(v, Record):
        return "{" + ", ".join(f"{n}: {show(x)}" for n, x in v.fields) + "}"
    return str(v)


def show_state(s: State) -> str:
    return ", ".join(f"{name}={show(v)}" for name, v in s.items())


class Space:
    """The states met so far, each with a small integer id."""

    def __init__(self, u: Universe, names: list[str]) -> None:
        self.u = u
        self.names = names
        self.ids: dict[Hashable, int] = {}
        self.states: list[State] = []

    def intern(self, s: State) -> int:
        key = tuple(freeze(s[n], self.u) for n in self.names)
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = len(self.states)
            self.states.append(dict(s))
        return found


def omega_family(module: ir.Module, u: Universe) -> list[tuple[str, OmegaFn]]:
    """The oracle functions both runs share: one of them for the whole run."""
    table = {o.name: values_of(u, o.type) for o in module.oracles}

    def const(pick: int) -> OmegaFn:
        return lambda o, p, n: table[o][pick if pick >= 0 else len(table[o]) + pick]

    def hashed(salt: str) -> OmegaFn:
        return lambda o, p, n: table[o][zlib.crc32(f"{salt}|{o}|{p}|{n}".encode()) % len(table[o])]
    return [("ω = min", const(0)), ("ω = max", const(-1)), ("ω = hash a", hashed("a")), ("ω = hash b", hashed("b"))]


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class Refutation:
    layer: str
    observer: str
    within: tuple[str, ...]  # W
    what: str
    omega: str
    s0: str
    t0: str
    steps: tuple[str, ...]

    def render(self) -> str:
        return "\n".join([f"refuted: the theorem for {self.layer}, observer {self.observer} "
                          f"(W = {{{', '.join(self.within)}}}), {self.omega}",
                          f"  s0: {self.s0}", f"  t0: {self.t0}",
                          "  steps: " + (" ; ".join(self.steps) or "none"), f"  {self.what}"])


CHECKED = ("checked", "refuted")  # the outcomes of a theorem that was checked


@dataclass
class Outcome:
    layer: str
    status: str = "checked"  # checked | refuted | too-large | empty (no initial state: nothing checked)
    detail: str = ""
    states: int = 0  # initial states
    pairs: int = 0  # pairs of states explored (all observers)
    steps: int = 0  # pairs of steps taken
    halts: int = 0  # branches ended by a halting run
    cuts: int = 0  # branches ended by premise (B)
    refutation: Refutation | None = None


@dataclass(frozen=True)
class Move:
    dom: Principal
    halted: bool
    result: Hashable
    post: int
    binds: tuple[OracleEvent, ...]


Node = tuple[int, int, int]  # ω, state id, state id (the smaller first)


class TooLarge(Exception):
    pass


# ---------------------------------------------------------------- the checker

class Checker:
    """The theorem for the bottom layer of one stack (a single layer is a stack of one)."""

    def __init__(self, module: ir.Module, bottom: str, bounds: Bounds) -> None:
        self.module, self.bounds = module, bounds
        self.interp = Interpreter(module)
        self.u = self.interp.universe
        self.chain = next(c for c in stacks(module) if c[0].name == bottom)
        low = self.chain[0]
        self.ops = low.ops
        self.args = [self._arguments(op) for op in self.ops]
        self.reads = [_reads(op) for op in self.ops]
        family = omega_family(module, self.u)
        self.omegas = family if any(self.reads) else family[:1]
        self.space = Space(self.u, [n for n, _ in self.interp.fields(low)])
        self._moves: dict[tuple[int, int, int, int], Move] = {}
        self._views: dict[tuple[int, Principal, int], Hashable] = {}
        self._levels: dict[int, list[State]] = {}
        self._broken: dict[int, str | None] = {}

    def _arguments(self, op: ir.Op) -> list[dict[str, Value]]:
        names = [n for n, _ in op.params]
        return [dict(zip(names, combo)) for combo in itertools.product(*(values_of(self.u, t) for _, t in op.params))]

    # -- states
    def initial(self) -> list[int]:
        low = self.chain[0]
        if _product(size_of(self.u, f.type) for f in low.fields) > self.bounds.max_states:
            raise TooLarge(f"{low.name} has more than {self.bounds.max_states} states")
        zero = {counter_field(o.name): self.u.constant_map(MapType(PRINCIPAL, COUNTER), 0) for o in self.module.oracles}
        names = [f.name for f in low.fields]
        out = []
        for combo in itertools.product(*(values_of(self.u, f.type) for f in low.fields)):
            s: dict[str, Value] = dict(zip(names, combo)) | zero
            if self.interp.init(low, s):
                out.append(self.space.intern(s))
        return out

    def levels(self, i: int) -> list[State]:
        """The state and its abstractions, bottom to top."""
        if i not in self._levels:
            out = [self.space.states[i]]
            for layer in self.chain[:-1]:
                out.append(self.interp.alpha(layer, out[-1]))
            self._levels[i] = out
        return self._levels[i]

    def broken(self, i: int) -> str | None:
        """The invariant a state (or an abstraction of it) breaks, if any."""
        if i not in self._broken:
            bad = [f"invariant {name} of {layer.name}" for layer, s in zip(self.chain, self.levels(i))
                   for name, holds in self.interp.invariants(layer, s).items() if not holds]
            self._broken[i] = ", ".join(bad) or None
        return self._broken[i]

    def view(self, level: int, w: Principal, i: int) -> Hashable:
        key = (level, w, i)
        if key not in self._views:
            v: View = self.interp.view(self.chain[level], w, self.levels(i)[level])
            self._views[key] = tuple((text, freeze_observed(seen, self.u)) for text, seen in v.components)
        return self._views[key]

    def move(self, i: int, op: int, args: int, omega: int) -> Move:
        key = (i, op, args, omega if self.reads[op] else -1)
        if key not in self._moves:
            s, a = self.space.states[i], self.args[op][args]
            dom = self.interp.dom(self.chain[0], self.ops[op], s, a)
            r = self.interp.step(self.chain[0], self.ops[op], s, a, self.omegas[omega][1])
            post = -1 if r.halted else self.space.intern(r.post)
            result = None if r.result is None else freeze(r.result, self.u)
            self._moves[key] = Move(dom, r.halted, result, post, tuple(e for e in r.trace if e.kind == "bind"))
        return self._moves[key]

    # -- the theorem for one observer
    def difference(self, within: list[Principal], a: int, b: int) -> str | None:
        for w in within:
            for level, layer in enumerate(self.chain):
                va, vb = self.view(level, w, a), self.view(level, w, b)
                if va != vb:
                    assert isinstance(va, tuple) and isinstance(vb, tuple)
                    comp = next(x[0] for x, y in zip(va, vb) if x != y)
                    return f"{w} tells the states apart at {layer.name}: `{comp}` differs"
        return None

    def premise_fails(self, within: list[Principal], ma: Move, mb: Move) -> bool:
        """(B): both bind one oracle at one principal and index, sources outside W, values differ."""
        for x in ma.binds:
            for y in mb.binds:
                if (x.oracle, x.principal, x.index) == (y.oracle, y.principal, y.index) \
                        and x.source not in within and y.source not in within \
                        and freeze(x.value, self.u) != freeze(y.value, self.u):
                    return True
        return False

    def output_problem(self, within: list[Principal], op: ir.Op, ma: Move, mb: Move) -> str | None:
        if op.result is None or (ma.dom not in within and mb.dom not in within):
            return None
        if ma.dom != mb.dom:
            return f"`{op.name}` runs for {ma.dom} in one run and for {mb.dom} in the other"
        if ma.result != mb.result:
            return f"`{op.name}` (by {ma.dom}) returns {ma.result} in one run and {mb.result} in the other"
        return None

    def roots(self, within: list[Principal], init: list[int]) -> Iterator[tuple[int, int]]:
        """Pairs of initial states that agree for W at the top: the states of the enumeration
        (counters 0) in pairs, and each with itself but one counter of a principal outside W
        at 1 (a principal's counters are part of its view only)."""
        top = len(self.chain) - 1
        groups: dict[Hashable, list[int]] = {}
        for i in init:
            groups.setdefault(tuple(self.view(top, w, i) for w in within), []).append(i)
        for members in groups.values():
            yield from itertools.combinations(members, 2)
        outside = [p for p in self.interp.principals() if p not in within]
        for i in init:
            for o in self.module.oracles:
                for p in outside:
                    j = self.bumped(i, o.name, p)
                    if j is not None:
                        yield i, j

    def bumped(self, i: int, oracle: str, p: Principal) -> int | None:
        """State i with p's counter of `oracle` at 1, if it satisfies `init`."""
        s = dict(self.space.states[i])
        counters = s[counter_field(oracle)]
        assert isinstance(counters, MapValue)
        s[counter_field(oracle)] = counters.set(p, 1)
        return self.space.intern(s) if self.interp.init(self.chain[0], s) else None

    def observe(self, u0: Principal, within: list[Principal], init: list[int], out: Outcome) -> Refutation | None:
        parents: dict[Node, tuple[Node | None, int, int]] = {}
        frontier: deque[tuple[Node, int]] = deque()
        for a, b in self.roots(within, init):
            a, b = min(a, b), max(a, b)
            problem = self.difference(within, a, b)
            if problem is not None:
                return self.refutation(u0, within, parents, (0, a, b), None, "at the start: " + problem)
            for w in range(len(self.omegas)):
                parents[(w, a, b)] = (None, -1, -1)
                frontier.append(((w, a, b), 0))
        while frontier:
            node, depth = frontier.popleft()
            if depth < self.bounds.depth:
                found = self.expand(u0, within, node, depth, parents, frontier, out)
                if found is not None:
                    return found
            if len(parents) > self.bounds.max_pairs:
                raise TooLarge(f"more than {self.bounds.max_pairs} pairs for observer {u0}")
        out.pairs += len(parents)
        return None

    def expand(self, u0: Principal, within: list[Principal], node: Node, depth: int,
               parents: dict[Node, tuple[Node | None, int, int]], frontier: deque[tuple[Node, int]],
               out: Outcome) -> Refutation | None:
        w, a, b = node
        for op, op_ir in enumerate(self.ops):
            for args in range(len(self.args[op])):
                ma, mb = self.move(a, op, args, w), self.move(b, op, args, w)
                out.steps += 1
                if ma.halted or mb.halted:
                    out.halts += 1
                    continue
                if self.premise_fails(within, ma, mb):
                    out.cuts += 1
                    continue
                problem = self.output_problem(within, op_ir, ma, mb)
                for post in (ma.post, mb.post):
                    problem = problem or (None if self.broken(post) is None
                                          else f"a reachable state breaks {self.broken(post)}")
                child = (w, min(ma.post, mb.post), max(ma.post, mb.post))
                if problem is None and ma.post != mb.post and child not in parents:
                    problem = self.difference(within, ma.post, mb.post)
                    parents[child] = (node, op, args)
                    frontier.append((child, depth + 1))
                if problem is not None:
                    return self.refutation(u0, within, parents, node, (op, args), problem)
        return None

    def refutation(self, u0: Principal, within: list[Principal], parents: dict[Node, tuple[Node | None, int, int]],
                   node: Node, last: tuple[int, int] | None, what: str) -> Refutation:
        steps: list[tuple[int, int]] = [] if last is None else [last]
        root = node
        while True:
            parent, op, args = parents.get(root, (None, -1, -1))
            if parent is None:
                break
            steps.append((op, args))
            root = parent
        labels = tuple(f"{self.ops[op].name}({', '.join(f'{k}={show(v)}' for k, v in self.args[op][args].items())})"
                       for op, args in reversed(steps))
        return Refutation(self.chain[0].name, str(u0), tuple(str(w) for w in within), what,
                          self.omegas[root[0]][0], show_state(self.space.states[root[1]]),
                          show_state(self.space.states[root[2]]), labels)

    def closure(self, u0: Principal) -> list[Principal]:
        """C(u0): every principal that reaches u0 through flows (u0 included)."""
        within = [u0]
        grew = True
        while grew:
            grew = False
            for p in self.interp.principals():
                if p not in within and any(self.interp.flows(p, w) for w in within):
                    within.append(p)
                    grew = True
        return within

    def run(self) -> Outcome:
        out = Outcome(self.chain[0].name)
        try:
            init = self.initial()
            out.states = len(init)
            if not init:  # `init` may fix a counter: the enumeration starts every counter at 0
                out.status = "empty"
                out.detail = f"no state of {out.layer} with every oracle counter at 0 satisfies `init`: nothing checked"
                return out
            bad = next(((i, self.broken(i)) for i in init if self.broken(i) is not None), None)
            if bad is not None:
                out.status, out.detail = "refuted", f"an initial state breaks {bad[1]}"
                out.refutation = Refutation(out.layer, "-", (), out.detail, "-", show_state(self.space.states[bad[0]]), "-", ())
                return out
            for u0 in self.interp.principals():
                found = self.observe(u0, self.closure(u0), init, out)
                if found is not None:
                    out.status, out.detail, out.refutation = "refuted", found.what, found
                    return out
        except TooLarge as exc:
            out.status, out.detail = "too-large", str(exc)
        return out


def freeze_observed(seen: tuple[tuple[tuple[object, ...], Value], ...], u: Universe) -> Hashable:
    return tuple((point, freeze(v, u)) for point, v in seen)


def _reads(op: ir.Op) -> bool:
    return any(isinstance(s, (ir.Let, ir.Assign)) and isinstance(s.value, ir.ReadOracle)
               for s in ir.statements(op.body))


def check_theorem(module: ir.Module, bottom: str, bounds: Bounds = Bounds()) -> Outcome:
    """Check the theorem `prove` prints for the stack whose bottom layer is `bottom`."""
    return Checker(module, bottom, bounds).run()


# ---------------------------------------------------------------- both encodings, then the check

@dataclass
class Verdict:
    text: str
    statuses: dict[str, dict[str, Status]] = field(default_factory=dict)  # encoding -> obligation -> status
    theorems: dict[str, list[str]] = field(default_factory=dict)  # encoding -> bottom layers
    disagreements: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    prove_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def refuted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "refuted"]

    @property
    def category(self) -> str:
        """checked | unchecked | not-proved | unknown (refutations and disagreements are extra);
        unchecked: every theorem was too large to check, or had no initial state to check from."""
        if self.unknown:
            return "unknown"
        if not self.outcomes:
            return "not-proved"
        return "checked" if any(o.status in CHECKED for o in self.outcomes) else "unchecked"

    def report(self) -> str:
        lines = [f"disagreement: {d}" for d in self.disagreements]
        lines += [o.refutation.render() for o in self.refuted if o.refutation is not None]
        return "\n".join(lines + ["model:", self.text])


def theorem_layers(module: ir.Module, options: Options) -> tuple[dict[str, Status], list[str]]:
    results = prove_modules([module], options)
    lines = theorems([module], results, [ob for _, ob in obligations([module])])
    return ({r.obligation.id: r.status for r in results},
            [line.split()[1] for line in lines if line.startswith("theorem: ")])


def differential(text: str, bounds: Bounds = Bounds(), check_all: bool = False) -> Verdict:
    """Prove `text` in both encodings, compare them obligation by obligation, and check every
    printed theorem exhaustively (`check_all`: every stack, printed or not, for calibration)."""
    verdict = Verdict(text)
    module = load_text(text, "<gen>")
    started = time.perf_counter()
    for enc in ENCODINGS:
        verdict.statuses[enc], verdict.theorems[enc] = theorem_layers(module, Options(encoding=enc))
    verdict.prove_seconds = time.perf_counter() - started
    verdict.disagreements, verdict.unknown = compare(verdict.statuses)
    layers = sorted({x for enc in ENCODINGS for x in verdict.theorems[enc]})
    if check_all:
        layers = [c[0].name for c in stacks(module)]
    started = time.perf_counter()
    verdict.outcomes = [check_theorem(module, name, bounds) for name in layers]
    verdict.check_seconds = time.perf_counter() - started
    return verdict


def compare(statuses: Mapping[str, Mapping[str, Status]]) -> tuple[list[str], list[str]]:
    """(obligations PROVED in one encoding and FAILED or VACUOUS in the other, obligations
    UNKNOWN in some encoding)."""
    a, b = (statuses[enc] for enc in ENCODINGS)
    assert set(a) == set(b), "the encodings generate different obligations"
    refuting = {Status.FAILED, Status.VACUOUS}
    disagree = [f"{ob}: {a[ob].value} ({ENCODINGS[0]}) vs {b[ob].value} ({ENCODINGS[1]})" for ob in a
                if {a[ob], b[ob]} & {Status.PROVED} and {a[ob], b[ob]} & refuting]
    unknown = [ob for ob in a if Status.UNKNOWN in (a[ob], b[ob])]
    return disagree, unknown
