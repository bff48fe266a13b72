"""Text to AST: the lark LALR parser, terminal conversion, and syntax diagnostics."""

from __future__ import annotations

import copy
import gc
import os
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import lark
from lark import Token, Tree, v_args
from lark.tree import Meta
from lark.visitors import Transformer_NonRecursive

from microverify.dsl import ast, syntaxhints
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError, error
from microverify.dsl.limits import MAX_BV_WIDTH, MAX_DEPTH
from microverify.dsl.spans import DIRECTION_CONTROLS, Span, source_lines

_MAX_SYNTAX_ERRORS = 10

# Characters that make an editor show a file otherwise than the parser reads it. Line breaks
# to editors (and to the Language Server Protocol: a lone "\r") that the parser does not count:
# a `//` comment would run on past one, over what an editor shows as code. Text-direction
# controls (as rustc refuses them, CVE-2021-42574): they reorder what is shown around them, so
# code can look commented out, or a comment look like code.
_MISREAD = re.compile(f"\r(?!\n)|[\x85\u2028\u2029{DIRECTION_CONTROLS}]")
_BREAKS = {"\r": "a carriage return not followed by a line feed", "\x85": "a next-line character (U+0085)",
           "\u2028": "a line separator (U+2028)", "\u2029": "a paragraph separator (U+2029)"}

# How the terminals defined by a regular expression are named in messages.
_TERMINAL_NAMES = {"NAME": "a name", "INT": "a number", "HEX": "a number"}

class _Meta:
    """lark's Meta with slots: a parse tree has a Meta per node, and a large file millions."""

    __slots__ = ("empty", "line", "column", "start_pos", "end_line", "end_column", "end_pos",
                 "container_line", "container_column", "container_start_pos", "container_end_line",
                 "container_end_column", "container_end_pos")

    def __init__(self) -> None:
        self.empty = True


class _Tree(Tree[Token]):
    """lark's Tree with slots (and a slotted Meta): about half the memory of a parse tree."""

    __slots__ = ("data", "children", "_meta")

    @property
    def meta(self) -> Meta:
        if self._meta is None:
            self._meta = _Meta()  # type: ignore[assignment]
        return self._meta  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False,
                     tree_class=_Tree, start=["start", "define_type", "define_const"], cache=_grammar_cache())


