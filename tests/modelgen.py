"""Small well-typed models for the differential soundness tests (issue 13), as .mv source text.

A model is drawn as data (layers of expressions and statements) and then rendered, so that the
front end is exercised too. Sorts are tiny (bool, bv[1], bv[2], an enum of 2 or 3 members, 3 or
4 principals; maps over bool, bv[1] or bv[2] keys; a record), so tests/exhaustive.py can
enumerate every state.

Most random models leak, so the generator builds a *secure skeleton* and then mutates it:

- fields by feature: each VM's word `mem[v]`, KServ's `kd` (or a record `kr`), each VM's enum
  `mode[v]` with an invariant, pages whose `owner` guards `pm` (observed `for p where owner[p]
  == ...`), the running VM `cur` (`by VM(cur)`), a table `tab` over bv[2] keys observed under
  numeral guards (the quantifier instantiation of prover/qf.py), a third principal `Dev`;
- a policy (isolation, `KServ -> VM`, `VM -> KServ`, `VM -> VM`, an intransitive one with
  `Dev`), an oracle (a word, an enum or a record, from KServ or from the VMs);
- about three operations from templates that only touch what their principal owns, with
  random arithmetic over what it may see (`let`, `if`, `check ... else return/halt`, `halt`,
  `return`, reads for the domain or for another principal, rollbacks, oracle counters as
  data), and operations that need a flow only where the policy has it;
- then, for about half of the single layers, one or two mutations: an index swapped, a check or
  an assignment dropped, another principal's data mixed in, a different `by`, an observation
  widened, narrowed or unmasked, an `init` dropped, an operation the policy does not allow.

A stack (two or three layers) is the skeleton as `Spec`, refined by data refinements: every
field stored the same, xor-masked, negated or wrapped in a record with a ghost bit (at most one
wrap per stack), the same operations over that representation, an operation `implements` its
upper one with an argument computed from the state (R-ARGS), `bind` instead of `read` (R-BIND;
kept at the layer below, the R-ORACLE chain), a ghost field with a stutter operation, lower
layers that halt more; then mutations of the lower layer (also: a stutter operation that
changes the abstract state, a ghost field observed, a bind's value or source changed).

One generator serves hypothesis (`models()`) and seeded campaigns (`random_model(seed)`)
through `Source`, whose only primitive is an integer in a range (shrinking goes to 0: the
first choice, and no mutation). The first line of a text says what was generated.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar, Union

from hypothesis import strategies as st

T = TypeVar("T")


class Source(Protocol):
    def between(self, lo: int, hi: int) -> int: ...


class RandomSource:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def between(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class DrawSource:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def between(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))


# ---------------------------------------------------------------- the model as data

@dataclass(frozen=True)
class Acc:
    """A state access `field[index].member` (index and member optional)."""

    field: str
    index: Ex | None = None
    member: str | None = None


@dataclass(frozen=True)
class App:
    """An expression written as a format string over sub-expressions: `({0} + {1})`."""

    fmt: str
    args: tuple[Ex, ...] = ()


Ex = Union[str, Acc, App]  # a str is a name or a literal


@dataclass(frozen=True)
class Let:
    name: str
    type: str
    value: Ex


@dataclass(frozen=True)
class Set:
    target: Acc
    value: Ex
    tag: str


@dataclass(frozen=True)
class Read:
    target: Acc | str  # a str: `let name = read o`
    oracle: str
    who: Ex | None = None


@dataclass(frozen=True)
class Bind:
    oracle: str
    value: Ex
    who: Ex | None
    source: Ex | None


@dataclass(frozen=True)
class Check:
    cond: Ex
    otherwise: Ex | None  # None: halt


@dataclass(frozen=True)
class If:
    cond: Ex
    then: tuple[Stmt, ...]
    other: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class Ret:
    value: Ex
    tag: str


@dataclass(frozen=True)
class Halt:
    pass


Stmt = Union[Let, Set, Read, Bind, Check, If, Ret, Halt]


@dataclass(frozen=True)
class Op:
    name: str
    params: tuple[tuple[str, str], ...]  # name, type text
    dom: Ex
    result: str | None  # type text
    body: tuple[Stmt, ...]
    owner: str  # vm | k | dev | cur: whose data the operation may read (for leaks)
    implements: str | None = None  # rendered `f(args)` of a lower operation


@dataclass(frozen=True)
class Obs:
    expr: Ex
    binders: str | None = None
    where: Ex | None = None


@dataclass
class LayerSpec:
    name: str
    fields: list[tuple[str, str]]
    init: list[Ex]
    invariants: list[Ex]
    observe: dict[str, list[Obs]]  # head (`KServ`, `VM(v)`, `Dev`) -> components
    ops: list[Op]
    refines: str | None = None
    abstraction: list[str] = field(default_factory=list)
    layout: Layout | None = None


# ---------------------------------------------------------------- rendering

class Layout:
    """How the accesses of the upper layer's fields are written in a layer: identity here."""

    def read(self, acc: Acc, index: str | None) -> str:
        return acc.field + (f"[{index}]" if index is not None else "") + (f".{acc.member}" if acc.member else "")

    def write(self, acc: Acc, index: str | None, value: str) -> list[str]:
        return [f"{self.read(acc, index)} := {value}"]


@dataclass(frozen=True)
class Rep:
    """How a layer stores a field of the layer above (its abstraction is the inverse)."""

    kind: str  # same | xor | wrap | neg
    mask: str = ""  # the constant a `xor` field is masked with
    dirty: bool = False  # `wrap`: writes also set the ghost bit

    def read_of(self, text: str) -> str:
        return {"same": text, "xor": f"({text} ^ {self.mask})", "wrap": f"{text}.d", "neg": f"(!{text})"}[self.kind]

    def encode(self, suffix: str, value: str) -> list[tuple[str, str]]:
        """What to write, below the lower field, for `value` written at `suffix` above."""
        if suffix or self.kind == "same":
            return [(suffix, value)]  # below a wrap only `same` is chosen
        if self.kind == "xor":
            return [("", f"({value}) ^ {self.mask}")]
        if self.kind == "neg":
            return [("", f"!({value})")]
        return [(".d", value)] + ([(".g", "true")] if self.dirty else [])

    def lowered(self, type_text: str) -> str:
        if self.kind != "wrap":
            return type_text
        key, value = type_text.split(" -> ", 1)
        return f"{key} -> record {{ d: {value}, g: bool }}"


@dataclass
class Levels:
    """reps[k-1][F]: how layer k of a stack (0 is the top) stores what layer k-1 calls F;
    born[F]: the layer F first appears in (the top's fields 0, a ghost field its layer)."""

    reps: list[dict[str, Rep]] = field(default_factory=list)
    born: dict[str, int] = field(default_factory=dict)

    def name(self, f: str, level: int) -> str:
        return f + "_l" * (level - self.born[f])


