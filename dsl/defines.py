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
import re
from dataclasses import dataclass

from microverify.dsl import ast
from microverify.dsl.diagnostics import DiagnosticError, Diagnostic, error
from microverify.dsl.parser import parse_const_definition, parse_type_definition
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
        return f"-D {self.text}"


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


def apply(module: ast.Module, defines: tuple[Define, ...], applied: set[str]) -> ast.Module:
    """The module with each define's type alias or constant replaced; the names of the defines it
    declares are added to `applied`, even if a define is bad. Diagnostics point into
    `Define.file`, whose text is `Define.text`."""
    if not defines:
        return module
    wanted = {d.name: d for d in defines}
    decls: list[ast.Decl] = []
    errors: list[Diagnostic] = []
    for decl in module.decls:
        d = wanted.get(getattr(decl, "name", ""))
        if d is None:
            decls.append(decl)
            continue
        applied.add(d.name)
        try:
            decls.append(_replace(decl, d))
        except DiagnosticError as exc:
            errors.extend(exc.diagnostics)
            decls.append(decl)
    if errors:
        raise DiagnosticError(errors)
    return ast.Module(module.file, tuple(decls))


def _replace(decl: ast.Decl, d: Define) -> ast.Decl:
    if isinstance(decl, ast.TypeDecl):
        new = parse_type_definition(d.text, d.file)
        return dataclasses.replace(decl, type=new.type)
    if isinstance(decl, ast.ConstDecl):
        _, value, _ = parse_const_definition(d.text, d.file)
        return dataclasses.replace(decl, value=value)
    kind = type(decl).__name__.removesuffix("Decl").lower()
    raise DiagnosticError([error("define", Span(d.file, 1, 1, 1, len(d.name) + 1),
                                 f"-D sets a `type` alias or a `const`, and `{d.name}` is a {kind}",
                                 f"declared at {decl.span}")])


def unused(defines: tuple[Define, ...], applied: set[str]) -> list[Diagnostic]:
    """A define no file loaded declares (the name is likely misspelt)."""
    return [error("define", Span(d.file, 1, 1, 1, len(d.name) + 1),
                  f"no file declares a type or constant `{d.name}` for -D to set")
            for d in defines if d.name not in applied]
