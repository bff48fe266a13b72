"""The language server (`microverify-lsp`, LSP over stdio, built on pygls).

- Diagnostics as you type: every parse and type error of the open file (and of what it
  imports), as `prove --check` reports them on the files as their editors show them, on open and
  on every change. An imported file that is open is read from its editor, not from the disk;
  a change to it (opening or closing it too) checks again the open files that import it. A
  file shows what the checks of every open file found in it: its own, and those of its
  importers, each the last one's.
- On save: the obligations of the saved file are proved (with the result cache of the
  workspace, `.microverify-cache`), and each one that is not proved becomes a diagnostic on the
  statement responsible for its counterexample (else on its operation), with the other
  responsible statements as related information. Every other open file that imports the saved
  one (directly or not) is proved again too, as it is in its editor.
- Hover on an operation's name: its obligations and their status from the last save.
- Go to definition: names of types, constants, defs, principals, oracles, layers, state fields
  and operations, and the file of an `import`.

An open file is read as `prove` reads it from the disk (`editor_text`): refused past the size
limit, a leading byte-order mark no part of the model. Positions are in the code units of the
position encoding agreed with the client (prover/positions.py).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from microverify import __version__
from microverify.dsl import ast, ir
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError
from microverify.dsl.limits import MAX_FILE_BYTES
from microverify.dsl.loader import Reader, load_text, read_file, read_source, resolve, too_large
from microverify.dsl.parser import parse
from microverify.dsl.spans import Span, source_lines
from microverify.files import unwritable
from microverify.prover.cache import DEFAULT_DIR, MAX_ENTRIES, prune
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.formats import message
from microverify.prover.positions import Columns, file_of, path_of, uri_of
from microverify.prover.verdict import Options, Result, Status

SOURCE = "microverify"
_WORD = re.compile(r"[A-Za-z_]\w*")


def _contains(span: Span, line: int, column: int) -> bool:
    """Whether the 1-based position is inside the span."""
    return (span.line, span.column) <= (line, column) < (span.end_line, span.end_column)


@dataclass
class _Document:
    """What the server knows of one open file: its proof results from the last save."""

    results: list[Result] = field(default_factory=list)
    proved_text: str | None = None  # the text they are for
    reads: frozenset[Path] = frozenset()  # the files its last check read: itself and its imports
    proof_shown: bool = False  # whether its diagnostics are those of its last proof (else of its last check)


class MicroverifyServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("microverify-lsp", __version__)
        self.documents: dict[str, _Document] = {}
        self.found: dict[str, dict[str, list[types.Diagnostic]]] = {}  # document -> file -> its last check's or proof's

    def publish(self, found: Mapping[str, dict[str, list[types.Diagnostic]] | None]) -> None:
        """What checking or proving each document found, by file, in place of what it found
        before (None: it is closed, it found nothing). Each file concerned is sent, once, what
        every open document found in it, each diagnostic once: what one found never hides what
        another did."""
        concerned: set[str] = set()
        for owner, by_file in found.items():
            concerned |= set(self.found.pop(owner, {})) | set(by_file or {}) | {owner}
            if by_file is not None:
                self.found[owner] = by_file
        for uri in sorted(concerned):
            shown: list[types.Diagnostic] = []
            seen: set[tuple[object, ...]] = set()
            for _, theirs in sorted(self.found.items(), key=lambda item: item[0] != uri):  # its own first
                for d in theirs.get(uri, []):
                    key = (d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character,
                           d.code, d.message)
                    if key not in seen:
                        seen.add(key)
                        shown.append(d)
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=shown))

    def reader(self) -> Reader:
        """How a check reads a file: from its editor when it is open (the text shown there),
        else from the disk, as `prove` reads it."""
        buffers = {file_of(uri): uri for uri in self.documents if urlparse(uri).scheme == "file"}

        def read(path: Path) -> str:
            uri = buffers.get(resolve(path))
            return read_source(path) if uri is None else self.text(uri)
        return read

    def text(self, uri: str) -> str:
        """An open document's text as a check reads it (OSError if it cannot be read)."""
        return editor_text(self.workspace.get_text_document(uri).source)


