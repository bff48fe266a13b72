"""The language server (`microverify-lsp`, LSP over stdio, built on pygls).

- Diagnostics as you type: every parse and type error of the open file (and of what it
  imports), as `prove --check` reports them, on open and on every change.
- On save: the obligations of the saved file are proved (with the result cache of the
  workspace, `.microverify-cache`), and each one that is not proved becomes a diagnostic on the
  statement responsible for its counterexample (else on its operation), with the other
  responsible statements as related information. Every other open file that imports the saved
  one (directly or not) is proved again too, as it is in its editor.
- Hover on an operation's name: its obligations and their status from the last save.
- Go to definition: names of types, constants, defs, principals, oracles, layers, state fields
  and operations, and the file of an `import`.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from microverify import __version__
from microverify.dsl import ast, ir
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError
from microverify.dsl.loader import load_text, read_source
from microverify.dsl.parser import parse
from microverify.dsl.spans import Span, source_lines
from microverify.files import unwritable
from microverify.prover.cache import DEFAULT_DIR, MAX_ENTRIES, prune
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.formats import message
from microverify.prover.verdict import Options, Result, Status

SOURCE = "microverify"
_WORD = re.compile(r"[A-Za-z_]\w*")


def path_of(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def uri_of(file: str, document: str | None = None) -> str:
    """The URI of a file a span names: the open document's own URI when it is that file (as
    the editor spelt it), else the file's."""
    resolved = Path(file).resolve()
    if document is not None and path_of(document).resolve() == resolved:
        return document
    return resolved.as_uri()


def _range(span: Span) -> types.Range:
    """LSP positions are 0-based; a span's end column is exclusive, as LSP's."""
    return types.Range(types.Position(span.line - 1, span.column - 1),
                       types.Position(span.end_line - 1, max(span.end_column - 1, 0)))


def _contains(span: Span, line: int, column: int) -> bool:
    """Whether the 1-based position is inside the span."""
    return (span.line, span.column) <= (line, column) < (span.end_line, span.end_column)


@dataclass
class _Document:
    """What the server knows of one open file: its proof results from the last save."""

    results: list[Result] = field(default_factory=list)
    proved_text: str | None = None  # the text they are for
    reads: frozenset[Path] = frozenset()  # the files its last successful check read: itself and its imports


class MicroverifyServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("microverify-lsp", __version__)
        self.documents: dict[str, _Document] = {}
        self.published: dict[str, set[str]] = {}  # document -> the files it published diagnostics to

    def publish(self, owner: str, by_file: dict[str, list[types.Diagnostic]]) -> None:
        """Diagnostics found checking `owner`, by file; files that had some before and have
        none now are cleared."""
        targets = set(by_file) | self.published.get(owner, set()) | {owner}
        for uri in targets:
            self.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=by_file.get(uri, [])))
        self.published[owner] = set(by_file)


server = MicroverifyServer()


def _front_end(ls: MicroverifyServer, uri: str,
               text: str) -> tuple[ir.Module | None, dict[str, list[types.Diagnostic]]]:
    """The checked module, or the parse and type errors of the text (and of what it imports)
    by file URI. When it checks, the files it read are kept with the document (`reads`)."""
    sources: dict[str, str] = {}
    try:
        module = load_text(text, str(path_of(uri)), sources)
    except DiagnosticError as exc:
        return None, _by_file(exc.diagnostics, uri)
    document = ls.documents.setdefault(uri, _Document())
    document.reads = frozenset(Path(name).resolve() for name in sources)
    return module, {}


def _by_file(diagnostics: list[Diagnostic], uri: str) -> dict[str, list[types.Diagnostic]]:
    out: dict[str, list[types.Diagnostic]] = {}
    for d in diagnostics:
        target = uri_of(d.span.file, uri) if d.span.file else uri
        out.setdefault(target, []).append(types.Diagnostic(
            range=_range(d.span), message=" ".join((d.message, *(f"({n})" for n in d.notes))),
            severity=types.DiagnosticSeverity.Error, code=d.code, source=SOURCE))
    return out


def _obligation_diagnostics(results: list[Result], uri: str) -> dict[str, list[types.Diagnostic]]:
    out: dict[str, list[types.Diagnostic]] = {}
    for r in results:
        if r.status is Status.PROVED:
            continue
        cex = r.counterexample
        responsible = list(cex.responsible) if cex is not None else []
        at = responsible[0] if responsible else r.obligation.span
        related = [types.DiagnosticRelatedInformation(types.Location(uri_of(s.file, uri), _range(s)),
                                                      "responsible statement") for s in responsible[1:]]
        if at is not r.obligation.span:
            related.append(types.DiagnosticRelatedInformation(
                types.Location(uri_of(r.obligation.span.file, uri), _range(r.obligation.span)), r.obligation.id))
        out.setdefault(uri_of(at.file, uri), []).append(types.Diagnostic(
            range=_range(at), message=f"{r.obligation.id}: {message(r)}", severity=types.DiagnosticSeverity.Error,
            code=r.obligation.kind.value, source=SOURCE, related_information=related or None))
    return out