def _grammar_cache() -> str | bool:
    """Where lark keeps its analysis of the grammar between runs (a third of a second each run):
    $XDG_CACHE_HOME/microverify or ~/.cache/microverify, a directory only this user may write,
    since lark loads the file with pickle; False (analyse every time) when there is none. Lark
    checks a SHA-256 of the grammar and its options stored in the file, and carries on without
    the file if it cannot read or write it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "microverify"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except (OSError, ValueError):
        return False
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return False
    return str(folder / f"grammar-lark-{lark.__version__}.cache")


class _ToAst(Transformer_NonRecursive[Token, Any]):
    """Rule methods are written out one by one so each can be found by name.

    Non-recursive: a tree as deep as the nesting limit allows is transformed without using
    Python's stack. A rule method never raises (lark would wrap the exception): a literal it
    cannot convert is recorded in `errors` and replaced by a placeholder."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file
        self.errors: list[Diagnostic] = []

    # -- spans
    def _span(self, meta: Meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)

    # -- module
    @v_args(meta=True)
    def start(self, meta: Meta, items: list[Any]) -> ast.Module:
        return ast.Module(self.file, tuple(items))

    def define_const(self, c: list[Any]) -> ast.Expr:
        return c[1]  # type: ignore[no-any-return]

    @v_args(meta=True)
    def import_decl(self, meta: Meta, c: list[Any]) -> ast.Import:
        return ast.Import(str(c[0])[1:-1], self._span(meta))

    @v_args(meta=True)
    def const_decl(self, meta: Meta, c: list[Any]) -> ast.ConstDecl:
        return ast.ConstDecl(str(c[0]), c[1], c[2] if len(c) > 2 else None, self._span(meta))

    @v_args(meta=True)
    def def_decl(self, meta: Meta, c: list[Any]) -> ast.DefDecl:
        return ast.DefDecl(str(c[0]), tuple(c[1]), c[2], c[3], self._span(meta), self._tok(c[0]))

    @v_args(meta=True)
    def type_decl(self, meta: Meta, c: list[Any]) -> ast.TypeDecl:
        return ast.TypeDecl(str(c[0]), c[1], self._span(meta))

    define_type = type_decl  # `-D NAME=TYPE`: the same node

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
        (source, source_arg), (target, target_arg) = c[0], c[1]
        return ast.Flow(source, target, self._span(meta), source_arg, target_arg, c[2] if len(c) > 2 else None)

    def flow_end(self, c: list[Any]) -> tuple[str, ast.Expr | None]:
        return str(c[0]), c[1] if len(c) > 1 else None

    def flow_where(self, c: list[Any]) -> ast.Expr:
        return c[0]  # type: ignore[no-any-return]

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
        digits = str(c[0]).replace("_", "").lstrip("0") or "0"
        # A width of more digits than any legal one is out of range: the checker says so
        # (converting it could exceed Python's limit on int-from-text conversion).
        width = int(digits) if len(digits) <= len(str(MAX_BV_WIDTH)) else MAX_BV_WIDTH + 1
        return ast.TBV(width, self._span(meta))

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
        inherit = False
        if members and isinstance(members[0], tuple) and members[0][0] in ("refines", "extends"):
            kind, refines, via = members[0]
            inherit = kind == "extends"
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
                             tuple(abstraction), inherit)

    def refines(self, c: list[Any]) -> tuple[str, str, str | None]:
        return ("refines", str(c[0]), str(c[1]) if len(c) > 1 else None)

    def extends(self, c: list[Any]) -> tuple[str, str, str | None]:
        return ("extends", str(c[0]), str(c[1]) if len(c) > 1 else None)

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
        span = self._tok(c[0])
        value = _literal_value(str(c[0]))
        if isinstance(value, Diagnostic):
            self.errors.append(error(value.code, span, value.message, *value.notes))
            value = 0
        return ast.IntLit(value, span)

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


# The most decimal digits a literal of at most MAX_BV_WIDTH bits can have.
_MAX_DECIMAL_DIGITS = len(str((1 << MAX_BV_WIDTH) - 1))


def _literal_value(text: str) -> int | Diagnostic:
    """The value of an INT or HEX token, or a diagnostic (its span is filled in by the caller)."""
    nowhere = Span("", 0, 0, 0, 0)
    shown = text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"
    if text.startswith(("0x", "0X")):
        digits = text[2:].replace("_", "")
        if not digits:
            return error("syntax", nowhere, f"`{shown}` is not a number: `0x` needs at least one hex digit")
        bits = len(digits.lstrip("0")) * 4
        value = int(digits, 16) if bits <= MAX_BV_WIDTH + 4 else None
    else:
        digits = text.replace("_", "").lstrip("0") or "0"
        value = int(digits) if len(digits) <= _MAX_DECIMAL_DIGITS else None
    if value is None or value.bit_length() > MAX_BV_WIDTH:
        return error("literal-range", nowhere, f"the integer literal {shown} does not fit in "
                     f"bv[{MAX_BV_WIDTH}], the widest bit-vector")
    return value


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


def _hinted(text: str, d: Diagnostic, exc: lark.exceptions.UnexpectedInput) -> Diagnostic:
    """Notes for two slips whose syntax error says little: `=` for `:=`, and a `return` with no
    value (an operation without a result type cannot return), which takes the next line as its
    value, so the error is on that line."""
    if not isinstance(exc, lark.exceptions.UnexpectedToken):
        return d
    if exc.token.type == "EQUAL" and _assign() in exc.expected:
        return replace(d, notes=(*d.notes, "to assign, write `:=`; `=` is for declarations, `let` and `bind`"))
    before = [line.split("//")[0].strip() for line in source_lines(text)[:max(0, d.span.line - 1)]]
    at = next((n for n in range(len(before), 0, -1) if before[n - 1]), 0)
    if at and re.search(r"\breturn$", before[at - 1]):
        return replace(d, notes=(*d.notes, f"the `return` at line {at} takes this line as its value: a `return` needs "
                                 "one (`return false`); an operation without a result type cannot return, and ends "
                                 "a failed check with `check c else halt`"))
    return d


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


