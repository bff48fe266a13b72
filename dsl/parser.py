"""Text to AST: the lark LALR parser, terminal conversion, and syntax diagnostics."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import lark
from lark import Token, Transformer, v_args
from lark.tree import Meta

from microverify.dsl import ast
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError, error
from microverify.dsl.spans import Span

_MAX_SYNTAX_ERRORS = 10

# How the terminals defined by a regular expression are named in messages.
_TERMINAL_NAMES = {"NAME": "a name", "INT": "a number", "HEX": "a number"}

@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class _ToAst(Transformer[Token, Any]):
    """Rule methods are written out one by one so each can be found by name."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    # -- spans
    def _span(self, meta: Meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)

    # -- module
    @v_args(meta=True)
    def start(self, meta: Meta, items: list[Any]) -> ast.Module:
        return ast.Module(self.file, tuple(items))

    @v_args(meta=True)
    def import_decl(self, meta: Meta, c: list[Any]) -> ast.Import:
        return ast.Import(str(c[0])[1:-1], self._span(meta))

    @v_args(meta=True)
    def const_decl(self, meta: Meta, c: list[Any]) -> ast.ConstDecl:
        return ast.ConstDecl(str(c[0]), c[1], c[2], self._span(meta))

    @v_args(meta=True)
    def type_decl(self, meta: Meta, c: list[Any]) -> ast.TypeDecl:
        return ast.TypeDecl(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def principal_decl(self, meta: Meta, c: list[Any]) -> ast.PrincipalDecl:
        if len(c) == 1:
            return ast.PrincipalDecl(str(c[0]), None, None, self._span(meta))
        return ast.PrincipalDecl(str(c[0]), str(c[1]), c[2], self._span(meta))

    @v_args(meta=True)
    def policy_isolation(self, meta: Meta, c: list[Any]) -> ast.PolicyDecl:
        return ast.PolicyDecl(None, self._span(meta))

    @v_args(meta=True)
    def policy_flows(self, meta: Meta, c: list[Any]) -> ast.PolicyDecl:
        return ast.PolicyDecl(tuple(c), self._span(meta))

    @v_args(meta=True)
    def flow(self, meta: Meta, c: list[Any]) -> ast.Flow:
        return ast.Flow(str(c[0]), str(c[1]), self._span(meta))

    @v_args(meta=True)
    def oracle_decl(self, meta: Meta, c: list[Any]) -> ast.OracleDecl:
        source = c[2] if len(c) > 2 else None
        return ast.OracleDecl(str(c[0]), c[1], self._span(meta), str(source) if source else None,
                              self._tok(source) if source else None)

    def oracle_source(self, c: list[Any]) -> Any:
        return c[0]

    # -- types
    @v_args(meta=True)
    def t_bool(self, meta: Meta, c: list[Any]) -> ast.TBool:
        return ast.TBool(self._span(meta))

    @v_args(meta=True)
    def t_bv(self, meta: Meta, c: list[Any]) -> ast.TBV:
        return ast.TBV(int(str(c[0]).replace("_", "")), self._span(meta))

    @v_args(meta=True)
    def t_enum(self, meta: Meta, c: list[Any]) -> ast.TEnum:
        return ast.TEnum(tuple((str(t), self._tok(t)) for t in c), self._span(meta))

    @v_args(meta=True)
    def t_record(self, meta: Meta, c: list[Any]) -> ast.TRecord:
        return ast.TRecord(tuple(c), self._span(meta))

    @v_args(meta=True)
    def rfield(self, meta: Meta, c: list[Any]) -> tuple[str, ast.TypeExpr, Span]:
        return (str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def t_map(self, meta: Meta, c: list[Any]) -> ast.TMap:
        return ast.TMap(c[0], c[1], self._span(meta))

    @v_args(meta=True)
    def t_principal(self, meta: Meta, c: list[Any]) -> ast.TPrincipal:
        return ast.TPrincipal(self._span(meta))

    @v_args(meta=True)
    def t_name(self, meta: Meta, c: list[Any]) -> ast.TName:
        return ast.TName(str(c[0]), self._span(meta))

    # -- layers
    @v_args(meta=True)
    def layer_decl(self, meta: Meta, c: list[Any]) -> ast.LayerDecl:
        name, members = str(c[0]), c[1:]
        refines = via = None
        if members and isinstance(members[0], tuple) and members[0][0] == "refines":
            _, refines, via = members[0]
            members = members[1:]
        abstraction: list[ast.AbsDef] = []
        state: list[ast.StateField] = []
        init: list[ast.Expr] = []
        invariants: list[ast.Invariant] = []
        observes: list[ast.Observe] = []
        ops: list[ast.OpDecl] = []
        for m in members:
            if isinstance(m, tuple) and m[0] == "state":
                state.extend(m[1])
            elif isinstance(m, tuple) and m[0] == "init":
                init.extend(m[1])
            elif isinstance(m, ast.Invariant):
                invariants.append(m)
            elif isinstance(m, ast.Observe):
                observes.append(m)
            elif isinstance(m, ast.OpDecl):
                ops.append(m)
            elif isinstance(m, tuple) and m[0] == "abstraction":
                abstraction.extend(m[1])
            else:
                raise AssertionError(f"unhandled layer member {m!r}")
        return ast.LayerDecl(name, tuple(state), tuple(init), tuple(invariants),
                             tuple(observes), tuple(ops), self._span(meta), refines, via,
                             tuple(abstraction))

    def refines(self, c: list[Any]) -> tuple[str, str, str | None]:
        return ("refines", str(c[0]), str(c[1]) if len(c) > 1 else None)

    def abstraction_block(self, c: list[Any]) -> tuple[str, list[ast.AbsDef]]:
        return ("abstraction", c)

    @v_args(meta=True)
    def adef(self, meta: Meta, c: list[Any]) -> ast.AbsDef:
        return ast.AbsDef(str(c[0]), tuple(c[1:-1]), c[-1], self._span(meta))

    @v_args(meta=True)
    def adef_index(self, meta: Meta, c: list[Any]) -> ast.AbsIndex:
        return ast.AbsIndex(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def adef_field(self, meta: Meta, c: list[Any]) -> ast.AbsField:
        return ast.AbsField(str(c[0]), self._span(meta))

    def state_block(self, c: list[Any]) -> tuple[str, list[ast.StateField]]:
        return ("state", c)

    @v_args(meta=True)
    def sfield(self, meta: Meta, c: list[Any]) -> ast.StateField:
        return ast.StateField(str(c[0]), c[1], self._span(meta))

    def init_block(self, c: list[Any]) -> tuple[str, list[ast.Expr]]:
        return ("init", c[0])

    @v_args(meta=True)
    def invariant_block(self, meta: Meta, c: list[Any]) -> ast.Invariant:
        if len(c) == 2:
            return ast.Invariant(str(c[0]), tuple(c[1]), self._span(meta))
        return ast.Invariant(None, tuple(c[0]), self._span(meta))

    def preds(self, c: list[Any]) -> list[ast.Expr]:
        return list(c)

    @v_args(meta=True)
    def observe_block(self, meta: Meta, c: list[Any]) -> ast.Observe:
        principal = str(c[0])
        rest = c[1:]
        param = None
        if rest and isinstance(rest[0], Token):
            param, rest = str(rest[0]), rest[1:]
        return ast.Observe(principal, param, tuple(rest), self._span(meta))

    @v_args(meta=True)
    def obs_comp(self, meta: Meta, c: list[Any]) -> ast.ObsComponent:
        binders: tuple[ast.Binder, ...] = ()
        where = None
        for extra in c[1:]:
            if extra[0] == "for":
                binders = extra[1]
            else:
                where = extra[1]
        return ast.ObsComponent(c[0], binders, where, self._span(meta))

    def obs_for(self, c: list[Any]) -> tuple[str, tuple[ast.Binder, ...]]:
        return ("for", tuple(c))

    def obs_where(self, c: list[Any]) -> tuple[str, ast.Expr]:
        return ("where", c[0])

    @v_args(meta=True)
    def binder(self, meta: Meta, c: list[Any]) -> ast.Binder:
        return ast.Binder(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def op_decl(self, meta: Meta, c: list[Any]) -> ast.OpDecl:
        name_tok, params, dom, body = c[0], c[1], c[2], c[-1]
        result = next((x[1] for x in c[3:-1] if isinstance(x, tuple) and x[0] == "result"), None)
        impl = next((x for x in c[3:-1] if isinstance(x, ast.Implements)), None)
        return ast.OpDecl(str(name_tok), tuple(params), dom, result, tuple(body),
                          self._span(meta), self._tok(name_tok), impl)

    @v_args(meta=True)
    def implements(self, meta: Meta, c: list[Any]) -> ast.Implements:
        return ast.Implements(str(c[0]), tuple(c[1]), self._span(meta))

    def params(self, c: list[Any]) -> list[ast.Param]:
        return list(c)

    @v_args(meta=True)
    def param(self, meta: Meta, c: list[Any]) -> ast.Param:
        return ast.Param(str(c[0]), c[1], self._span(meta))

    def result(self, c: list[Any]) -> tuple[str, ast.TypeExpr]:
        return ("result", c[0])

    def block(self, c: list[Any]) -> list[ast.Stmt]:
        return list(c)

    # -- statements
    @v_args(meta=True)
    def let_stmt(self, meta: Meta, c: list[Any]) -> ast.Let:
        if len(c) == 3:
            return ast.Let(str(c[0]), c[1], c[2], self._span(meta))
        return ast.Let(str(c[0]), None, c[1], self._span(meta))

    @v_args(meta=True)
    def assign_stmt(self, meta: Meta, c: list[Any]) -> ast.Assign:
        root_tok, path = c[0]
        return ast.Assign(str(root_tok), self._tok(root_tok), tuple(path), c[1], self._span(meta))

    def lvalue(self, c: list[Any]) -> tuple[Token, list[ast.LvIndex | ast.LvField]]:
        return (c[0], c[1:])

    @v_args(meta=True)
    def lv_index(self, meta: Meta, c: list[Any]) -> ast.LvIndex:
        return ast.LvIndex(c[0], self._span(meta))

    @v_args(meta=True)
    def lv_field(self, meta: Meta, c: list[Any]) -> ast.LvField:
        return ast.LvField(str(c[0]), self._span(meta))

    @v_args(meta=True)
    def check_return(self, meta: Meta, c: list[Any]) -> ast.Check:
        return ast.Check(c[0], c[1], self._span(meta))

    @v_args(meta=True)
    def check_halt(self, meta: Meta, c: list[Any]) -> ast.Check:
        return ast.Check(c[0], None, self._span(meta))

    @v_args(meta=True)
    def if_stmt(self, meta: Meta, c: list[Any]) -> ast.If:
        other: tuple[ast.Stmt, ...] = ()
        if len(c) == 3:
            other = (c[2],) if isinstance(c[2], ast.If) else tuple(c[2])
        return ast.If(c[0], tuple(c[1]), other, self._span(meta))

    @v_args(meta=True)
    def return_stmt(self, meta: Meta, c: list[Any]) -> ast.Return:
        return ast.Return(c[0], self._span(meta))

    @v_args(meta=True)
    def halt_stmt(self, meta: Meta, c: list[Any]) -> ast.Halt:
        return ast.Halt(self._span(meta))

    @v_args(meta=True)
    def bind_stmt(self, meta: Meta, c: list[Any]) -> ast.Bind:
        principal = next((x[1] for x in c[2:] if x[0] == "for"), None)
        source = next((x[1] for x in c[2:] if x[0] == "from"), None)
        return ast.Bind(str(c[0]), c[1], principal, self._span(meta), self._tok(c[0]), source)

    def bind_for(self, c: list[Any]) -> tuple[str, Any]:
        return ("for", c[0])

    def bind_from(self, c: list[Any]) -> tuple[str, Any]:
        return ("from", c[0])

    # -- expressions
    def _quant(self, kind: str, meta: Meta, c: list[Any]) -> ast.Quant:
        return ast.Quant(kind, tuple(c[:-1]), c[-1], self._span(meta))

    @v_args(meta=True)
    def forall_(self, meta: Meta, c: list[Any]) -> ast.Quant:
        return self._quant("forall", meta, c)

    @v_args(meta=True)
    def exists_(self, meta: Meta, c: list[Any]) -> ast.Quant:
        return self._quant("exists", meta, c)

    @v_args(meta=True)
    def ite(self, meta: Meta, c: list[Any]) -> ast.Ite:
        return ast.Ite(c[0], c[1], c[2], self._span(meta))

    @v_args(meta=True)
    def read_oracle(self, meta: Meta, c: list[Any]) -> ast.ReadOracle:
        return ast.ReadOracle(str(c[0]), c[1] if len(c) > 1 else None, self._span(meta), self._tok(c[0]))

    def _binary(self, op: str, meta: Meta, left: Any, right: Any) -> ast.Binary:
        return ast.Binary(op, left, right, self._span(meta))

    @v_args(meta=True)
    def iff_(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("<==>", meta, c[0], c[1])

    @v_args(meta=True)
    def implies_(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("==>", meta, c[0], c[1])

    @v_args(meta=True)
    def or_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("||", meta, c[0], c[1])

    @v_args(meta=True)
    def and_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("&&", meta, c[0], c[1])

    @v_args(meta=True)
    def bor_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("|", meta, c[0], c[1])

    @v_args(meta=True)
    def bxor_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("^", meta, c[0], c[1])

    @v_args(meta=True)
    def band_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("&", meta, c[0], c[1])

    @v_args(meta=True)
    def cmp_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary(c[1], meta, c[0], c[2])

    @v_args(meta=True)
    def shift_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary(c[1], meta, c[0], c[2])

    @v_args(meta=True)
    def add_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary(c[1], meta, c[0], c[2])

    @v_args(meta=True)
    def mul_op(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary(c[1], meta, c[0], c[2])

    def cmpop(self, c: list[Token]) -> str:
        return str(c[0])

    def shiftop(self, c: list[Token]) -> str:
        return str(c[0])

    def addop(self, c: list[Token]) -> str:
        return str(c[0])

    def mulop(self, c: list[Token]) -> str:
        return str(c[0])

    @v_args(meta=True)
    def not_op(self, meta: Meta, c: list[Any]) -> ast.Unary:
        return ast.Unary("!", c[0], self._span(meta))

    @v_args(meta=True)
    def neg_op(self, meta: Meta, c: list[Any]) -> ast.Unary:
        return ast.Unary("-", c[0], self._span(meta))

    @v_args(meta=True)
    def bnot_op(self, meta: Meta, c: list[Any]) -> ast.Unary:
        return ast.Unary("~", c[0], self._span(meta))

    @v_args(meta=True)
    def index(self, meta: Meta, c: list[Any]) -> ast.Index:
        return ast.Index(c[0], c[1], self._span(meta))

    @v_args(meta=True)
    def field(self, meta: Meta, c: list[Any]) -> ast.FieldGet:
        return ast.FieldGet(c[0], str(c[1]), self._span(meta))

    def int_lit(self, c: list[Token]) -> ast.IntLit:
        text = str(c[0]).replace("_", "")
        return ast.IntLit(int(text, 0) if text.startswith("0x") else int(text), self._tok(c[0]))

    @v_args(meta=True)
    def true_lit(self, meta: Meta, c: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(True, self._span(meta))

    @v_args(meta=True)
    def false_lit(self, meta: Meta, c: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(False, self._span(meta))

    def name(self, c: list[Token]) -> ast.Name:
        return ast.Name(str(c[0]), self._tok(c[0]))

    @v_args(meta=True)
    def call(self, meta: Meta, c: list[Any]) -> ast.Call:
        return ast.Call(str(c[0]), tuple(c[1]), self._span(meta), self._tok(c[0]))

    def args(self, c: list[Any]) -> list[ast.Expr]:
        return list(c)


def _terminal_name(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"'{pattern.value}'" if isinstance(pattern, lark.lexer.PatternStr) else name.lower()


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_terminal_name(t) for t in expected})
    if not names or len(names) > 8:
        return ""
    return " (expected " + ", ".join(names) + ")"


def _syntax_diagnostic(file: str, exc: lark.exceptions.UnexpectedInput) -> Diagnostic:
    line = getattr(exc, "line", 1) or 1
    column = getattr(exc, "column", 1) or 1
    if isinstance(exc, lark.exceptions.UnexpectedToken):
        tok = exc.token
        what = "end of file" if tok.type == "$END" else repr(str(tok))
        span = Span(file, line, column, tok.end_line or line, tok.end_column or column + 1)
        return error("syntax", span, f"unexpected {what}{_describe_expected(set(exc.expected))}")
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        return error("syntax", Span.point(file, line, column), f"unexpected character {exc.char!r}")
    return error("syntax", Span.point(file, line, column), "unexpected end of file")


def parse(text: str, file: str) -> ast.Module:
    """Parse one source file; on syntax errors raise DiagnosticError with all that were found."""
    diagnostics: list[Diagnostic] = []

    def on_error(exc: lark.exceptions.UnexpectedInput) -> bool:
        diagnostics.append(_syntax_diagnostic(file, exc))
        if not isinstance(exc, lark.exceptions.UnexpectedToken):
            return False  # a stray character: what follows it is too unreliable to report
        _repair(exc)
        return len(diagnostics) < _MAX_SYNTAX_ERRORS

    try:
        tree = _parser().parse(text, on_error=on_error)
    except lark.exceptions.UnexpectedInput as exc:
        if not diagnostics or diagnostics[-1].span.line != (getattr(exc, "line", 0) or 0):
            diagnostics.append(_syntax_diagnostic(file, exc))
        raise DiagnosticError(_dedupe(diagnostics)) from None
    if diagnostics:
        raise DiagnosticError(_dedupe(diagnostics))
    result = _ToAst(file).transform(tree)
    assert isinstance(result, ast.Module)
    return result


# Tokens tried, in order, as a one-token insertion before an unexpected token.
_REPAIR_CANDIDATES = ("NAME", "RPAR", "RSQB", "SEMICOLON", "RBRACE")


def _repair(exc: lark.exceptions.UnexpectedToken) -> None:
    """Insert one plausible token if that lets the parser take the unexpected one.

    Otherwise lark skips the unexpected token. Either way the next error reported is
    usually a real one rather than a cascade of the first.
    """
    parser = exc.interactive_parser
    if parser is None or exc.token.type == "$END":
        return
    for candidate in _REPAIR_CANDIDATES:
        if candidate not in parser.accepts():
            continue
        trial = parser.copy()
        filler = Token.new_borrow_pos(candidate, "_", exc.token)
        trial.feed_token(filler)
        if exc.token.type in trial.accepts():
            parser.feed_token(filler)
            parser.feed_token(exc.token)
            return


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Keep the first error per line: recovery often reports the same mistake twice."""
    seen: set[int] = set()
    out = []
    for d in diagnostics:
        if d.span.line not in seen:
            seen.add(d.span.line)
            out.append(d)
    return out