def _cache_dir(ls: MicroverifyServer, file: Path) -> Path | None:
    root = Path(ls.workspace.root_path) if ls.workspace.root_path else file.parent
    cache = root / DEFAULT_DIR
    return None if unwritable(cache) is not None else cache


def _prove(module: ir.Module, uri: str, cache: Path | None) -> list[Result]:
    """The obligations of the file at `uri` (not of the files it imports), proved."""
    file = path_of(uri).resolve()
    pairs = [(m, ob) for m, ob in obligations([module]) if Path(ob.file).resolve() == file]
    started = time.time()
    results = prove_pairs(pairs, Options(), jobs=1, cache_dir=cache)
    if cache is not None and not all(r.cached for r in results):
        prune(cache, MAX_ENTRIES, started)  # as `prove` does with its default
    return results


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: MicroverifyServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.documents[params.text_document.uri] = _Document()
    ls.publish(params.text_document.uri, _front_end(ls, params.text_document.uri, params.text_document.text)[1])


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: MicroverifyServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.publish(uri, _front_end(ls, uri, ls.workspace.get_text_document(uri).source)[1])


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: MicroverifyServer, params: types.DidSaveTextDocumentParams) -> None:
    saved = params.text_document.uri
    await _check_and_prove(ls, saved)
    changed = path_of(saved).resolve()
    for uri in [u for u, d in ls.documents.items() if u != saved and changed in d.reads]:
        if uri in ls.documents:  # not closed meanwhile
            await _check_and_prove(ls, uri)


async def _check_and_prove(ls: MicroverifyServer, uri: str) -> None:
    """Check the document as its editor has it, prove it if it checks, and publish either."""
    text = ls.workspace.get_text_document(uri).source
    module, problems = _front_end(ls, uri, text)
    if module is None:
        ls.publish(uri, problems)
        return
    results = await asyncio.to_thread(_prove, module, uri, _cache_dir(ls, path_of(uri)))
    document = ls.documents.get(uri)
    if document is not None:  # not closed meanwhile
        ls.documents[uri] = _Document(results, text, document.reads)
    ls.publish(uri, _obligation_diagnostics(results, uri))


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: MicroverifyServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.documents.pop(params.text_document.uri, None)


@dataclass(frozen=True)
class _At:
    """A request's document, parsed, and its position (1-based, as spans are)."""

    uri: str
    text: str
    module: ast.Module
    line: int
    column: int


def _at(ls: MicroverifyServer, document: types.TextDocumentIdentifier, position: types.Position) -> _At | None:
    """None while the document does not parse."""
    text = ls.workspace.get_text_document(document.uri).source
    try:
        module = parse(text, str(path_of(document.uri)))
    except DiagnosticError:
        return None
    return _At(document.uri, text, module, position.line + 1, position.character + 1)


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
            return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, body), _range(op.name_span))
    return None


def _declarations(module: ast.Module, uri: str, seen: set[str]) -> dict[str, Span]:
    """Every name the module and what it imports declare, with where (the first declaration)."""
    found: dict[str, Span] = {}
    for decl in module.decls:
        if isinstance(decl, ast.Import):
            target = (path_of(uri).parent / decl.path).resolve()
            if target.as_uri() in seen or not target.is_file():
                continue
            seen.add(target.as_uri())
            try:
                imported = parse(read_source(target), str(target))
            except (DiagnosticError, OSError, UnicodeDecodeError):
                continue
            for name, span in _declarations(imported, target.as_uri(), seen).items():
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
            target = (path_of(uri).parent / decl.path).resolve()
            start = types.Range(types.Position(0, 0), types.Position(0, 0))
            return types.Location(target.as_uri(), start) if target.is_file() else None
    lines = source_lines(text)  # as the parser counts them: a form feed is no line break
    source_line = lines[params.position.line] if params.position.line < len(lines) else ""
    word = next((m.group() for m in _WORD.finditer(source_line) if m.start() <= params.position.character < m.end()),
                None)
    if word is None:
        return None
    for decl in module.decls:  # a field or an operation of the layer the cursor is in
        if isinstance(decl, ast.LayerDecl) and _contains(decl.span, line, column):
            local = {f.name: f.span for f in decl.state} | {op.name: op.name_span for op in decl.ops}
            if word in local:
                return types.Location(uri, _range(local[word]))
    span = _declarations(module, uri, {uri}).get(word)
    if span is None:
        return None
    return types.Location(uri_of(span.file, uri), _range(span))


def main() -> None:
    """The `microverify-lsp` command: a language server on standard input and output."""
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print("microverify-lsp: the microverify language server (LSP over standard input and output)")
        return
    server.start_io()
