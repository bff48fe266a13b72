"""Read, parse and check source files."""

from __future__ import annotations

from pathlib import Path

from microverify.dsl import ir
from microverify.dsl.checker import check
from microverify.dsl.diagnostics import DiagnosticError, error
from microverify.dsl.parser import parse
from microverify.dsl.spans import Span

EXTENSION = ".mv"


def load_text(text: str, file: str) -> ir.Module:
    return check(parse(text, file), text)


def load_file(path: Path, sources: dict[str, str]) -> ir.Module:
    """Load one file; its text is recorded in `sources` for rendering diagnostics."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DiagnosticError([error("io", Span.point(name, 1, 1), f"cannot read {name}: {exc}")]) from None
    sources[name] = text
    return load_text(text, name)


def discover(paths: list[Path]) -> list[Path]:
    """Expand directories into their `.mv` files, sorted; files are taken as given."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob(f"*{EXTENSION}")))
        else:
            found.append(p)
    return found