class Lowered(Layout):
    """Layer `depth` of a stack: every access of a field goes down its chain of representations."""

    def __init__(self, levels: Levels, depth: int) -> None:
        self.levels, self.depth = levels, depth

    def chain(self, f: str) -> list[Rep]:
        return [self.levels.reps[k - 1][f] for k in range(self.levels.born[f] + 1, self.depth + 1)]

    def read(self, acc: Acc, index: str | None) -> str:
        if acc.field not in self.levels.born:
            return super().read(acc, index)
        text = self.levels.name(acc.field, self.depth) + (f"[{index}]" if index is not None else "")
        for rep in reversed(self.chain(acc.field)):
            text = rep.read_of(text)
        return text + (f".{acc.member}" if acc.member else "")

    def write(self, acc: Acc, index: str | None, value: str) -> list[str]:
        if acc.field not in self.levels.born:
            return super().write(acc, index, value)
        pairs = [(f".{acc.member}" if acc.member else "", value)]
        for rep in self.chain(acc.field):
            pairs = [p for suffix, v in pairs for p in rep.encode(suffix, v)]
        base = self.levels.name(acc.field, self.depth) + (f"[{index}]" if index is not None else "")
        return [f"{base}{suffix} := {v}" for suffix, v in pairs]


def render(e: Ex, lay: Layout) -> str:
    if isinstance(e, str):
        return e
    if isinstance(e, Acc):
        return lay.read(e, None if e.index is None else render(e.index, lay))
    return e.fmt.format(*(render(a, lay) for a in e.args))


def render_stmt(s: Stmt, lay: Layout, pad: str) -> list[str]:
    def r(e: Ex) -> str:
        return render(e, lay)
    if isinstance(s, Let):
        return [f"{pad}let {s.name}: {s.type} = {r(s.value)}"]
    if isinstance(s, Set):
        return [pad + line for line in lay.write(s.target, None if s.target.index is None
                                                  else r(s.target.index), r(s.value))]
    if isinstance(s, Read):
        src = f"read {s.oracle}" + (f" for {r(s.who)}" if s.who is not None else "")
        if isinstance(s.target, str):
            return [f"{pad}let {s.target} = {src}"]
        return [pad + line for line in lay.write(s.target, None if s.target.index is None
                                                  else r(s.target.index), src)]
    if isinstance(s, Bind):
        return [f"{pad}bind {s.oracle} = {r(s.value)}" + (f" for {r(s.who)}" if s.who is not None else "")
                + (f" from {r(s.source)}" if s.source is not None else "")]
    if isinstance(s, Check):
        return [f"{pad}check {r(s.cond)} else " + ("halt" if s.otherwise is None else f"return {r(s.otherwise)}")]
    if isinstance(s, If):
        out = [f"{pad}if {r(s.cond)} {{"] + [x for t in s.then for x in render_stmt(t, lay, pad + "  ")]
        if s.other:
            out += [f"{pad}}} else {{"] + [x for t in s.other for x in render_stmt(t, lay, pad + "  ")]
        return out + [pad + "}"]
    if isinstance(s, Ret):
        return [f"{pad}return {r(s.value)}"]
    return [f"{pad}halt"]


def render_op(op: Op, lay: Layout) -> list[str]:
    params = ", ".join(f"{n}: {t}" for n, t in op.params)
    head = f"  op {op.name}({params}) by {render(op.dom, lay)}" + (f" -> {op.result}" if op.result else "")
    head += f" implements {op.implements}" if op.implements else ""
    body = [x for s in op.body for x in render_stmt(s, lay, "    ")]
    return [head + " {"] + body + ["  }"]


def render_obs(o: Obs, lay: Layout) -> str:
    text = render(o.expr, lay)
    text += f" for {o.binders}" if o.binders else ""
    return text + (f" where {render(o.where, lay)}" if o.where is not None else "")


def render_layer(spec: LayerSpec) -> str:
    lay = spec.layout or Layout()
    head = f"layer {spec.name}" + (f" refines {spec.refines}" if spec.refines else "")
    out = [head + " {", "  state {"] + [f"    {n} : {t}" for n, t in spec.fields] + ["  }"]
    if spec.abstraction:
        out.append("  abstraction { " + "; ".join(spec.abstraction) + " }")
    if spec.init:
        out.append("  init { " + "; ".join(render(e, lay) for e in spec.init) + " }")
    for i, inv in enumerate(spec.invariants):
        out.append(f"  invariant inv{i} {{ {render(inv, lay)} }}")
    for who, comps in spec.observe.items():
        if comps:
            out.append(f"  observe {who} {{ " + "; ".join(render_obs(c, lay) for c in comps) + " }")
    for op in spec.ops:
        out += render_op(op, lay)
    return "\n".join(out + ["}"])


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Config:
    width: int  # of `word`
    colors: tuple[str, ...]
    dev: bool  # a third single principal `Dev`
    flows: tuple[tuple[str, str], ...]
    features: frozenset[str]  # mem kd kr mode pages cur dev oracle
    oracle_type: str  # word | rec | col
    oracle_source: str  # KServ | VM

    @property
    def word(self) -> str:
        return f"bv{self.width}"

    def flow(self, a: str, b: str) -> bool:
        return (a, b) in self.flows


TAG_TEXT = {"bool": "bool", "bv1": "bv[1]", "bv2": "bv[2]", "col": "col", "principal": "principal", "rec": "rec"}
POLICIES: tuple[tuple[tuple[str, str], ...], ...] = (
    (), (), (("KServ", "VM"),), (("VM", "KServ"),), (("KServ", "VM"), ("VM", "KServ")), (("VM", "VM"),),
    (("KServ", "VM"), ("VM", "VM")))
DEV_POLICIES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("KServ", "Dev"),), (("KServ", "VM"), ("VM", "Dev")), (("Dev", "KServ"),))


MAX_UPPER_STATES = 256  # the lower layer adds a ghost bit and at most one ghost bit per map entry


def state_size(features: set[str], width: int, colors: int, dev: bool) -> int:
    """How many states the skeleton's fields have (oracle counters aside)."""
    word, principals = 1 << width, 3 + int(dev)
    sizes = {"mem": word ** 2, "kd": word, "kr": word * 2, "mode": colors ** 2,
             "pages": principals ** 2 * word ** 2, "cur": 2, "dev": 2, "tab": 16}
    total = 1
    for f in features:
        total *= sizes.get(f, 1)
    return total