def editor_text(source: str) -> str:
    """An editor's text read as read_source reads a file: refused when larger than
    MAX_FILE_BYTES in UTF-8, and a leading byte-order mark no part of the model. An editor that
    keeps one counts it as a character, so it is read as a blank: columns stay the editor's."""
    if len(source) > MAX_FILE_BYTES // 4 and len(source.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise too_large()
    return " " + source[1:] if source.startswith("\ufeff") else source


server = MicroverifyServer()


def _front_end(ls: MicroverifyServer, uri: str) -> tuple[ir.Module | None, dict[str, list[types.Diagnostic]], Columns]:
    """The open document checked as its editor has it (what it imports as their editors have
    it, if open): the module, or its parse and type errors (and those of what it imports) by
    file URI; and the columns of the texts read. The files read are kept with the document
    (`reads`): a change to one checks it again."""
    sources: dict[str, str] = {}
    columns = Columns(ls, sources)
    module: ir.Module | None = None
    problems: dict[str, list[types.Diagnostic]] = {}
    path = path_of(uri)
    try:  # read as `prove` reads a file: the same diagnostic if it cannot be
        text = read_file(path, sources, None, lambda _: ls.text(uri))
        module = load_text(text, str(path), sources, ls.reader())
    except DiagnosticError as exc:
        problems = _by_file(exc.diagnostics, uri, columns)
    document = ls.documents.setdefault(uri, _Document())
    document.reads = frozenset(resolve(Path(name)) for name in sources)
    return module, problems, columns


def _check(ls: MicroverifyServer, uri: str) -> dict[str, list[types.Diagnostic]]:
    """The open document's errors, to show in place of its proof's, if shown."""
    problems = _front_end(ls, uri)[1]
    ls.documents[uri].proof_shown = False
    return problems


def _check_importers(ls: MicroverifyServer, uri: str) -> dict[str, dict[str, list[types.Diagnostic]] | None]:
    """Every other open document whose last check read the file at `uri`, which they now read
    otherwise (it changed, or was opened or closed), checked again: what each is to show now,
    by document. One that checks keeps the results of its last proof, if shown, until it is
    proved again (on a save): it is left out."""
    changed = file_of(uri)
    found: dict[str, dict[str, list[types.Diagnostic]] | None] = {}
    for other in [u for u, d in ls.documents.items() if u != uri and changed in d.reads]:
        module, problems, _ = _front_end(ls, other)
        if module is None or not ls.documents[other].proof_shown:
            ls.documents[other].proof_shown = False
            found[other] = problems
    return found


def _by_file(diagnostics: list[Diagnostic], uri: str, columns: Columns) -> dict[str, list[types.Diagnostic]]:
    out: dict[str, list[types.Diagnostic]] = {}
    for d in diagnostics:
        target = uri_of(d.span.file, uri) if d.span.file else uri
        out.setdefault(target, []).append(types.Diagnostic(
            range=columns.range(d.span), message=" ".join((d.message, *(f"({n})" for n in d.notes))),
            severity=types.DiagnosticSeverity.Error, code=d.code, source=SOURCE))
    return out


