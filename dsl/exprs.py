"""Type checking and name resolution of expressions (AST -> typed IR)."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from microverify.dsl import ast, ir
from microverify.dsl.diagnostics import Diagnostic, error
from microverify.dsl.inline import Function, TooLarge, expanded, inline
from microverify.dsl.limits import MAX_BV_WIDTH, MAX_DEPTH, MAX_EXPANDED_NODES, MAX_SUGGESTION_WORK
from microverify.dsl.spans import Span
from microverify.dsl.types import (BOOL, COUNTER, PRINCIPAL, BVType, EnumType, MapType, RecordType,
                                   Type, has_map, is_scalar)


BROKEN = "broken"  # the kind of a local whose definition was rejected (reported there)


class CheckFailed(Exception):
    """Aborts checking of one expression or statement; its diagnostic is already recorded."""


@dataclass
class Globals:
    """Module-level names visible to every expression."""

    consts: dict[str, ir.Expr] = field(default_factory=dict)
    enum_members: dict[str, tuple[EnumType, int]] = field(default_factory=dict)
    principals: dict[str, ir.Principal] = field(default_factory=dict)
    oracles: dict[str, ir.Oracle] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # declared, but rejected: uses say nothing more
    type_names: set[str] = field(default_factory=set)  # the type aliases (a resize's width may name one)
    defs: dict[str, Function] = field(default_factory=dict)  # checked `def`s, inlined at calls
    configs: dict[str, ir.Config] = field(default_factory=dict)  # constants declared without a value
    # every constant and def of the module, where declared: a use before its declaration is
    # told so (they are declared in order, an imported file's where it is imported)
    declared: dict[str, Span] = field(default_factory=dict)


@dataclass
class Context:
    """Where an expression is checked."""

    globals: Globals
    fields: dict[str, Type]
    locals: dict[str, tuple[str, Type]]  # name -> (kind, type)
    in_body: bool  # inside an operation body (oracle reads allowed at statement level)
    observer: tuple[str, str | None] | None = None  # (principal, param) inside `observe`
    what: str = "a predicate"
    pure: bool = False  # a def's body, a constant, the policy: no state, oracle or counter

    def with_locals(self, extra: dict[str, tuple[str, Type]]) -> Context:
        return Context(self.globals, self.fields, {**self.locals, **extra}, self.in_body,
                       self.observer, self.what, self.pure)


_ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "udiv", "%": "urem", "&": "band", "|": "bor",
          "^": "bxor", "<<": "shl", ">>": "lshr"}
_ORDER = {"<": "ult", "<=": "ule", ">": "ugt", ">=": "uge"}
_LOGIC = {"&&": "and", "||": "or", "==>": "implies", "<==>": "iff"}
_SIGNED = {"slt": "slt", "sle": "sle", "sgt": "sgt", "sge": "sge"}
_SIGNED_ARITH = {"sdiv": "sdiv", "srem": "srem", "ashr": "ashr"}
_RESIZE = ("zext", "sext", "trunc")
BUILTINS = ("counter", *_SIGNED, *_SIGNED_ARITH, *_RESIZE, "concat", "extract")


class ExprChecker:
    def __init__(self, diagnostics: list[Diagnostic], resolve_type: Callable[[ast.TypeExpr], Type]) -> None:
        self.diagnostics = diagnostics
        self.resolve_type = resolve_type
        self.level = 0  # how many `check` calls are open: the outermost bounds the expansion
        self.expanding = False  # a def or constant was expanded in the outermost `check` open
        self.counted: dict[int, tuple[object, int, int]] = {}  # inline.expanded's, kept for the run
        self.expansions = 0  # nodes of all the expressions checked so far that expand something
        self.suggestion_work_left = MAX_SUGGESTION_WORK  # for `did you mean` notes

    def fail(self, code: str, span: Span, message: str, *notes: str) -> CheckFailed:
        self.diagnostics.append(error(code, span, message, *notes))
        return CheckFailed()

    def did_you_mean(self, name: str, candidates: Iterable[str]) -> tuple[str, ...]:
        """A note naming the candidate closest to `name`, if one is close; none once the file's
        budget for such notes (MAX_SUGGESTION_WORK) is spent (then in constant time: `candidates`
        may be lazy, and is not read)."""
        if self.suggestion_work_left <= 0:
            return ()
        names = list(candidates)
        work = len(name) * sum(map(len, names))
        if work > self.suggestion_work_left:
            self.suggestion_work_left = 0
            return ()
        self.suggestion_work_left -= work
        close = difflib.get_close_matches(name, names, n=1)
        return (f"did you mean `{close[0]}`?",) if close else ()

    def expect(self, got: Type, want: Type, span: Span) -> None:
        if got == want:
            return
        if isinstance(got, BVType) and isinstance(want, BVType):
            raise self.fail("width-mismatch", span, f"expected {want}, found {got}")
        raise self.fail("type-mismatch", span, f"expected {want}, found {got}")

    # ------------------------------------------------------------------ entry points
    def check(self, e: ast.Expr, ctx: Context, want: Type | None = None) -> ir.Expr:
        """Check `e`; `want` is the expected type, needed to give integer literals a width."""
        if isinstance(e, ast.ReadOracle):
            if not ctx.in_body:
                raise self.fail("oracle-in-predicate", e.span,
                                f"oracle `{e.oracle}` is read in {ctx.what}; oracles may only be "
                                "read in operation bodies")
            raise self.fail("oracle-read-position", e.span,
                            "an oracle read must be the whole right-hand side of `let` or `:=`")
        self.level += 1
        try:
            result = self._check(e, ctx, want)
        finally:
            self.level -= 1
        if want is not None:
            self.expect(result.type, want, e.span)
        if self.level == 0 and self.expanding:  # else it is as written: within the parser's limits
            self.expanding = False
            self.bounded(result, e.span)
        return result

    def bounded(self, result: ir.Expr, span: Span) -> None:
        """The limits on a whole expression with its defs and constants expanded (dsl/limits.py)."""
        if self.expansions > MAX_EXPANDED_NODES:  # reported at the expression that went past
            raise CheckFailed()
        size, depth = expanded(result, self.counted)
        self.expansions += size
        if size > MAX_EXPANDED_NODES:
            raise self.fail("too-large", span, f"this expression expands to more than {MAX_EXPANDED_NODES:,} nodes "
                                               "(defs are inlined at every call, constants at every use)")
        if self.expansions > MAX_EXPANDED_NODES:  # every pass after this one walks each of them
            raise self.fail("too-large", span, f"with this expression, the expressions of the file that expand "
                                               f"defs or constants come to more than {MAX_EXPANDED_NODES:,} nodes")
        if depth > MAX_DEPTH:
            raise self.fail("too-deep", span, f"this expression nests more than {MAX_DEPTH} levels deep once its "
                                              "defs and constants are expanded")

    def check_read(self, e: ast.ReadOracle, ctx: Context, want: Type | None) -> ir.ReadOracle:
        oracle = ctx.globals.oracles.get(e.oracle)
        if e.oracle in ctx.globals.broken:
            raise CheckFailed()
        if oracle is None:
            raise self.unknown(e.oracle, e.oracle_span, ctx.globals.oracles, "oracle")
        principal = None
        if e.principal is not None:
            principal = self.check(e.principal, ctx, PRINCIPAL)
        if want is not None:
            self.expect(oracle.type, want, e.span)
        return ir.ReadOracle(e.oracle, principal, oracle.type, e.span)

    def unknown(self, name: str, span: Span, candidates: Iterable[str], what: str = "name",
                declared: Span | None = None) -> CheckFailed:
        """`declared`: where the constant or def of that name is declared, further on."""
        if declared is not None and (span.file == f"<-D {name}>" or declared.file == span.file and
                                     (declared.line, declared.column) <= (span.line, span.column)):
            # inside its own declaration, or in the -D that gives its value
            return self.fail("unknown-name", span, f"`{name}` is used in its own declaration",
                             "a constant or a def cannot be defined by itself")
        if declared is not None:
            where = "further on in this file" if declared.file == span.file else \
                "after the declaration this -D sets" if span.file.startswith("<-D ") else \
                f"in {declared.file}, which comes after {span.file} where an `import` includes it (a file is " \
                f"included where it is imported, in order): declare or import it before the `import` of {span.file}"
            return self.fail("unknown-name", span, f"`{name}` is used before it is declared",
                             f"it is declared at {declared}, {where}: a constant or a def must be declared "
                             "before it is used")
        return self.fail("unknown-name", span, f"unknown {what} `{name}`", *self.did_you_mean(name, candidates))

    # ------------------------------------------------------------------ dispatch
    def _check(self, e: ast.Expr, ctx: Context, want: Type | None) -> ir.Expr:
        if isinstance(e, ast.IntLit):
            return self.int_lit(e, want)
        if isinstance(e, ast.BoolLit):
            return ir.Lit(e.value, BOOL, e.span)
        if isinstance(e, ast.Name):
            return self.name(e, ctx)
        if isinstance(e, ast.Call):
            return self.call(e, ctx)
        if isinstance(e, ast.Index):
            return self.index(e, ctx)
        if isinstance(e, ast.FieldGet):
            return self.field_get(e, ctx)
        if isinstance(e, ast.Unary):
            return self.unary(e, ctx, want)
        if isinstance(e, ast.Binary):
            return self.binary(e, ctx, want)
        if isinstance(e, ast.Ite):
            cond = self.check(e.cond, ctx, BOOL)
            then, other = self.pair(e.then, e.other, ctx, want)
            return ir.Ite(cond, then, other, then.type, e.span)
        if isinstance(e, ast.Quant):
            return self.quant(e, ctx)
        raise AssertionError(f"unhandled expression node {type(e).__name__}")

    def int_lit(self, e: ast.IntLit, want: Type | None) -> ir.Lit:
        if want is None:
            raise self.fail("cannot-infer", e.span,
                            "cannot infer the width of this integer literal",
                            "give it a typed context, e.g. compare it with a bv[N] value")
        if not isinstance(want, BVType):
            raise self.fail("type-mismatch", e.span, f"expected {want}, found an integer literal")
        if e.value >= 1 << want.width:
            raise self.fail("literal-range", e.span, f"{_short(e.value)} does not fit in {want}")
        return ir.Lit(e.value, want, e.span)

    def name(self, e: ast.Name, ctx: Context) -> ir.Expr:
        if e.name in ctx.locals:
            kind, t = ctx.locals[e.name]
            if kind == BROKEN:
                raise CheckFailed()
            return ir.Ref(e.name, kind, t, e.span)
        if e.name in ctx.fields:
            return ir.Ref(e.name, "field", ctx.fields[e.name], e.span)
        g = ctx.globals
        if e.name in g.broken:  # rejected where it is declared (a field clashing with a constant too)
            raise CheckFailed()
        if e.name in g.consts:
            value = g.consts[e.name]
            self.expanding |= not isinstance(value, ir.Lit)  # a literal grows nothing
            return value
        if e.name in g.configs:
            return ir.Ref(e.name, "config", g.configs[e.name].type, e.span)
        if e.name in g.enum_members:
            enum, idx = g.enum_members[e.name]
            return ir.EnumVal(idx, enum, e.span)
        if e.name in g.principals:
            p = g.principals[e.name]
            if p.param is not None:
                raise self.fail("type-mismatch", e.span,
                                f"`{e.name}` is a principal family; write `{e.name}(...)`")
            return ir.PrincipalVal(e.name, None, PRINCIPAL, e.span)
        candidates = itertools.chain(ctx.locals, ctx.fields, g.consts, g.configs, g.enum_members, g.principals)
        raise self.unknown(e.name, e.span, candidates, declared=g.declared.get(e.name))

    def call(self, e: ast.Call, ctx: Context) -> ir.Expr:
        g = ctx.globals
        if e.func in g.principals:
            p = g.principals[e.func]
            if p.param_type is None:
                raise self.fail("arity", e.span, f"principal `{e.func}` takes no parameter")
            self.arity(e, 1)
            arg = self.check(e.args[0], ctx, p.param_type)
            return ir.PrincipalVal(e.func, arg, PRINCIPAL, e.span)
        if e.func == "counter":
            return self.counter(e, ctx)
        if e.func in _SIGNED or e.func in _SIGNED_ARITH:
            self.arity(e, 2)
            left, right = self.pair(e.args[0], e.args[1], ctx, None)
            if not isinstance(left.type, BVType):
                raise self.fail("type-mismatch", e.span, f"`{e.func}` takes bit-vectors, found {left.type}")
            rtype = BOOL if e.func in _SIGNED else left.type
            return ir.Binary(e.func, left, right, rtype, e.span)
        if e.func in _RESIZE:
            self.arity(e, 2)
            operand = self.check(e.args[0], ctx)
            width_arg = e.args[1]
            if isinstance(width_arg, ast.Name) and width_arg.name in ctx.globals.type_names:
                target = self.resolve_type(ast.TName(width_arg.name, width_arg.span))
                if not isinstance(target, BVType):
                    raise self.fail("type-mismatch", width_arg.span,
                                    f"`{e.func}(e, T)` takes a bit-vector type, and `{width_arg.name}` is {target}")
                width_arg = ast.IntLit(target.width, width_arg.span)
            if not isinstance(operand.type, BVType) or not isinstance(width_arg, ast.IntLit):
                raise self.fail("type-mismatch", e.span,
                                f"`{e.func}(e, N)` takes a bit-vector and a width: a literal, or the name of a "
                                "bit-vector type")
            width = width_arg.value
            if width > MAX_BV_WIDTH:
                raise self.fail("bad-type", width_arg.span,
                                f"`{e.func}` cannot make bv[{_short(width)}]: bit-vector width must be "
                                f"1..{MAX_BV_WIDTH}")
            grows = e.func != "trunc"
            if width < 1 or (grows and width < operand.type.width) or (not grows and width > operand.type.width):
                raise self.fail("width-mismatch", width_arg.span,
                                f"`{e.func}` cannot turn {operand.type} into bv[{width}]")
            return ir.Resize(e.func, operand, BVType(width), e.span)
        if e.func in g.defs:
            fn = g.defs[e.func]
            if len(e.args) != len(fn.params):
                raise self.fail("arity", e.span, f"`{e.func}` takes {len(fn.params)} argument(s), found {len(e.args)}",
                                f"declared at {fn.span}")
            args = tuple(self.check(a, ctx, t) for a, (_, t) in zip(e.args, fn.params))
            self.expanding = True
            try:
                return inline(fn, args, e.span, self.counted)
            except TooLarge as exc:
                raise self.fail("too-large", e.span, str(exc)) from None
        if e.func == "concat":
            return self.concat(e, ctx)
        if e.func == "extract":
            return self.extract(e, ctx)
        if e.func in g.broken:  # a def or principal family rejected where it is declared
            raise CheckFailed()
        candidates = itertools.chain(g.principals, g.defs, BUILTINS)
        raise self.unknown(e.func, e.func_span, candidates, "function or principal family", g.declared.get(e.func))

    def concat(self, e: ast.Call, ctx: Context) -> ir.Expr:
        """`concat(a, b, ...)`: the bits of a, then of b, ... (a's are the high ones)."""
        if len(e.args) < 2:
            raise self.fail("arity", e.span, f"`concat` takes two or more bit-vectors, found {len(e.args)}")
        parts = [self.check(a, ctx) for a in e.args]
        for part in parts:
            if not isinstance(part.type, BVType):
                raise self.fail("type-mismatch", part.span, f"`concat` takes bit-vectors, found {part.type}")
        result = parts[0]
        for part in parts[1:]:
            assert isinstance(result.type, BVType) and isinstance(part.type, BVType)
            width = result.type.width + part.type.width
            if width > MAX_BV_WIDTH:
                raise self.fail("bad-type", e.span, f"`concat` cannot make bv[{width}]: bit-vector width "
                                                    f"must be 1..{MAX_BV_WIDTH}")
            result = ir.Binary("concat", result, part, BVType(width), e.span)
        return result

    def extract(self, e: ast.Call, ctx: Context) -> ir.Expr:
        """`extract(x, hi, lo)`: bits hi down to lo of x, a bv[hi - lo + 1]; hi and lo literals."""
        self.arity(e, 3)
        operand = self.check(e.args[0], ctx)
        hi, lo = e.args[1], e.args[2]
        if not isinstance(operand.type, BVType) or not isinstance(hi, ast.IntLit) or not isinstance(lo, ast.IntLit):
            raise self.fail("type-mismatch", e.span, "`extract(x, hi, lo)` takes a bit-vector and two literal bit "
                                                     "positions")
        if not lo.value <= hi.value < operand.type.width:
            raise self.fail("width-mismatch", e.span,
                            f"`extract` needs 0 <= lo <= hi < {operand.type.width} for {operand.type}, "
                            f"found hi = {hi.value}, lo = {lo.value}")
        return ir.Resize("extract", operand, BVType(hi.value - lo.value + 1), e.span, lo.value)

    def arity(self, e: ast.Call, n: int) -> None:
        if len(e.args) != n:
            raise self.fail("arity", e.span, f"`{e.func}` takes {n} argument(s), found {len(e.args)}")

    def counter(self, e: ast.Call, ctx: Context) -> ir.Counter:
        if ctx.pure:
            raise self.fail("unsupported", e.span, f"{ctx.what} mentions an oracle counter, which is state; "
                                                   + ("a def is pure: pass the counter as an argument"
                                                      if ctx.what.startswith("the def") else f"{ctx.what} cannot read the state"))
        self.arity(e, 2)
        oname = e.args[0]
        if not isinstance(oname, ast.Name) or oname.name not in ctx.globals.oracles:
            raise self.fail("unknown-name", e.args[0].span, "`counter(o, P)` takes an oracle name first")
        principal = self.check(e.args[1], ctx, PRINCIPAL)
        if ctx.observer is not None and not _is_observer(principal, ctx.observer):
            who = ctx.observer[0] + (f"({ctx.observer[1]})" if ctx.observer[1] else "")
            raise self.fail("foreign-counter", e.span,
                            f"the observation of {who} mentions another principal's counter of "
                            f"oracle `{oname.name}`",
                            "a principal observes only its own oracle counters (added automatically)")
        return ir.Counter(oname.name, principal, COUNTER, e.span)

    def index(self, e: ast.Index, ctx: Context) -> ir.Index:
        base = self.check(e.base, ctx)
        if not isinstance(base.type, MapType):
            raise self.fail("type-mismatch", e.base.span, f"indexing a value of type {base.type}")
        idx = self.check(e.index, ctx, base.type.key)
        return ir.Index(base, idx, base.type.value, e.span)

    def field_get(self, e: ast.FieldGet, ctx: Context) -> ir.Field:
        base = self.check(e.base, ctx)
        if not isinstance(base.type, RecordType) or base.type.field(e.name) is None:
            raise self.fail("type-mismatch", e.span, f"{base.type} has no field `{e.name}`")
        ftype = base.type.field(e.name)
        assert ftype is not None
        return ir.Field(base, e.name, ftype, e.span)

    def unary(self, e: ast.Unary, ctx: Context, want: Type | None) -> ir.Unary:
        if e.op == "!":
            return ir.Unary("not", self.check(e.operand, ctx, BOOL), BOOL, e.span)
        operand = self.check(e.operand, ctx, want if isinstance(want, BVType) else None)
        if not isinstance(operand.type, BVType):
            raise self.fail("type-mismatch", e.span, f"`{e.op}` takes a bit-vector, found {operand.type}")
        return ir.Unary("neg" if e.op == "-" else "bnot", operand, operand.type, e.span)

    def pair(self, a: ast.Expr, b: ast.Expr, ctx: Context, want: Type | None) -> tuple[ir.Expr, ir.Expr]:
        """Check two operands of one type; a literal takes its width from the other side."""
        if _literal(a) and not _literal(b):
            right = self.check(b, ctx, want)
            return self.check(a, ctx, right.type), right
        left = self.check(a, ctx, want)
        return left, self.check(b, ctx, left.type)

    def binary(self, e: ast.Binary, ctx: Context, want: Type | None) -> ir.Binary:
        if e.op in _LOGIC:
            left, right = self.check(e.left, ctx, BOOL), self.check(e.right, ctx, BOOL)
            return ir.Binary(_LOGIC[e.op], left, right, BOOL, e.span)
        if e.op in ("==", "!="):
            left, right = self.pair(e.left, e.right, ctx, None)
            if has_map(left.type):
                raise self.fail("unsupported", e.span, "`==` on maps is not supported; compare entries")
            return ir.Binary("eq" if e.op == "==" else "ne", left, right, BOOL, e.span)
        if e.op in _ORDER:
            left, right = self.pair(e.left, e.right, ctx, None)
            if not isinstance(left.type, BVType):
                raise self.fail("type-mismatch", e.span, f"`{e.op}` compares bit-vectors, found {left.type}")
            return ir.Binary(_ORDER[e.op], left, right, BOOL, e.span)
        if e.op in _ARITH:
            left, right = self.pair(e.left, e.right, ctx, want if isinstance(want, BVType) else None)
            if not isinstance(left.type, BVType):
                raise self.fail("type-mismatch", e.span, f"`{e.op}` takes bit-vectors, found {left.type}")
            return ir.Binary(_ARITH[e.op], left, right, left.type, e.span)
        raise AssertionError(f"unhandled operator {e.op}")

    def quant(self, e: ast.Quant, ctx: Context) -> ir.Quant:
        binders: list[tuple[str, Type]] = []
        extra: dict[str, tuple[str, Type]] = {}
        for b in e.binders:
            t = self.binder_type(b)
            if b.name in extra:
                raise self.fail("duplicate", b.span, f"`{b.name}` is bound twice")
            binders.append((b.name, t))
            extra[b.name] = ("bound", t)
        body = self.check(e.body, ctx.with_locals(extra), BOOL)
        return ir.Quant(e.kind, tuple(binders), body, BOOL, e.span)

    def binder_type(self, b: ast.Binder) -> Type:
        t = self.resolve_type(b.type)
        if not is_scalar(t):
            raise self.fail("bad-type", b.span, f"`{b.name}` must range over a finite scalar type, not {t}")
        return t


def _is_observer(principal: ir.Expr, observer: tuple[str, str | None]) -> bool:
    name, param = observer
    if not isinstance(principal, ir.PrincipalVal) or principal.principal != name:
        return False
    if param is None:
        return principal.arg is None
    return isinstance(principal.arg, ir.Ref) and principal.arg.kind == "param" and principal.arg.name == param



def _literal(e: ast.Expr) -> bool:
    """An integer literal, possibly negated or complemented: its width comes from context."""
    while isinstance(e, ast.Unary) and e.op in ("-", "~"):
        e = e.operand
    return isinstance(e, ast.IntLit)


def _short(n: int) -> str:
    """A number for a message: in full unless it is very long."""
    if n.bit_length() <= 128:
        return str(n)
    return f"a {n.bit_length()}-bit number"
