"""`prove -D NAME=VALUE`: a model's sizes and constants set from the command line.

A model keeps its sizes in `type` aliases and `const`s (`type pfn = bv[36]`, `const MMIO_PAGE:
pfn = 2`). `-D pfn=bv[8]` replaces the alias's type, `-D MMIO_PAGE=0x40` the constant's value
(with the type it is declared with), in every file loaded that declares the name, before the
module is checked: the result is checked, proved, cached and reported exactly as if the file said
so, and the theorem names the definitions it was proved under. Anything else a file declares
(a principal, an oracle, a layer) cannot be set this way.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field

from microverify.dsl import ast
from microverify.dsl.diagnostics import DiagnosticError, Diagnostic, error
from microverify.dsl.spans import Span

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Define:
    name: str
    text: str  # as given: `NAME=VALUE`

    @property
    def file(self) -> str:
        """The pseudo-file its diagnostics point into (its text is `text`)."""
        return f"<-D {self.name}>"

    def __str__(self) -> str:
        """As the theorem names it: on one line, a line break written `\\n` (joining the lines
        would change what a `//` comment in it covers)."""
        return "-D " + self.text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class Uses:
    """What the files loaded so far did with the defines: the names they declare (`applied`), and
    every type alias and constant they declare (`settable`, for suggestions)."""

    applied: set[str] = field(default_factory=set)
    settable: set[str] = field(default_factory=set)


def parse_defines(args: tuple[str, ...] | list[str]) -> tuple[Define, ...]:
    """The `-D` arguments, in order; ValueError says what is wrong with one."""
    out: dict[str, Define] = {}
    for arg in args:
        name, eq, value = arg.partition("=")
        name = name.strip()
        if not eq or not value.strip():
            raise ValueError(f"`{arg}`: write NAME=VALUE, e.g. -D pfn=bv[36] or -D MMIO_PAGE=0x40")
        if not _NAME.fullmatch(name):
            raise ValueError(f"`{arg}`: `{name}` is not a name")
        if name in out:
            raise ValueError(f"`{name}` is defined twice (`{out[name].text}` and `{arg}`)")
        out[name] = Define(name, arg)
    return tuple(out.values())


def apply(module: ast.Module, defines: tuple[Define, ...], uses: Uses) -> ast.Module:
    """The module with each define's type alias or constant replaced; `uses` records what it
    declares (a define's name counts as applied even if the define is bad). Diagnostics point
    into `Define.file`, whose text is `Define.text`."""
    if not defines:
        return module
    uses.settable.update(d.name for d in module.decls if isinstance(d, (ast.TypeDecl, ast.ConstDecl)))
    wanted = {d.name: d for d in defines}
    decls: list[ast.Decl] = []
    errors: list[Diagnostic] = []
    for decl in module.decls:
        d = wanted.get(getattr(decl, "name", ""))
        if d is None:
            decls.append(decl)
            continue
        uses.applied.add(d.name)
        try:
            decls.append(_replace(decl, d))
        except DiagnosticError as exc:
            errors.extend(exc.diagnostics)
            decls.append(decl)
    if errors:
        raise DiagnosticError(errors)
    return ast.Module(module.file, tuple(decls))


def _replace(decl: ast.Decl, d: Define) -> ast.Decl:
    from microverify.dsl.parser import parse_const_definition, parse_type_definition  # as in dsl/astcache.py

    if isinstance(decl, ast.TypeDecl):
        new = parse_type_definition(d.text, d.file)
        return dataclasses.replace(decl, type=new.type)
    if isinstance(decl, ast.ConstDecl):
        return dataclasses.replace(decl, value=parse_const_definition(d.text, d.file))
    kind = type(decl).__name__.removesuffix("Decl").lower()
    raise DiagnosticError([error("define", Span(d.file, 1, 1, 1, len(d.name) + 1),
                                 f"-D sets a `type` alias or a `const`, and `{d.name}` is a {kind}",
                                 f"declared at {decl.span}")])


def unused(defines: tuple[Define, ...], uses: Uses) -> list[Diagnostic]:
    """A define no file loaded declares (the name is likely misspelt)."""
    out = []
    for d in defines:
        if d.name in uses.applied:
            continue
        close = difflib.get_close_matches(d.name, sorted(uses.settable), n=1)
        out.append(error("define", Span(d.file, 1, 1, 1, len(d.name) + 1),
                         f"no file declares a type or constant `{d.name}` for -D to set",
                         *((f"did you mean `{close[0]}`?",) if close else ())))
    return out