@lru_cache(maxsize=64)
def parse(text: str, file: str) -> ast.Module:
    """Parse one source file; on syntax errors raise DiagnosticError with all that were found.

    Remembered per (text, name): a file that several loaded roots import is parsed once (the
    tree is immutable). A syntax error is not remembered; it is found again, and reported once
    by the caller (prover/cli.py)."""
    result = _parse(text, file, "start")
    assert isinstance(result, ast.Module)
    return result


def parse_type_definition(text: str, file: str) -> ast.TypeDecl:
    """`NAME=TYPE`, a `-D` value for a type alias (dsl/defines.py)."""
    result = _parse(text, file, "define_type")
    assert isinstance(result, ast.TypeDecl)
    return result


def parse_const_definition(text: str, file: str) -> ast.Expr:
    """`NAME=EXPR`, a `-D` value for a constant: the expression."""
    return _parse(text, file, "define_const")  # type: ignore[no-any-return]


def _parse(text: str, file: str, start: str) -> Any:
    # The parse allocates millions of objects and frees none: the cyclic garbage collector
    # would walk them over and over for nothing (a third of the time of a large file).
    misread = _misread(text, file)
    if misread is not None:
        raise DiagnosticError([misread])
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree, diagnostics = _lark_parse(text, file, start)
        if diagnostics:
            raise DiagnosticError(_explained(text, file, start, diagnostics))
        assert tree is not None
        too_deep = _limit_nesting(tree, file)
        if too_deep is not None:
            raise DiagnosticError([too_deep])
        transformer = _ToAst(file)
        result = transformer.transform(tree)
    finally:
        if collecting:
            gc.enable()
    if transformer.errors:
        raise DiagnosticError(transformer.errors)
    return result


def _misread(text: str, file: str) -> Diagnostic | None:
    """An error at the first character that editors would show otherwise than it is read."""
    found = _MISREAD.search(text)
    if found is None:
        return None
    before = text.rfind("\n", 0, found.start())
    span = Span.point(file, text.count("\n", 0, found.start()) + 1, found.start() - before)
    char = found.group()
    if char in _BREAKS:
        return error("syntax", span, f"{_BREAKS[char]} is a line break to editors, not to microverify",
                     "end every line with \\n or \\r\\n: a `//` comment runs on to the next \\n, over what "
                     "an editor shows as the lines after it")
    return error("syntax", span, f"a text-direction control character (U+{ord(char):04X}): editors reorder "
                 "the text around it, so the file would not read as it is checked")


def _lark_parse(text: str, file: str, start: str) -> tuple[Tree[Token] | None, list[Diagnostic]]:
    """The parse tree, or the syntax errors (at most _MAX_SYNTAX_ERRORS, one per line)."""
    diagnostics: list[Diagnostic] = []

    def on_error(exc: lark.exceptions.UnexpectedInput) -> bool:
        diagnostics.append(_hinted(text, _syntax_diagnostic(file, exc), exc))
        if not isinstance(exc, lark.exceptions.UnexpectedToken):
            return False  # a stray character: what follows it is too unreliable to report
        _repair(exc)
        return len(diagnostics) < _MAX_SYNTAX_ERRORS

    try:
        tree = _parser().parse(text, start=start, on_error=on_error)
    except lark.exceptions.UnexpectedInput as exc:
        if not diagnostics or diagnostics[-1].span.line != (getattr(exc, "line", 0) or 0):
            diagnostics.append(_hinted(text, _syntax_diagnostic(file, exc), exc))
        return None, _dedupe(diagnostics)
    return (None, _dedupe(diagnostics)) if diagnostics else (tree, [])


