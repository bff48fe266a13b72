"""Read, parse and check source files, following `import "file.mv"`."""

from __future__ import annotations

from pathlib import Path

from microverify.dsl import ast, ir
from microverify.dsl.checker import check
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError, error
from microverify.dsl.parser import parse
from microverify.dsl.spans import Span

EXTENSION = ".mv"


def load_text(text: str, file: str) -> ir.Module:
    """Check one self-contained text (imports are resolved relative to `file`)."""
    sources = {file: text}
    return check(_with_imports(parse(text, file), Path(file), sources), sources)


def load_file(path: Path, sources: dict[str, str]) -> ir.Module:
    """Load one file and what it imports; every text read is recorded in `sources`."""
    text = _read(path, sources, None)
    return check(_with_imports(parse(text, display_name(path)), path, sources), sources)


def display_name(path: Path) -> str:
    """How a file is named in spans and reports: relative to the working directory when it is
    inside it, else absolute; the same file always gets the same name, however it was reached."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _read(path: Path, sources: dict[str, str], at: Span | None) -> str:
    name = display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        where = at or Span.point(name, 1, 1)
        raise DiagnosticError([error("io", where, f"cannot read {name}: {exc}")]) from None
    sources[name] = text
    return text


def _with_imports(module: ast.Module, path: Path, sources: dict[str, str],
                  seen: set[Path] | None = None) -> ast.Module:
    """The module with the declarations of everything it imports put first (each file once)."""
    seen = set() if seen is None else seen
    decls: list[ast.Decl] = []
    errors: list[Diagnostic] = []
    _include(module, path.resolve(), sources, seen, [path.resolve()], decls, errors)
    if errors:
        raise DiagnosticError(errors)
    return ast.Module(module.file, tuple(decls))


def _include(module: ast.Module, path: Path, sources: dict[str, str], seen: set[Path],
             stack: list[Path], decls: list[ast.Decl], errors: list[Diagnostic]) -> None:
    for d in module.decls:
        if not isinstance(d, ast.Import):
            decls.append(d)
            continue
        target = (path.parent / d.path).resolve()
        if target in stack:
            chain = " -> ".join(p.name for p in stack[stack.index(target):] + [target])
            errors.append(error("import", d.span, f"circular import ({chain})"))
            continue
        if target in seen:
            continue
        seen.add(target)
        try:
            text = _read(target, sources, d.span)
            imported = parse(text, display_name(target))
        except DiagnosticError as exc:
            errors.extend(exc.diagnostics)
            continue
        _include(imported, target, sources, seen, stack + [target], decls, errors)


def discover(paths: list[Path]) -> list[Path]:
    """Expand directories into their `.mv` files, sorted; files are taken as given."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob(f"*{EXTENSION}")))
        else:
            found.append(p)
    return found