def _obligation_diagnostics(results: list[Result], uri: str, columns: Columns) -> dict[str, list[types.Diagnostic]]:
    out: dict[str, list[types.Diagnostic]] = {}
    for r in results:
        if r.status is Status.PROVED:
            continue
        cex = r.counterexample
        responsible = list(cex.responsible) if cex is not None else []
        at = responsible[0] if responsible else r.obligation.span
        related = [types.DiagnosticRelatedInformation(types.Location(uri_of(s.file, uri), columns.range(s)),
                                                      "responsible statement") for s in responsible[1:]]
        if at is not r.obligation.span:
            related.append(types.DiagnosticRelatedInformation(
                types.Location(uri_of(r.obligation.span.file, uri), columns.range(r.obligation.span)), r.obligation.id))
        out.setdefault(uri_of(at.file, uri), []).append(types.Diagnostic(
            range=columns.range(at), message=f"{r.obligation.id}: {message(r)}",
            severity=types.DiagnosticSeverity.Error,
            code=r.obligation.kind.value, source=SOURCE, related_information=related or None))
    return out


def _cache_dir(ls: MicroverifyServer, file: Path) -> Path | None:
    root = Path(ls.workspace.root_path) if ls.workspace.root_path else file.parent
    cache = root / DEFAULT_DIR
    return None if unwritable(cache) is not None else cache


def _prove(module: ir.Module, uri: str, cache: Path | None) -> list[Result]:
    """The obligations of the file at `uri` (not of the files it imports), proved."""
    file = file_of(uri)
    pairs = [(m, ob) for m, ob in obligations([module]) if resolve(Path(ob.file)) == file]
    started = time.time()
    results = prove_pairs(pairs, Options(), jobs=1, cache_dir=cache)
    if cache is not None and not all(r.cached for r in results):
        prune(cache, MAX_ENTRIES, started)  # as `prove` does with its default
    return results


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: MicroverifyServer, params: types.DidOpenTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents[uri] = _Document()
    ls.publish({uri: _check(ls, uri), **_check_importers(ls, uri)})


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: MicroverifyServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.publish({uri: _check(ls, uri), **_check_importers(ls, uri)})


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: MicroverifyServer, params: types.DidSaveTextDocumentParams) -> None:
    saved = params.text_document.uri
    await _check_and_prove(ls, saved)
    changed = file_of(saved)
    for uri in [u for u, d in ls.documents.items() if u != saved and changed in d.reads]:
        if uri in ls.documents:  # not closed meanwhile
            await _check_and_prove(ls, uri)


async def _check_and_prove(ls: MicroverifyServer, uri: str) -> None:
    """Check the document as its editor has it, prove it if it checks, and publish either."""
    module, problems, columns = _front_end(ls, uri)
    if module is None:
        ls.documents[uri].proof_shown = False
        ls.publish({uri: problems})
        return
    text = ls.text(uri)  # what was checked: the buffer cannot change before the next await
    results = await asyncio.to_thread(_prove, module, uri, _cache_dir(ls, path_of(uri)))
    document = ls.documents.get(uri)
    if document is None:  # closed meanwhile
        return
    document.results, document.proved_text, document.proof_shown = results, text, True
    ls.publish({uri: _obligation_diagnostics(results, uri, columns)})


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: MicroverifyServer, params: types.DidCloseTextDocumentParams) -> None:
    """What it found goes with it; the files that import it read it from the disk again."""
    uri = params.text_document.uri
    ls.documents.pop(uri, None)
    ls.publish({uri: None, **_check_importers(ls, uri)})


@dataclass(frozen=True)
class _At:
    """A request's document, parsed, and its position (1-based, as spans are, in characters)."""

    uri: str
    text: str
    module: ast.Module
    line: int
    column: int
    columns: Columns  # of the document's text
    source_line: str  # the line of the position, as the parser counts lines