@lru_cache(maxsize=1)
def _assign() -> str:
    """lark's name for the terminal `:=`."""
    return next(t.name for t in _parser().terminals if t.pattern.type == "str" and t.pattern.value == ":=")


@lru_cache(maxsize=1)
def _keywords() -> frozenset[str]:
    return frozenset(t.pattern.value for t in _parser().terminals
                     if t.pattern.type == "str" and t.pattern.value.isidentifier())


def _explained(text: str, file: str, start: str, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The syntax errors, one per cause (dsl/syntaxhints.py). A misspelt keyword at the start of
    a line is reported as such, with the keyword; a `{` never closed is reported at the first
    error where it should have been closed, with a note pointing at it. The text is then parsed
    again with the keywords in place and the missing `}` inserted, and only the errors found
    there (at their lines in the text) follow: the others were caused by those two."""
    candidates = syntaxhints.keyword_typos(text, _keywords())
    braces = [u for u in syntaxhints.unclosed(text) if u.bracket == "{"]
    if not candidates and not braces:
        return diagnostics
    missing = [u.by for u in braces if u.by]
    # A candidate is taken for a misspelt keyword only where the parse fails on its line (with
    # the typos found so far corrected, which lets the parse reach further), and only if the
    # keyword fits there (no error on its line once corrected).
    typos: list[syntaxhints.Typo] = []
    others = _repaired_errors(text, file, start, typos, missing)
    for _ in range(_MAX_SYNTAX_ERRORS):
        failing = {d.span.line for d in others}
        more = [t for t in candidates if t.line in failing and t not in typos]
        if not more:
            break
        corrected = _repaired_errors(text, file, start, typos + more, missing)
        fitting = [t for t in more if all(d.span.line != t.line for d in corrected)]
        if not fitting:
            break
        typos += fitting
        others = _repaired_errors(text, file, start, typos, missing) if fitting != more else corrected
    found = [error("syntax", Span(file, t.line, t.column, t.line, t.column + len(t.word)),
                   f"unknown keyword `{t.word}`", f"did you mean `{t.keyword}`?") for t in typos]
    notes: dict[int, list[str]] = {}  # index in diagnostics -> notes on unclosed brackets
    for u in braces:  # at the first error where it should have been closed, or the last one
        at = next((i for i, d in enumerate(diagnostics) if u.by and d.span.line >= u.by), len(diagnostics) - 1)
        notes.setdefault(at, []).append(f"the `{{` at {file}:{u.line}:{u.column} is never closed: "
                                        "is a closing bracket missing?")
    found += [replace(diagnostics[i], notes=(*diagnostics[i].notes, *n)) for i, n in notes.items()]
    found += others
    found = _dedupe(sorted(found, key=lambda d: (d.span.line, d.span.column)))
    return found or diagnostics


def _repaired_errors(text: str, file: str, start: str, typos: list[syntaxhints.Typo],
                     missing: list[int]) -> list[Diagnostic]:
    """The syntax errors of the text with the typos corrected and a `}` inserted before each
    line of `missing`, at their lines in the text (those on an inserted line left out)."""
    fixed, origin = syntaxhints.repaired(text, typos, missing)
    _, again = _lark_parse(fixed, file, start)
    out = []
    for d in again:
        line = origin[d.span.line - 1] if d.span.line <= len(origin) else len(source_lines(text.rstrip("\n"))) or 1
        if line is not None:
            shift = line - d.span.line
            out.append(replace(d, span=replace(d.span, line=line, end_line=d.span.end_line + shift)))
    return out


# Tree nodes that nest: one level each (counted against MAX_DEPTH). A parenthesis, a block or a
# list of arguments is not a level of its own; `else if` is one more `if`.
_NESTING = frozenset({
    "forall_", "exists_", "ite", "iff_", "implies_", "or_op", "and_op", "cmp_op", "bor_op", "bxor_op",
    "band_op", "shift_op", "add_op", "mul_op", "not_op", "neg_op", "bnot_op", "index", "field", "call",
    "read_oracle", "t_map", "t_record", "if_stmt",
})
# Associative operators: a chain of one of them is rebalanced into a tree of logarithmic depth.
# (`+` and `*` are associative modulo 2^N; for add_op and mul_op the operator is the middle child.)
_CHAINS = {"and_op": None, "or_op": None, "bor_op": None, "bxor_op": None, "band_op": None,
           "add_op": "+", "mul_op": "*"}
# Chains up to this many operands are left as written (their spans and shapes stay exactly those
# of the grammar); longer ones are rebalanced.
_REBALANCE_FROM = 32


def _chain_op(node: Tree[Token]) -> str | None:
    """The operator of a chainable node, or None; for `+`/`*` nodes, only those operators."""
    if node.data not in _CHAINS:
        return None
    want = _CHAINS[node.data]
    if want is None:
        return str(node.data)
    op = node.children[1]
    sym = str(op.children[0]) if isinstance(op, Tree) and op.children else str(op)
    return f"{node.data}{sym}" if sym == want else None


def _operands(node: Tree[Token]) -> list[Any]:
    """The operands of the left-deep chain rooted at node, left to right."""
    kind = _chain_op(node)
    out = []
    at: Any = node
    while isinstance(at, Tree) and _chain_op(at) == kind:
        out.append(at.children[-1])
        at = at.children[0]
    out.append(at)
    out.reverse()
    return out


def _meta_between(first: Any, last: Any) -> Any:
    meta: Any = _Meta()
    a, b = first.meta, last.meta
    meta.empty = False
    meta.line, meta.column, meta.start_pos = a.line, a.column, a.start_pos
    meta.end_line, meta.end_column, meta.end_pos = b.end_line, b.end_column, b.end_pos
    return meta


def _balanced(template: Tree[Token], operands: list[Any]) -> Any:
    """A balanced tree over operands (recursion depth log2 of their number). The left half is
    the larger, so that the leftmost two operands stay paired as in the written chain (the
    width of an integer literal is inferred from its left neighbour as before)."""
    if len(operands) == 1:
        return operands[0]
    half = (len(operands) + 1) // 2
    left, right = _balanced(template, operands[:half]), _balanced(template, operands[half:])
    op: Any = template.children[1]
    middle = [_Tree(op.data, list(op.children))] if len(template.children) == 3 else []
    return _Tree(template.data, [left, *middle, right], _meta_between(left, right))


def _limit_nesting(tree: Tree[Token], file: str) -> Diagnostic | None:
    """Rebalance long chains of an associative operator, then find the first construct nested
    more than MAX_DEPTH levels deep. Iterative: the tree may be arbitrarily deep."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING:
            depth += 1
            if depth > MAX_DEPTH:
                meta = node.meta
                span = Span(file, meta.line, meta.column, meta.end_line, meta.end_column)
                return error("too-deep", span,
                             f"this is nested more than {MAX_DEPTH} levels deep, the limit",
                             "each operator, call, index, field access, quantifier, `if`, map and "
                             "record type is one level (a chain of one associative operator counts as "
                             "a balanced tree); split a long expression with `let`s")
        for i in reversed(range(len(node.children))):
            child: Any = node.children[i]
            if not isinstance(child, Tree):
                continue
            if _chain_op(child) is not None:
                operands = _operands(child)
                if len(operands) > _REBALANCE_FROM:
                    child = _balanced(child, operands)
                    node.children[i] = child
            stack.append((child, depth))
    return None


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
    accepted = parser.accepts()
    if exc.token.type == "EQUAL" and _assign() in accepted:  # `=` for `:=`: read as meant (_hinted)
        parser.feed_token(Token.new_borrow_pos(_assign(), ":=", exc.token))
        return
    for candidate in _REPAIR_CANDIDATES:
        if candidate not in accepted:
            continue
        # A trial without tree building (as lark's own accepts()): copying the values built so
        # far would deep-copy them, recursively, and they may be very deep or very many.
        trial = parser.copy(deepcopy_values=False)
        conf = copy.copy(trial.parser_state.parse_conf)
        conf.callbacks = {}
        trial.parser_state.parse_conf = conf
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
