"""Where things are, as the language server and its client name them: files by URI, and
columns in the code units of the position encoding agreed with the client (UTF-16 unless it
asks for another: a character outside the Basic Multilingual Plane is two of UTF-16's), where
spans count characters (code points)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from microverify.dsl.loader import resolve
from microverify.dsl.spans import Span, source_lines


def path_of(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def file_of(uri: str) -> Path:
    """The file a URI names, resolved (made absolute where it cannot be: a NUL in the name)."""
    return resolve(path_of(uri))


def uri_of(file: str, document: str | None = None) -> str:
    """The URI of a file a span names: the open document's own URI when it is that file (as
    the editor spelt it), else the file's."""
    resolved = resolve(Path(file))
    if document is not None and file_of(document) == resolved:
        return document
    return resolved.as_uri()


class Columns:
    """Columns as the protocol counts them, in code units of the agreed position encoding,
    where spans count characters (code points). A span's line is taken from the text the span
    was found in (`texts`, by file name), split as the parser counts lines."""

    def __init__(self, ls: LanguageServer, texts: Mapping[str, str] | None = None) -> None:
        self.codec = ls.workspace.position_codec
        self.texts = {} if texts is None else texts
        self.lines: dict[str, list[str] | None] = {}  # by file, once: None for an ASCII text

    def units(self, chars: str) -> int:
        return int(self.codec.client_num_units(chars))

    def character(self, file: str, line: int, column: int) -> int:
        """The protocol's 0-based character of a 1-based column."""
        if file not in self.lines:  # a text is scanned once, not at every range sent
            text = self.texts.get(file, "")
            self.lines[file] = None if text.isascii() else source_lines(text)
        lines = self.lines[file]
        if lines is None:  # the usual file: one unit a character in every encoding
            return max(column - 1, 0)
        head = lines[line - 1][:max(column - 1, 0)] if 0 < line <= len(lines) else ""
        return self.units(head) + max(column - 1 - len(head), 0)

    def range(self, span: Span) -> types.Range:
        """LSP positions are 0-based; a span's end column is exclusive, as LSP's."""
        return types.Range(types.Position(span.line - 1, self.character(span.file, span.line, span.column)),
                           types.Position(span.end_line - 1, self.character(span.file, span.end_line, span.end_column)))

    def column(self, line: str, character: int) -> int:
        """The 1-based column of the character at the protocol's `character` in the line (of
        the one whose code units it is inside, if it is inside one)."""
        if line.isascii():
            return character + 1
        units = 0
        for i, c in enumerate(line):
            units += self.units(c)
            if units > character:
                return i + 1
        return len(line) + 1 + character - units
