"""Source positions carried by every AST and IR node."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

# what str.splitlines() also breaks at, but the parser (lark: "\n" only) does not count
_OTHER_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# text-direction controls (dsl/parser.py refuses them): shown, they would reorder the line shown.
# The embeddings, overrides and isolates (those rustc refuses), and the three marks (left-to-right,
# right-to-left, Arabic letter), which reorder the operators, brackets and digits beside them.
DIRECTION_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_AS_SHOWN = str.maketrans({c: " " for c in _OTHER_BREAKS} | {c: "\ufffd" for c in DIRECTION_CONTROLS})
_SHOWN_OTHERWISE = re.compile(f"[{_OTHER_BREAKS}{DIRECTION_CONTROLS}]")


def source_lines(text: str) -> list[str]:
    """The lines of a source as spans number them: split at "\n" only (a "\r\n" ending is
    one break), every other character Python counts as a line break shown as a space and a
    text-direction control as U+FFFD, so that a column is the same character in the line shown."""
    if _SHOWN_OTHERWISE.search(text) is None:  # the usual file: nothing to replace
        return text.split("\n")
    return [line.removesuffix("\r").translate(_AS_SHOWN) for line in text.split("\n")]


@dataclass(frozen=True, slots=True)
class Span:
    """A 1-based, end-inclusive-line, end-exclusive-column region of one file."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    @staticmethod
    def point(file: str, line: int, column: int) -> Span:
        return Span(file, line, column, line, column + 1)


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)


def span_fields(cls: type) -> frozenset[str]:
    """The fields of a node class declared as a Span (annotations are strings in the modules
    that say `from __future__ import annotations`, classes elsewhere)."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.type in ("Span", Span))
