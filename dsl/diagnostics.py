"""One diagnostic type, a registry of codes, and rendering with a caret."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from microverify.dsl.spans import Span, source_lines


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


# Every code a diagnostic may carry, with a one-line meaning (docs/language.md lists them).
CODES: dict[str, str] = {
    "syntax": "the text does not follow the grammar",
    "io": "a source file cannot be read",
    "import": "a circular import",
    "refinement": "a malformed refinement: abstraction, operation mapping or oracle binding",
    "inherit": "a part a layer would inherit with `extends` mentions a field it replaces",
    "unknown-name": "a name that is not declared",
    "unknown-type": "a type name that is not declared",
    "duplicate": "a name declared twice in the same scope",
    "recursive-type": "a type alias that refers to itself",
    "type-mismatch": "an expression of the wrong type",
    "width-mismatch": "bit-vectors of different widths combined",
    "literal-range": "an integer literal that does not fit its type",
    "cannot-infer": "an expression whose type cannot be inferred",
    "assign-not-state": "an assignment to something that is not a state field",
    "oracle-in-predicate": "an oracle read outside an operation body",
    "oracle-read-position": "an oracle read that is not the whole right-hand side of let or :=",
    "oracle-source": "an oracle without a source (`from P`), or a bind whose source is not the oracle's",
    "foreign-counter": "an observation that mentions another principal's oracle counter",
    "missing-return": "an operation with a result type that can end without returning",
    "return-in-unit-op": "a return in an operation without a result type",
    "bad-type": "a type that is not allowed where it is used",
    "bad-policy": "a flows-to pair that names something other than a principal, or a member index name no `where` uses",
    "unsupported": "a construct the lowering does not support",
    "no-layer": "a file that declares no layer",
    "no-principal": "a file with layers but no principal",
    "arity": "a call with the wrong number of arguments",
    "define": "a `-D NAME=VALUE` that names no type alias or constant of the files loaded",
    "too-deep": "expressions, types or `if` statements nested more deeply than the limit (200 levels)",
    "too-large": "defs and constants that expand an expression, or a file's, beyond the limit (200,000 nodes)",
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    severity: Severity
    span: Span
    message: str
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unregistered diagnostic code {self.code!r}")


def error(code: str, span: Span, message: str, *notes: str) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, span, message, tuple(notes))


class DiagnosticError(Exception):
    """Raised by a front-end pass that cannot go on; carries every diagnostic so far."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        diagnostics = unique(diagnostics)
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def identity(d: Diagnostic) -> tuple[str, Span, str]:
    """What makes two diagnostics one: a text checked twice, or as part of two roots, may be
    told once with a note and once without (a `did you mean` past the budget)."""
    return d.code, d.span, d.message


def unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Each diagnostic once: the first of each identity."""
    seen: set[tuple[str, Span, str]] = set()
    out = []
    for d in diagnostics:
        if identity(d) not in seen:
            seen.add(identity(d))
            out.append(d)
    return out


def render(diag: Diagnostic, sources: dict[str, str]) -> str:
    """`file:line:col: error: message [code]`, the source line, and a caret under the span."""
    span = diag.span
    head = f"{span}: {diag.severity.value}: {diag.message} [{diag.code}]"
    lines = [head]
    text = sources.get(span.file)
    if text is not None and span.line >= 1:
        src = _line(text, span.line)
        if src is not None:
            start = max(span.column - 1, 0)
            if span.end_line == span.line:
                width = max(span.end_column - span.column, 1)
            else:
                width = max(len(src) - start, 1)
            if len(src) > MAX_SHOWN:  # a window around the caret, not a line of megabytes
                first = max(start - MAX_SHOWN // 4, 0)
                shown = src[first:first + MAX_SHOWN]
                prefix = "..." if first > 0 else ""
                suffix = "..." if first + MAX_SHOWN < len(src) else ""
                src = prefix + shown + suffix
                start = start - first + len(prefix)
                width = min(width, len(shown) + len(prefix) - start)
            lines.append(f"  {src}")
            pad = "".join("\t" if c == "\t" else " " for c in src[:start])  # tabs align as above
            lines.append("  " + pad + "^" + "~" * (max(width, 1) - 1))
    lines.extend(f"  note: {n}" for n in diag.notes)
    return "\n".join(lines)


MAX_SHOWN = 200  # characters of a source line shown under a diagnostic


def _line(text: str, number: int) -> str | None:
    """Line `number` (1-based) of text, as spans count (spans.source_lines)."""
    lines = _lines(text)
    return lines[number - 1] if number <= len(lines) else None


@lru_cache(maxsize=4)
def _lines(text: str) -> list[str]:
    """Split once per source, not once per diagnostic (a large file may have thousands)."""
    return source_lines(text)