class Gen:
    """Random choices, with the model's configuration and the mutations applied so far."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.mutations: list[str] = []
        self.quantifiers = 0
        self.cfg = self._config()

    # -- primitives
    def between(self, lo: int, hi: int) -> int:
        return self.src.between(lo, hi)

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.src.between(0, len(seq) - 1)]

    def chance(self, percent: int) -> bool:
        return self.src.between(0, 99) >= 100 - percent  # 0 (where shrinking goes) is `no`

    def _config(self) -> Config:
        width = 1 + int(self.chance(35))
        colors = ("A", "B", "C")[:2 + int(self.chance(50))]
        dev = self.chance(25)
        flows = self.pick(POLICIES + DEV_POLICIES) if dev else self.pick(POLICIES)
        features = {"mem"} if self.chance(75) else {"kd"}
        for name, pct in (("kd", 45), ("mode", 30), ("pages", 25), ("cur", 20), ("tab", 20), ("oracle", 40)):
            if self.chance(pct):
                features.add(name)
        if "cur" in features:
            features.add("mem")
        if "kd" in features and self.chance(30):
            features = (features - {"kd"}) | {"kr"}
        if dev:
            features.add("dev")
        if "pages" in features or len(features) > 3:
            width = 1
        for optional in ("cur", "tab", "mode", "pages", "kd", "kr"):
            if state_size(features, width, len(colors), dev) > MAX_UPPER_STATES and optional in features \
                    and features & {"mem", "kd", "kr"} - {optional}:
                features.discard(optional)
        source = "VM" if self.chance(40) else "KServ"
        otype = "rec" if "kr" in features and self.chance(40) else "col" if self.chance(15) else "word"
        return Config(width, colors, dev, flows, frozenset(features), otype, source)

    # -- expressions
    def literal(self, tag: str) -> str:
        if tag == "bool":
            return self.pick(("true", "false"))
        if tag == "col":
            return self.pick(self.cfg.colors)
        if tag == "principal":
            return self.pick(("KServ", "VM(0)", "VM(1)") + (("Dev",) if self.cfg.dev else ()))
        return str(self.between(0, (1 << int(tag[2:])) - 1))

    def expr(self, tag: str, atoms: list[tuple[Ex, str]], depth: int = 2, typed: bool = False) -> Ex:
        """An expression of type `tag` over `atoms`; `typed`: its type must not come from the
        context (no bare integer literal), as on the left of a binary operator."""
        if not (typed and tag.startswith("bv")) and self.chance(20):
            return self.literal(tag)
        if depth <= 0 or self.chance(40):
            return self.leaf(tag, atoms)
        return self.compound(tag, atoms, depth - 1)

    def leaf(self, tag: str, atoms: list[tuple[Ex, str]]) -> Ex:
        mine = [a for a, t in atoms if t == tag]
        if mine and not self.chance(10):
            return self.pick(mine)
        if tag.startswith("bv"):
            return "K" + tag[2:]  # a typed constant
        return self.literal(tag)

    def compound(self, tag: str, atoms: list[tuple[Ex, str]], d: int) -> Ex:
        if tag == "bool":
            return self.condition(atoms, d)
        if tag.startswith("bv"):
            return self.arith(tag, atoms, d)
        if tag == "principal" and self.chance(40):
            return App("VM({0})", (self.expr("bv1", atoms, d),))
        return App("(if {0} then {1} else {2})",
                   (self.condition(atoms, d), self.expr(tag, atoms, d, True), self.expr(tag, atoms, d)))

    def arith(self, tag: str, atoms: list[tuple[Ex, str]], d: int) -> Ex:
        kind = self.between(0, 9)
        def left() -> Ex:
            return self.expr(tag, atoms, d, True)

        def right() -> Ex:
            return self.expr(tag, atoms, d)
        if kind <= 4:
            op = self.pick(("+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"))
            return App(f"({{0}} {op} {{1}})", (left(), right()))
        if kind == 5:
            return App(self.pick(("(-{0})", "(~{0})")), (left(),))
        if kind == 6:
            return App(self.pick(("sdiv", "srem", "ashr")) + "({0}, {1})", (left(), right()))
        if kind == 7:
            return App("(if {0} then {1} else {2})", (self.condition(atoms, d), left(), right()))
        if tag == "bv2":
            resize = self.pick(("zext({0}, 2)", "sext({0}, 2)", "concat({0}, {1})"))
            return App(resize, (self.expr("bv1", atoms, d, True),) +
                       ((self.expr("bv1", atoms, d, True),) if "{1}" in resize else ()))
        return App(self.pick(("trunc({0}, 1)", "extract({0}, 1, 1)")), (self.expr("bv2", atoms, d, True),))

    def condition(self, atoms: list[tuple[Ex, str]], d: int) -> Ex:
        kind = self.between(0, 9)
        present = [t for _, t in atoms if t.startswith("bv")]
        if d <= 0 or kind <= 3:
            t = self.pick(present) if present and not self.chance(15) else self.pick(("bv1", "bv2"))
            op = self.pick(("==", "!=", "<", "<=", ">", ">=")) if kind != 3 else self.pick(("slt", "sge"))
            fmt = f"({{0}} {op} {{1}})" if kind != 3 else op + "({0}, {1})"
            return App(fmt, (self.expr(t, atoms, d, True), self.expr(t, atoms, d)))
        if kind == 4:
            return App("(!{0})", (self.expr("bool", atoms, d),))
        if kind <= 6:
            op = self.pick(("&&", "||", "==>", "<==>"))
            return App(f"({{0}} {op} {{1}})", (self.expr("bool", atoms, d), self.expr("bool", atoms, d)))
        if kind == 7 and self.quantifiers < 1:
            self.quantifiers += 1
            q = self.pick(("forall", "exists"))
            return App(f"({q} q: bv[1]. {{0}})", (self.expr("bool", atoms + [("q", "bv1")], d),))
        t = self.pick([t for _, t in atoms if t in ("col", "principal", "bool")] or ["col", "principal", "bool"])
        return App(self.pick(("({0} == {1})", "({0} != {1})")), (self.expr(t, atoms, d, True), self.expr(t, atoms, d)))

    def guard(self, atoms: list[tuple[Ex, str]]) -> Ex:
        """A condition that some state and arguments satisfy, and some do not (mostly)."""
        usable = [(a, t) for a, t in atoms if t != "rec"]
        if not usable or self.chance(15):
            return self.condition(atoms, 1)
        a, t = self.pick(usable)
        if t == "bool":
            return a if self.chance(50) else App("(!{0})", (a,))
        ops = ("==", "!=", "<=", ">=") if t.startswith("bv") else ("==", "!=")
        return App(f"({{0}} {self.pick(ops)} {{1}})", (a, self.literal(t)))

    def mixed(self, tag: str, value: Ex, extra: Ex) -> Ex:
        """`value` combined with `extra` (of the same type), as a leak would do it."""
        if tag.startswith("bv"):
            return App(self.pick(("({0} + {1})", "({0} ^ {1})", "({0} | {1})", "({0} & {1})")), (value, extra))
        if tag == "bool":
            return App(self.pick(("({0} && {1})", "({0} || {1})", "({0} <==> {1})")), (value, extra))
        return App("(if ({1} == {1}) then {0} else {0})", (value, extra)) if self.chance(20) else extra

    # -- who owns what
    def kfields(self) -> list[tuple[Acc, str]]:
        f = self.cfg.features
        if "kd" in f:
            return [(Acc("kd"), self.cfg.word)]
        if "kr" in f:
            return [(Acc("kr", member="a"), self.cfg.word), (Acc("kr", member="b"), "bool")]
        return []

    def own(self, owner: str, idx: Ex = "v") -> list[tuple[Ex, str]]:
        f, w = self.cfg.features, self.cfg.word
        out: list[tuple[Ex, str]] = []
        who: Ex = {"k": "KServ", "dev": "Dev"}.get(owner, App("VM({0})", (idx,)))
        if owner in ("vm", "cur"):
            out += [(Acc("mem", idx), w)] if "mem" in f else []
            out += [(Acc("mode", idx), "col")] if "mode" in f else []
            out += [(who, "principal")]
        elif owner == "k":
            out += [(a, t) for a, t in self.kfields()]
        elif owner == "dev":
            out += [(Acc("dbox"), "bool")]
        elif owner == "page":
            out += [(Acc("pm", "p"), w), (Acc("owner", "p"), "principal")]
        if "oracle" in f and owner != "page" and self.chance(30):  # its own position in the stream
            out.append((App("trunc(counter(o, {0}), 1)", (who,)), "bv1"))
        return out

    def foreign(self, owner: str) -> list[tuple[Ex, str]]:
        f, w = self.cfg.features, self.cfg.word
        out: list[tuple[Ex, str]] = []
        if "mem" in f:
            out.append((Acc("mem", "(~v)" if owner == "vm" else "0"), w))
        if "mode" in f:
            out.append((Acc("mode", "(~v)" if owner == "vm" else "1"), "col"))
        if owner != "k":
            out += [(a, t) for a, t in self.kfields()]
        if "dev" in f and owner != "dev":
            out.append((Acc("dbox"), "bool"))
        if "pages" in f:
            out.append((Acc("pm", "true"), w))
        if "tab" in f:
            out.append((Acc("tab", "3"), "bool"))
        if "oracle" in f:
            out.append((App("trunc(counter(o, {0}), 1)", ("VM(0)" if owner == "k" else "KServ",)), "bv1"))
        return out


# ---------------------------------------------------------------- operations of the skeleton

V = ("v", "bv[1]")
X = ("x", "word")


def _vm(name: str, params: tuple[tuple[str, str], ...], result: str | None, body: tuple[Stmt, ...]) -> Op:
    return Op(name, params, "VM(v)", result, body, "vm")


def _k(name: str, params: tuple[tuple[str, str], ...], result: str | None, body: tuple[Stmt, ...]) -> Op:
    return Op(name, params, "KServ", result, body, "k")


def t_vm_write(g: Gen) -> Op:
    w = g.cfg.word
    return _vm("vm_write", (V, X), None, (Set(Acc("mem", "v"), g.expr(w, g.own("vm") + [("x", w)]), w),))


def t_vm_read(g: Gen) -> Op:
    w, atoms = g.cfg.word, g.own("vm")
    return _vm("vm_read", (V,), "word", (Let("y", "word", g.expr(w, atoms)),
                                         Ret(g.expr(w, atoms + [("y", w)]), w)))


def t_vm_try(g: Gen) -> Op:
    w = g.cfg.word
    atoms = g.own("vm") + [("x", w)]
    return _vm("vm_try", (V, X), "bool", (Check(g.guard(atoms), "false"),
                                          Set(Acc("mem", "v"), g.expr(w, atoms), w), Ret("true", "bool")))


def t_vm_step(g: Gen) -> Op:
    w, atoms = g.cfg.word, g.own("vm")
    then = (Set(Acc("mem", "v"), g.expr(w, atoms), w),)
    other = (Set(Acc("mem", "v"), g.expr(w, atoms), w),) if g.chance(50) else ()
    return _vm("vm_step", (V,), None, (Check(g.guard(atoms), None), If(g.condition(atoms, 1), then, other)))


def _read_value(g: Gen) -> tuple[Ex, str]:
    if g.cfg.oracle_type == "col":
        return "r", "col"
    return (Acc("r", member="a") if g.cfg.oracle_type == "rec" else "r", g.cfg.word)


def t_vm_fetch(g: Gen) -> Op:
    w = g.cfg.word
    r = _read_value(g)
    return _vm("vm_fetch", (V,), None, (Read("r", "o"), Set(Acc("mem", "v"), g.expr(w, g.own("vm") + [r]), w)))


def t_vm_pull(g: Gen) -> Op:
    w = g.cfg.word
    atoms = g.own("vm") + [("b", "bool")]
    if g.cfg.oracle_type == "col" and "mode" in g.cfg.features:
        first: Stmt = Read(Acc("mode", "v"), "o")
    elif g.cfg.oracle_type == "word":
        first = Read(Acc("mem", "v"), "o")
    else:
        first = Read("r", "o")
    return _vm("vm_pull", (V, ("b", "bool")), "word", (first, Check(g.guard(atoms), g.expr(w, atoms)),
                                                     Ret(g.expr(w, atoms), w)))


def t_k_push(g: Gen) -> Op:  # KServ -> VM
    w = g.cfg.word
    return _k("k_push", (V, X), None, (Set(Acc("mem", "v"), g.expr(w, g.own("k") + [("x", w)]), w),))


def t_k_io(g: Gen) -> Op:  # KServ -> VM: a read for the VM
    if g.cfg.oracle_type == "word":
        return _k("k_io", (V,), None, (Read(Acc("mem", "v"), "o", "VM(v)"),))
    r = _read_value(g)
    value = g.expr(g.cfg.word, [r]) if r[1] == "col" else r[0]
    return _k("k_io", (V,), None, (Read("r", "o", "VM(v)"), Set(Acc("mem", "v"), value, g.cfg.word)))


def t_vm_export(g: Gen) -> Op:  # VM -> KServ
    target, tag = g.pick(g.kfields())
    return _vm("vm_export", (V,), None, (Set(target, g.expr(tag, g.own("vm")), tag),))


def t_k_set(g: Gen) -> Op:
    target, tag = g.pick(g.kfields())
    atoms = g.own("k") + [("x", g.cfg.word)]
    return _k("k_set", (X,), None, (Set(target, g.expr(tag, atoms), tag),))


def t_k_get(g: Gen) -> Op:
    w, atoms = g.cfg.word, g.own("k")
    if g.chance(30) and "kr" in g.cfg.features:
        return _k("k_get", (), "rec", (Ret(Acc("kr"), "rec"),))
    return _k("k_get", (), "word", (Let("y", "word", g.expr(w, atoms)), Ret(g.expr(w, atoms + [("y", w)]), w)))


def t_k_fetch(g: Gen) -> Op:
    w = g.cfg.word
    target, tag = g.pick(g.kfields())
    atoms = g.own("k") + [_read_value(g)]
    return _k("k_fetch", (), "word", (Read("r", "o"), Set(target, g.expr(tag, atoms), tag), Ret(g.expr(w, atoms), w)))


def t_k_branch(g: Gen) -> Op:
    target, tag = g.pick(g.kfields())
    atoms = g.own("k") + [("b", "bool")]
    return _k("k_branch", (("b", "bool"),), None,
              (If(g.condition(atoms, 1), (Set(target, g.expr(tag, atoms), tag),),
                  (Set(target, g.expr(tag, atoms), tag),)),))


def _is(acc: Ex, value: str) -> Ex:
    return App("({0} == " + value + ")", (acc,))


def t_run(g: Gen) -> Op:
    return _vm("run", (V,), None, (Check(_is(Acc("mode", "v"), "A"), None), Set(Acc("mode", "v"), "B", "col")))


def t_toggle(g: Gen) -> Op:
    m = Acc("mode", "v")
    other: tuple[Stmt, ...] = (Set(m, "A", "col"),)
    if "C" in g.cfg.colors:  # unreachable under the invariant `mode != C`
        other = (If(_is(m, "B"), other, (Halt(),)),)
    return _vm("toggle", (V,), "col", (If(_is(m, "A"), (Set(m, "B", "col"),), other), Ret(m, "col")))


def t_mode_set(g: Gen) -> Op:
    guard: tuple[Stmt, ...] = (Check(App("(c != C)"), None),) if "C" in g.cfg.colors else ()
    return _vm("mode_set", (V, ("c", "col")), None, guard + (Set(Acc("mode", "v"), "c", "col"),))


def _owned(p: str, who: str) -> Ex:
    return App("({0} == " + who + ")", (Acc("owner", p),))


def t_give(g: Gen) -> Op:  # KServ -> VM
    return _k("give", (V, ("p", "bool")), "bool",
              (Check(_owned("p", "KServ"), "false"), Set(Acc("owner", "p"), "VM(v)", "principal"),
               Set(Acc("pm", "p"), "0", g.cfg.word), Ret("true", "bool")))


def t_page_write(g: Gen) -> Op:
    w = g.cfg.word
    atoms = g.own("vm") + [("x", w), (Acc("pm", "p"), w)]
    return _vm("pw", (V, ("p", "bool"), X), "bool", (Check(_owned("p", "VM(v)"), "false"),
                                                     Set(Acc("pm", "p"), g.expr(w, atoms), w), Ret("true", "bool")))


def t_page_read(g: Gen) -> Op:
    w = g.cfg.word
    atoms = g.own("vm") + [(Acc("pm", "p"), w)]
    return _vm("pr", (V, ("p", "bool")), "word", (Check(_owned("p", "VM(v)"), "0"), Ret(g.expr(w, atoms), w)))


def t_page_kwrite(g: Gen) -> Op:
    w = g.cfg.word
    atoms = g.own("k") + [("x", w), (Acc("pm", "p"), w)]
    return _k("kw", (("p", "bool"), X), None, (Check(_owned("p", "KServ"), None), Set(Acc("pm", "p"), g.expr(w, atoms), w)))


def t_release(g: Gen) -> Op:  # VM -> KServ
    return _vm("release", (V, ("p", "bool")), None, (Check(_owned("p", "VM(v)"), None),
                                                     Set(Acc("pm", "p"), "0", g.cfg.word),
                                                     Set(Acc("owner", "p"), "KServ", "principal")))


def t_page_use(g: Gen) -> Op:  # whoever owns the page
    w = g.cfg.word
    atoms = g.own("page") + [("x", w)]
    return Op("use", (("p", "bool"), X), Acc("owner", "p"), None, (Set(Acc("pm", "p"), g.expr(w, atoms), w),), "page")


def t_vm_share(g: Gen) -> Op:  # VM -> VM
    w = g.cfg.word
    return _vm("vm_share", (V,), None, (Set(Acc("mem", "(~v)"), g.expr(w, g.own("vm")), w),))


def t_k_mark(g: Gen) -> Op:
    atoms = g.own("k") + [("b", "bool"), (Acc("tab", "i"), "bool")]
    return _k("k_mark", (("i", "bv[2]"), ("b", "bool")), None,
              (Check(App("(i < 2)"), None), Set(Acc("tab", "i"), g.expr("bool", atoms), "bool")))


SLOT = App("(zext(v, 2) + 2)")  # VM(v)'s entry of `tab`


def t_vm_mark(g: Gen) -> Op:
    atoms = g.own("vm") + [("b", "bool"), (Acc("tab", SLOT), "bool")]
    return _vm("vm_mark", (V, ("b", "bool")), "bool",
               (Set(Acc("tab", SLOT), g.expr("bool", atoms), "bool"), Ret(g.expr("bool", atoms), "bool")))


def t_cur_write(g: Gen) -> Op:
    w = g.cfg.word
    atoms = g.own("cur", Acc("cur")) + [("x", w)]
    return Op("cur_write", (X,), App("VM({0})", (Acc("cur"),)), None, (Set(Acc("mem", Acc("cur")), g.expr(w, atoms), w),), "cur")


def t_cur_read(g: Gen) -> Op:
    w = g.cfg.word
    return Op("cur_read", (), App("VM({0})", (Acc("cur"),)), "word", (Ret(g.expr(w, g.own("cur", Acc("cur"))), w),), "cur")


def t_schedule(g: Gen) -> Op:  # KServ -> VM
    return _k("schedule", (V,), None, (Set(Acc("cur"), "v", "bv1"),))


def t_dev_set(g: Gen) -> Op:
    atoms = g.own("dev") + [("b", "bool")]
    return Op("dev_set", (("b", "bool"),), "Dev", None, (Set(Acc("dbox"), g.expr("bool", atoms), "bool"),), "dev")


def t_dev_get(g: Gen) -> Op:
    return Op("dev_get", (), "Dev", "bool", (Ret(g.expr("bool", g.own("dev")), "bool"),), "dev")


def t_k_to_dev(g: Gen) -> Op:  # KServ -> Dev
    return _k("k_to_dev", (), None, (Set(Acc("dbox"), g.condition(g.own("k"), 1), "bool"),))


@dataclass(frozen=True)
class Template:
    make: Callable[[Gen], Op]
    needs: frozenset[str]
    flow: tuple[str, str] | None = None


def _t(make: Callable[[Gen], Op], needs: str, flow: tuple[str, str] | None = None) -> Template:
    return Template(make, frozenset(needs.split()), flow)


TEMPLATES = (
    _t(t_vm_write, "mem"), _t(t_vm_read, "mem"), _t(t_vm_try, "mem"), _t(t_vm_step, "mem"),
    _t(t_vm_fetch, "mem oracle"), _t(t_vm_pull, "mem oracle"), _t(t_k_push, "mem", ("KServ", "VM")),
    _t(t_k_io, "mem oracle", ("KServ", "VM")), _t(t_vm_export, "mem kd", ("VM", "KServ")),
    _t(t_vm_export, "mem kr", ("VM", "KServ")),
    _t(t_k_set, "kd"), _t(t_k_set, "kr"), _t(t_k_get, "kd"), _t(t_k_get, "kr"), _t(t_k_fetch, "kd oracle"),
    _t(t_k_fetch, "kr oracle"), _t(t_k_branch, "kd"), _t(t_k_branch, "kr"),
    _t(t_run, "mode"), _t(t_toggle, "mode"), _t(t_mode_set, "mode"),
    _t(t_give, "pages", ("KServ", "VM")), _t(t_page_write, "pages"), _t(t_page_read, "pages"),
    _t(t_page_kwrite, "pages"), _t(t_release, "pages", ("VM", "KServ")), _t(t_page_use, "pages"),
    _t(t_vm_share, "mem", ("VM", "VM")), _t(t_k_mark, "tab"), _t(t_vm_mark, "tab"),
    _t(t_cur_write, "cur"), _t(t_cur_read, "cur"), _t(t_schedule, "cur", ("KServ", "VM")),
    _t(t_dev_set, "dev"), _t(t_dev_get, "dev"), _t(t_k_to_dev, "dev kd", ("KServ", "Dev")),
)


def choose_ops(g: Gen, count: int) -> list[Op]:
    """`count` operations whose features are present; one needing a flow the policy lacks is a
    mutation (a leak), allowed rarely."""
    f = g.cfg.features
    usable = [t for t in TEMPLATES if t.needs <= f]
    fine = [t for t in usable if t.flow is None or g.cfg.flow(*t.flow)]
    ops: list[Op] = []
    while len(ops) < count and fine:
        pool = usable if g.chance(8) else fine
        t = g.pick(pool)
        op = t.make(g)
        if any(o.name == op.name for o in ops):
            fine = [x for x in fine if x is not t]
            continue
        if t.flow is not None and not g.cfg.flow(*t.flow):
            g.mutations.append(f"flow-less op {op.name}")
        ops.append(op)
    return ops


# ---------------------------------------------------------------- fields, init, invariants, views

def skeleton(g: Gen, name: str) -> LayerSpec:
    cfg, f = g.cfg, g.cfg.features
    fields: list[tuple[str, str]] = []
    init: list[Ex] = []
    invariants: list[Ex] = []
    view: dict[str, list[Obs]] = {head: [] for head in ("KServ", "VM(v)") + (("Dev",) if cfg.dev else ())}
    if "mem" in f:
        fields.append(("mem", "map[bv[1]] -> word"))
        if "mode" in f and g.chance(30):
            view["VM(v)"].append(Obs(Acc("mem", "v"), where=App("({0} != B)", (Acc("mode", "v"),))))
        else:
            view["VM(v)"].append(Obs(Acc("mem", "v")))
        if g.chance(30):
            init.append(App("(forall i: bv[1]. {0} == 0)", (Acc("mem", "i"),)))
    if "kd" in f:
        fields.append(("kd", "word"))
        view["KServ"].append(Obs(Acc("kd")))
        if g.chance(30):
            init.append(App("({0} == 0)", (Acc("kd"),)))
    if "kr" in f:
        fields.append(("kr", "rec"))
        view["KServ"] += [Obs(Acc("kr"))] if g.chance(50) else [Obs(Acc("kr", member="a")), Obs(Acc("kr", member="b"))]
    if "mode" in f:
        _mode(g, fields, init, invariants, view)
    if "pages" in f:
        _pages(g, fields, init, invariants, view)
    if "cur" in f:
        fields.append(("cur", "bv[1]"))
        view["VM(v)"].append(Obs(App("({0} == v)", (Acc("cur"),))))
        if g.chance(30):
            view["KServ"].append(Obs(Acc("cur")))
    if "tab" in f:
        fields.append(("tab", "map[bv[2]] -> bool"))
        view["KServ"].append(Obs(Acc("tab", "i"), "i: bv[2]", App("(i < 2)")))
        view["VM(v)"].append(Obs(Acc("tab", "i"), "i: bv[2]", App("(i == (zext(v, 2) + 2))")))
        if g.chance(40):
            init.append(App("(forall i: bv[2]. i < 2 ==> !{0})", (Acc("tab", "i"),)))
    if "dev" in f:
        fields.append(("dbox", "bool"))
        view["Dev"].append(Obs(Acc("dbox")))
    return LayerSpec(name, fields, init, invariants, view, choose_ops(g, g.between(2, 3)))


def _mode(g: Gen, fields: list[tuple[str, str]], init: list[Ex], invariants: list[Ex],
          view: dict[str, list[Obs]]) -> None:
    fields.append(("mode", "map[bv[1]] -> col"))
    view["VM(v)"].append(Obs(Acc("mode", "v")))
    if g.cfg.flow("VM", "KServ") and g.chance(50):
        view["KServ"].append(Obs(Acc("mode", "i"), "i: bv[1]"))
    if "C" in g.cfg.colors or g.chance(40):
        init.append(App("(forall i: bv[1]. {0} == A)", (Acc("mode", "i"),)))
    if "C" in g.cfg.colors:
        invariants.append(App("(forall i: bv[1]. {0} != C)", (Acc("mode", "i"),)))


def _pages(g: Gen, fields: list[tuple[str, str]], init: list[Ex], invariants: list[Ex],
           view: dict[str, list[Obs]]) -> None:
    fields += [("owner", "map[bool] -> principal"), ("pm", "map[bool] -> word")]
    for head, who in (("KServ", "KServ"), ("VM(v)", "VM(v)")):
        view[head] += [Obs(_owned("p", who), "p: bool"), Obs(Acc("pm", "p"), "p: bool", _owned("p", who))]
    if g.cfg.dev or g.chance(60):
        init.append(App("(forall p: bool. {0} == KServ && {1} == 0)", (Acc("owner", "p"), Acc("pm", "p"))))
    if g.cfg.dev:
        invariants.append(App("(forall p: bool. {0} != Dev)", (Acc("owner", "p"),)))
    elif g.chance(30):
        invariants.append(App("(exists p: bool. {0} == {0})", (Acc("owner", "p"),)))


# ---------------------------------------------------------------- mutations

def _stmts(body: tuple[Stmt, ...]) -> list[Stmt]:
    out: list[Stmt] = []
    for s in body:
        out.append(s)
        if isinstance(s, If):
            out += _stmts(s.then) + _stmts(s.other)
    return out


def _replace_stmt(body: tuple[Stmt, ...], old: Stmt, new: Stmt | None) -> tuple[Stmt, ...]:
    out: list[Stmt] = []
    for s in body:
        if s is old:
            if new is not None:
                out.append(new)
            continue
        if isinstance(s, If):
            s = If(s.cond, _replace_stmt(s.then, old, new), _replace_stmt(s.other, old, new))
        out.append(s)
    return tuple(out)


def _map_ex(e: Ex, fn: Callable[[Ex], Ex]) -> Ex:
    if isinstance(e, Acc):
        e = Acc(e.field, None if e.index is None else _map_ex(e.index, fn), e.member)
    elif isinstance(e, App):
        e = App(e.fmt, tuple(_map_ex(a, fn) for a in e.args))
    return fn(e)


def _map_stmt(s: Stmt, fn: Callable[[Ex], Ex]) -> Stmt:
    def acc(a: Acc) -> Acc:
        out = _map_ex(a, fn)
        return out if isinstance(out, Acc) else a
    if isinstance(s, Let):
        return Let(s.name, s.type, _map_ex(s.value, fn))
    if isinstance(s, Set):
        return Set(acc(s.target), _map_ex(s.value, fn), s.tag)
    if isinstance(s, Read):
        return Read(s.target if isinstance(s.target, str) else acc(s.target), s.oracle, s.who)
    if isinstance(s, Check):
        return Check(_map_ex(s.cond, fn), None if s.otherwise is None else _map_ex(s.otherwise, fn))
    if isinstance(s, If):
        return If(_map_ex(s.cond, fn), tuple(_map_stmt(t, fn) for t in s.then),
                  tuple(_map_stmt(t, fn) for t in s.other))
    if isinstance(s, Ret):
        return Ret(_map_ex(s.value, fn), s.tag)
    return s


KEYS = {"mem": ("0", "1", "(~v)"), "mode": ("0", "1", "(~v)"), "owner": ("true", "false", "(!p)"),
        "pm": ("true", "false", "(!p)"), "tab": ("0", "1", "2", "3")}


def m_swap_index(g: Gen, layer: LayerSpec) -> bool:
    if not layer.ops:
        return False
    op = g.pick(layer.ops)
    sites: list[Acc] = []

    def collect(e: Ex) -> Ex:
        if isinstance(e, Acc) and e.field in KEYS and e.index is not None:
            sites.append(e)
        return e
    body = tuple(_map_stmt(s, collect) for s in op.body)
    if not sites:
        return False
    target = g.pick(sites)
    index = g.pick([k for k in KEYS[target.field] if k != target.index and (k != "(~v)" or _has(op, "v"))
                    and (k != "(!p)" or _has(op, "p"))] or ["0"])
    seen = [0]

    def swap(e: Ex) -> Ex:
        if isinstance(e, Acc) and e == target:
            seen[0] += 1
            if seen[0] == 1:
                return Acc(e.field, index, e.member)
        return e
    _replace_op(layer, op, replace(op, body=tuple(_map_stmt(s, swap) for s in body)))
    g.mutations.append(f"swap index in {layer.name}.{op.name}")
    return True


def _has(op: Op, param: str) -> bool:
    return any(n == param for n, _ in op.params)


def _replace_op(layer: LayerSpec, old: Op, new: Op) -> None:
    layer.ops = [new if o is old else o for o in layer.ops]


def m_drop(g: Gen, layer: LayerSpec) -> bool:
    if not layer.ops:
        return False
    op = g.pick(layer.ops)
    sites = [s for s in _stmts(op.body) if isinstance(s, (Check, Set))]
    if not sites:
        return False
    s = g.pick(sites)
    _replace_op(layer, op, replace(op, body=_replace_stmt(op.body, s, None)))
    g.mutations.append(f"drop a {type(s).__name__.lower()} in {layer.name}.{op.name}")
    return True


def m_leak(g: Gen, layer: LayerSpec) -> bool:
    if not layer.ops:
        return False
    op = g.pick(layer.ops)
    sites = [s for s in _stmts(op.body) if isinstance(s, (Set, Ret)) and s.tag != "rec"]
    foreign = g.foreign(op.owner)
    if not sites or not foreign:
        return False
    s = g.pick(sites)
    assert isinstance(s, (Set, Ret))
    extra = g.expr(s.tag, foreign, 1, True)
    new: Stmt = Set(s.target, g.mixed(s.tag, s.value, extra), s.tag) if isinstance(s, Set) \
        else Ret(g.mixed(s.tag, s.value, extra), s.tag)
    _replace_op(layer, op, replace(op, body=_replace_stmt(op.body, s, new)))
    g.mutations.append(f"leak into {layer.name}.{op.name}")
    return True


def m_dom(g: Gen, layer: LayerSpec) -> bool:
    if not layer.ops:
        return False
    op = g.pick(layer.ops)
    choices = ["KServ", "VM(0)", "VM(1)"] + (["Dev"] if g.cfg.dev else []) + (["VM((~v))"] if _has(op, "v") else [])
    dom = g.pick([c for c in choices if c != op.dom])
    _replace_op(layer, op, replace(op, dom=dom))
    g.mutations.append(f"by {dom} in {layer.name}.{op.name}")
    return True


def m_observe_more(g: Gen, layer: LayerSpec) -> bool:
    head = g.pick(list(layer.observe))
    owner = {"KServ": "k", "VM(v)": "vm", "Dev": "dev"}[head]  # (a `page` operation has no head)
    foreign = [a for a, _ in g.foreign(owner) if not (isinstance(a, App) and "counter" in a.fmt)]  # foreign-counter
    if not foreign:
        return False
    layer.observe[head] = layer.observe[head] + [Obs(g.pick(foreign))]
    g.mutations.append(f"{head} sees more in {layer.name}")
    return True


def m_observe_less(g: Gen, layer: LayerSpec) -> bool:
    heads = [h for h, comps in layer.observe.items() if comps]
    if not heads:
        return False
    head = g.pick(heads)
    comps = layer.observe[head]
    c = g.pick(comps)
    if c.where is not None and g.chance(50):
        layer.observe[head] = [Obs(c.expr, c.binders) if x is c else x for x in comps]
        g.mutations.append(f"{head} sees unmasked in {layer.name}")
    else:
        layer.observe[head] = [x for x in comps if x is not c]
        g.mutations.append(f"{head} sees less in {layer.name}")
    return True


def m_no_init(g: Gen, layer: LayerSpec) -> bool:
    if not layer.init:
        return False
    layer.init = layer.init[1:]
    g.mutations.append(f"drop init in {layer.name}")
    return True


Mutation = Callable[[Gen, LayerSpec], bool]
MUTATIONS: tuple[Mutation, ...] = (m_swap_index, m_drop, m_leak, m_dom, m_observe_more, m_observe_less, m_no_init)


def mutate(g: Gen, layer: LayerSpec, kinds: Sequence[Mutation], percent: int) -> None:
    """With probability `percent`, one mutation (and with a small one, a second)."""
    rounds = int(g.chance(percent)) + int(g.chance(percent // 5))
    for _ in range(rounds):
        for _attempt in range(3):
            if g.pick(kinds)(g, layer):
                break


# ---------------------------------------------------------------- refinement

def choose_rep(g: Gen, type_text: str, wrap: bool) -> Rep:
    """A representation of a field of type `type_text` one layer down (`wrap`: wrapping it in a
    record with a ghost bit is allowed; a stack has at most one, as each multiplies its states)."""
    keyed = type_text.startswith("map[")
    value = type_text.split(" -> ", 1)[1] if keyed else type_text
    kinds = ["same"]
    if value in ("word", "bv[1]"):
        kinds.append("xor")
    if value == "bool" and not keyed:
        kinds.append("neg")
    two_keys = type_text.startswith(("map[bv[1]]", "map[bool]"))
    if wrap and two_keys and not value.startswith("record") and value not in ("principal", "rec"):
        kinds.append("wrap")
    kind = g.pick(kinds)
    return Rep(kind, "K1" if value == "bv[1]" or g.cfg.width == 1 else "K2", kind == "wrap" and g.chance(50))


def abstraction_line(upper: str, lower: str, type_text: str, rep: Rep) -> str:
    keyed = type_text.startswith("map[") and rep.kind in ("xor", "wrap")
    key = type_text[4:type_text.index("] -> ")] if keyed else ""
    lhs = f"{upper}[k: {key}]" if keyed else upper
    return f"{lhs} = {rep.read_of(lower + ('[k]' if keyed else ''))}"


def bind_choice(g: Gen, op: Op, layout: Lowered) -> tuple[Ex, Ex | None]:
    """A value for a `bind` in `op` that its source sees, and the source."""
    cfg = g.cfg
    if cfg.oracle_type == "rec":
        return Acc("kr"), None
    if cfg.oracle_type == "col":
        idx = "v" if _has(op, "v") else "0"
        mine: list[Ex] = [g.literal("col")]
        mine += [Acc("mode", idx)] if "mode" in cfg.features else []
        return g.pick(mine), ("KServ" if cfg.oracle_source == "KServ" else f"VM({idx})")
    values: list[Ex] = [g.literal(cfg.word)]
    values += [n for n, t in op.params if t == "word"]
    if cfg.oracle_source == "KServ":
        values += [a for a, t in g.kfields() if t == cfg.word]
        return g.pick(values), (None if g.chance(50) else "KServ")
    idx = "v" if _has(op, "v") else "0"
    values += [Acc("mem", idx)] if "mem" in cfg.features else []
    return g.pick(values), f"VM({idx})"


def lower_body(g: Gen, op: Op, layout: Lowered, bound: bool) -> tuple[Stmt, ...]:
    """The body one layer down: every read of the oracle replaced by a bind when this layer
    binds, and a read into a field stored masked or negated made a whole right-hand side."""
    def walk(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        for s in body:
            if isinstance(s, Read) and bound:
                value, source = bind_choice(g, op, layout)
                out.append(Bind(s.oracle, value, s.who, source))
                tag = {"rec": "rec", "col": "col"}.get(g.cfg.oracle_type, g.cfg.word)
                out.append(Let(s.target, "word" if tag.startswith("bv") else tag, value)
                           if isinstance(s.target, str) else Set(s.target, value, tag))
            elif isinstance(s, Read) and isinstance(s.target, Acc) \
                    and any(r.kind in ("xor", "neg") for r in layout.chain(s.target.field)):
                out += [Read("rv", s.oracle, s.who), Set(s.target, "rv", "col" if g.cfg.oracle_type == "col" else g.cfg.word)]
            elif isinstance(s, If):
                out.append(If(s.cond, walk(s.then), walk(s.other)))
            else:
                out.append(s)
        return tuple(out)
    return walk(op.body)


def lower_op(g: Gen, op: Op, layout: Lowered, bound: bool, ghost: str) -> Op:
    body = lower_body(g, op, layout, bound)
    if _has(op, "x") and g.chance(35):  # the argument computed from the state: R-ARGS
        idx: Ex = Acc("cur") if op.owner == "cur" else "v" if _has(op, "v") else "0"
        arg = g.expr(g.cfg.word, g.own(op.owner, idx), 1)
        params = tuple(p for p in op.params if p[0] != "x")
        args = ", ".join(render(arg, layout) if n == "x" else n for n, _ in op.params)
        return replace(op, name=op.name + "_i", params=params, body=(Let("x", "word", arg),) + body,
                       implements=f"{op.name}({args})")
    if g.chance(15):
        body = (Check(App("({0} == 0)", (Acc(ghost),)), None),) + body  # the lower layer halts more
    return replace(op, body=body, implements=None)


LAYER_NAMES = ("Spec", "Impl", "Low")


def refine(g: Gen, upper: LayerSpec, levels: Levels, depth: int) -> LayerSpec:
    """Layer `depth` of the stack, refining `upper` (layer depth - 1)."""
    above = upper.layout if isinstance(upper.layout, Lowered) else None
    types = {f: _type_at(upper, levels, f, depth - 1) for f in levels.born}
    reps: dict[str, Rep] = {}
    for f, t in types.items():
        wrapped = any(r.kind == "wrap" for level in levels.reps + [reps] for r in level.values())
        reps[f] = choose_rep(g, t, not wrapped)
    levels.reps.append(reps)
    ghost = "hits" if depth == 1 else f"hits{depth}"
    levels.born[ghost] = depth
    layout = Lowered(levels, depth)
    fields = [(levels.name(f, depth), levels.reps[depth - 1][f].lowered(t)) for f, t in types.items()]
    fields.append((ghost, "bv[1]"))
    abstraction = [abstraction_line(levels.name(f, depth - 1), levels.name(f, depth), t, levels.reps[depth - 1][f])
                   for f, t in types.items()]
    binds_above = any(isinstance(s, Bind) for op in upper.ops for s in _stmts(op.body))
    bindable = g.cfg.oracle_type == "word" or g.cfg.oracle_source == "KServ"  # a rec value: only kr
    bound = "oracle" in g.cfg.features and bindable and not binds_above and g.chance(60)
    ops = [lower_op(g, op, layout, bound, ghost) for op in upper.ops if not g.chance(5)]
    if ops and g.chance(50):
        ops.append(Op("tick" if depth == 1 else f"tick{depth}", (), "KServ", None,
                      (Set(Acc(ghost), App("({0} + 1)", (Acc(ghost),)), "bv1"),), "k"))
    low = LayerSpec(LAYER_NAMES[depth], fields, list(upper.init), list(upper.invariants),
                    {h: list(c) for h, c in upper.observe.items()}, ops, upper.name, abstraction, layout)
    if g.chance(30):
        low.init.append(App("({0} == 0)", (Acc(ghost),)))
    mutate(g, low, LOWER_MUTATIONS, 40 if above is None else 30)
    return low


def _type_at(layer: LayerSpec, levels: Levels, f: str, level: int) -> str:
    return dict(layer.fields)[levels.name(f, level)]


def m_stutter_touches(g: Gen, layer: LayerSpec) -> bool:
    tick = next((o for o in layer.ops if o.name.startswith("tick")), None)
    targets = g.kfields() + ([(Acc("mem", "0"), g.cfg.word)] if "mem" in g.cfg.features else [])
    if tick is None or not targets:
        return False
    target, tag = g.pick(targets)
    _replace_op(layer, tick, replace(tick, body=tick.body + (Set(target, g.literal(tag), tag),)))
    g.mutations.append("stutter op changes the abstract state")
    return True


def m_ghost_seen(g: Gen, layer: LayerSpec) -> bool:
    head = g.pick(list(layer.observe))
    ghosts = [f for f, _ in layer.fields if f.startswith("hits")]
    layer.observe[head] = layer.observe[head] + [Obs(Acc(g.pick(ghosts)))]
    g.mutations.append(f"{head} sees the ghost field")
    return True


def m_bind_source(g: Gen, layer: LayerSpec) -> bool:
    sites = [(op, s) for op in layer.ops for s in _stmts(op.body) if isinstance(s, Bind)]
    if not sites or g.cfg.oracle_type == "rec":
        return False
    op, s = g.pick(sites)
    # a value of the oracle's type (an enum oracle's value is no word)
    foreign = [a for a, t in g.foreign(op.owner) if t == g.cfg.word] if g.cfg.oracle_type == "word" else []
    if g.cfg.oracle_source == "VM" and g.chance(50):
        new = Bind(s.oracle, s.value, s.who, g.pick(("VM(0)", "VM(1)")))
    elif foreign:
        new = Bind(s.oracle, g.pick(foreign), s.who, s.source)
    else:
        return False
    _replace_op(layer, op, replace(op, body=_replace_stmt(op.body, s, new)))
    g.mutations.append(f"bind changed in {op.name}")
    return True


LOWER_MUTATIONS: tuple[Mutation, ...] = (m_swap_index, m_drop, m_leak, m_dom, m_stutter_touches, m_ghost_seen,
                                         m_bind_source, m_observe_more)


# ---------------------------------------------------------------- the module

def prelude(g: Gen) -> list[str]:
    cfg = g.cfg
    out = [f"type word = bv[{cfg.width}]", f"type col = enum {{ {', '.join(cfg.colors)} }}",
           "const K1: bv[1] = 1", "const K2: bv[2] = 2", "principal KServ", "principal VM(v: bv[1])"]
    if "kr" in cfg.features:
        out.insert(2, "type rec = record { a: word, b: bool }")
    if cfg.dev:
        out.append("principal Dev")
    if cfg.flows:
        out.append("policy { " + "; ".join(f"{a} -> {b}" for a, b in cfg.flows) + " }")
    elif g.chance(50):
        out.append("policy isolation")
    if "oracle" in cfg.features:
        out.append(f"oracle o : {cfg.oracle_type} from {cfg.oracle_source}")
    return out


def generate(src: Source) -> str:
    """One model: a single layer, or (about two in five) a two-layer stack."""
    g = Gen(src)
    depth = 0 if not g.chance(40) else 1 if not g.chance(30) else 2
    spec = skeleton(g, "Spec" if depth else "L")
    mutate(g, spec, MUTATIONS, 50 if depth == 0 else 25)
    layers = [spec]
    levels = Levels(born={f: 0 for f, _ in spec.fields})
    for k in range(1, depth + 1):
        layers.append(refine(g, layers[-1], levels, k))
    kind = "single layer" if depth == 0 else f"stack of {depth + 1}"
    header = f"// generated: {kind}; mutations: {'; '.join(g.mutations) or 'none'}"
    return "\n".join([header] + prelude(g) + [render_layer(x) for x in layers]) + "\n"


@st.composite
def _models(draw: st.DrawFn) -> str:
    return generate(DrawSource(draw))


def models() -> st.SearchStrategy[str]:
    """Model texts, for @given."""
    return _models()


def random_model(seed: int | str) -> str:
    """The model of a seed (campaigns: `f"{seed}:{i}"`)."""
    return generate(RandomSource(random.Random(seed)))