def _at(ls: MicroverifyServer, document: types.TextDocumentIdentifier, position: types.Position) -> _At | None:
    """None while the document does not parse."""
    name = str(path_of(document.uri))
    try:
        text = ls.text(document.uri)
        module = parse(text, name)
    except (DiagnosticError, OSError):
        return None
    lines = source_lines(text)  # as the parser counts them: a form feed is no line break
    source_line = lines[position.line] if position.line < len(lines) else ""
    columns = Columns(ls, {name: text})
    return _At(document.uri, text, module, position.line + 1, columns.column(source_line, position.character),
               columns, source_line)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: MicroverifyServer, params: types.HoverParams) -> types.Hover | None:
    at = _at(ls, params.text_document, params.position)
    if at is None:
        return None
    uri, text, line, column = at.uri, at.text, at.line, at.column
    for decl in at.module.decls:
        if not isinstance(decl, ast.LayerDecl):
            continue
        for op in decl.ops:
            if not _contains(op.name_span, line, column):
                continue
            doc = ls.documents.get(uri)
            mine = [r for r in (doc.results if doc else []) if r.obligation.layer == decl.name
                    and r.obligation.op == op.name]
            if not mine or doc is None or doc.proved_text != text:
                body = f"**{decl.name}.{op.name}**: not proved since the last change (save to prove it)"
            else:
                body = f"**{decl.name}.{op.name}**: " + ", ".join(
                    f"{sum(r.status is s for r in mine)} {s.value}" for s in Status if any(r.status is s for r in mine))
                body += "\n\n" + "\n".join(f"- `{r.obligation.id}` {r.status.value}"
                                           + (f": {r.detail}" if r.detail else "") for r in mine)
            return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, body), at.columns.range(op.name_span))
    return None


def _declarations(module: ast.Module, uri: str, seen: set[str], read: Reader,
                  texts: dict[str, str]) -> dict[str, Span]:
    """Every name the module and what it imports declare, with where (the first declaration);
    the texts of the imported files read, by name, go to `texts`."""
    found: dict[str, Span] = {}
    for decl in module.decls:
        if isinstance(decl, ast.Import):
            target = resolve(path_of(uri).parent / decl.path)
            if target.as_uri() in seen:
                continue
            seen.add(target.as_uri())
            try:
                text = read(target)
                imported = parse(text, str(target))
            except (DiagnosticError, OSError, UnicodeDecodeError):
                continue
            texts[str(target)] = text
            for name, span in _declarations(imported, target.as_uri(), seen, read, texts).items():
                found.setdefault(name, span)
        elif isinstance(decl, ast.DefDecl):
            found.setdefault(decl.name, decl.name_span)
        elif isinstance(decl, (ast.ConstDecl, ast.TypeDecl, ast.PrincipalDecl, ast.OracleDecl)):
            found.setdefault(decl.name, decl.span)
        elif isinstance(decl, ast.LayerDecl):
            found.setdefault(decl.name, decl.span)
    return found


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: MicroverifyServer, params: types.DefinitionParams) -> types.Location | None:
    at = _at(ls, params.text_document, params.position)
    if at is None:
        return None
    uri, text, module, line, column = at.uri, at.text, at.module, at.line, at.column
    for decl in module.decls:  # the file of an import
        if isinstance(decl, ast.Import) and _contains(decl.span, line, column):
            target = resolve(path_of(uri).parent / decl.path)
            start = types.Range(types.Position(0, 0), types.Position(0, 0))
            return types.Location(target.as_uri(), start) if target.is_file() else None
    word = next((m.group() for m in _WORD.finditer(at.source_line) if m.start() < column <= m.end()), None)
    if word is None:
        return None
    for decl in module.decls:  # a field or an operation of the layer the cursor is in
        if isinstance(decl, ast.LayerDecl) and _contains(decl.span, line, column):
            local = {f.name: f.span for f in decl.state} | {op.name: op.name_span for op in decl.ops}
            if word in local:
                return types.Location(uri, at.columns.range(local[word]))
    texts = {str(path_of(uri)): text}
    span = _declarations(module, uri, {uri}, ls.reader(), texts).get(word)
    if span is None:
        return None
    return types.Location(uri_of(span.file, uri), Columns(ls, texts).range(span))


def main() -> None:
    """The `microverify-lsp` command: a language server on standard input and output."""
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print("microverify-lsp: the microverify language server (LSP over standard input and output)")
        return
    server.start_io()
