"""What a syntax error is likely caused by, read from the source text: a misspelt keyword at the
start of a line (`chek x == 0 else halt`), and brackets opened and never closed, found by
indentation. Used by dsl/parser.py only once a parse has failed, to report one error per cause
and to point at the `{` a missing `}` belongs to."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from microverify.dsl.spans import source_lines

# A line that starts with a word followed by something that is no continuation of a name in an
# expression or a declaration (`:=`, `[`, `.`, `(`, `:`, `,`, an operator): a statement or a
# declaration, whose first word must be a keyword.
_LEADING_WORD = re.compile(r"^(\s*)([A-Za-z_]\w*)[ \t]+(?=[A-Za-z_{!(0-9])")
_CLOSE_ENOUGH = 0.75  # difflib's ratio: `chek` and `check`, `invarant` and `invariant`
_PAIRS = {"{": "}", "(": ")", "[": "]"}


@dataclass(frozen=True)
class Typo:
    """A word at the start of line `line` (1-based), column `column` (1-based), that is close
    to the keyword `keyword`."""

    line: int
    column: int
    word: str
    keyword: str


def keyword_typos(text: str, keywords: frozenset[str]) -> list[Typo]:
    """The words at the start of a line that look like misspelt keywords."""
    typos = []
    for number, line in enumerate(source_lines(text), start=1):
        m = _LEADING_WORD.match(line)
        if m is None or m.group(2) in keywords:
            continue
        close = difflib.get_close_matches(m.group(2), sorted(keywords), n=1, cutoff=_CLOSE_ENOUGH)
        if close:
            typos.append(Typo(number, len(m.group(1)) + 1, m.group(2), close[0]))
    return typos


def repaired(text: str, typos: list[Typo], missing: list[int]) -> tuple[str, list[int | None]]:
    """The text with each misspelt keyword replaced by the keyword and a line `}` inserted
    before each line of `missing`, and for each of its lines the line of `text` it is (None
    for an inserted one)."""
    lines = [line + "\n" for line in text.split("\n")]  # numbered as spans are (spans.source_lines)
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    for t in typos:
        line = lines[t.line - 1]
        start = t.column - 1
        lines[t.line - 1] = line[:start] + t.keyword + line[start + len(t.word):]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    out: list[str] = []
    origin: list[int | None] = []
    for number, line in enumerate(lines, start=1):
        if number in missing:
            out.append("}\n")
            origin.append(None)
        out.append(line)
        origin.append(number)
    return "".join(out), origin


def _code(line: str) -> str:
    """The line without its `//` comment and with the insides of string literals blanked."""
    out = []
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted:
            out.append(" " if c != '"' else c)
            quoted = c != '"'
        elif c == '"':
            out.append(c)
            quoted = True
        elif line.startswith("//", i):
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Unclosed:
    """A bracket opened at `line`, `column` (1-based) and never closed; `by` is the first line
    after it indented no deeper than the line that opens it, where it should have been closed
    (0 at the end of the file)."""

    line: int
    column: int
    bracket: str
    by: int


def unclosed(text: str) -> list[Unclosed]:
    """Brackets that are opened and never closed.

    A closing bracket matches the innermost open one of its kind, except that a `}` that begins
    a line closes the innermost open `{` whose line is indented as much (a missing `}` is found
    where it is missing, not at the end of the file, in a file indented the usual way); the `{`
    opened inside it and not closed are those reported."""
    stack: list[tuple[int, int, str, int]] = []  # (line, column, bracket, indentation of its line)
    lost: list[tuple[int, int, str]] = []
    for number, raw in enumerate(source_lines(text), start=1):
        line = _code(raw)
        indent = len(line) - len(line.lstrip(" \t"))
        for column, c in enumerate(line, start=1):
            if c in _PAIRS:
                stack.append((number, column, c, indent))
            elif c in _PAIRS.values():
                want = next(o for o, close in _PAIRS.items() if close == c)
                leading = column == indent + 1
                at = next((k for k in range(len(stack) - 1, -1, -1) if stack[k][2] == want
                           and (not (leading and want == "{") or stack[k][3] == indent)), None)
                if at is None:
                    at = next((k for k in range(len(stack) - 1, -1, -1) if stack[k][2] == want), None)
                if at is None:
                    continue  # a stray closing bracket: the parser reports it
                lost.extend((o[0], o[1], o[2]) for o in stack[at + 1:] if o[2] == "{")
                del stack[at:]
    lines = [_code(raw) for raw in source_lines(text)]

    def closing_line(line: int) -> int:
        depth = len(lines[line - 1]) - len(lines[line - 1].lstrip(" \t"))
        return next((n for n in range(line + 1, len(lines) + 1) if lines[n - 1].strip()
                     and len(lines[n - 1]) - len(lines[n - 1].lstrip(" \t")) <= depth), 0)

    return [Unclosed(line, column, bracket, closing_line(line))
            for line, column, bracket in sorted(lost + [(o[0], o[1], o[2]) for o in stack])]
