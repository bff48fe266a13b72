"""The language server end to end: `microverify-lsp` runs in a subprocess and is driven over
stdio by pytest-lsp's client, as an editor drives it. Open a file with an error and see the
diagnostic; fix it and see it go; save and see the obligations' results; hover an operation;
go to a definition."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from conftest import CASES

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = """principal KServ
principal VM(v: vmid)
type vmid = bv[1]
type word = bv[8]
layer L {
  state { secret : map[vmid] -> word
          public : word }
  observe KServ { public }
  observe VM(v) { secret[v] }
  op write(v: vmid, x: word) by VM(v) { secret[v] := x }
  op copy(v: vmid) by KServ {
    public := secret[v]
  }
}
"""


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-c",
                                                              "from microverify.prover.lsp import main; main()"]),
                    scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("workspace")
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=root.as_uri()))
    lsp_client.root = root  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


async def open_file(client: LanguageClient, name: str, text: str) -> tuple[str, Path]:
    path = client.root / name  # type: ignore[attr-defined]
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="microverify", version=1, text=text)))
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri, path


async def change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [types.TextDocumentContentChangeWholeDocument(text=text)]))
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)


_versions = itertools.count(100)


def edit(client: LanguageClient, uri: str, text: str) -> None:
    """Replace the buffer's text, without waiting for what the server publishes."""
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=next(_versions)),
        [types.TextDocumentContentChangeWholeDocument(text=text)]))


async def settled(client: LanguageClient, uri: str) -> None:
    """Wait until the server has handled every notification sent before (and the client has
    every diagnostic they published): it answers a request only after them, in order."""
    await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=0, character=0)))


async def save(client: LanguageClient, uri: str, path: Path, text: str) -> None:
    path.write_text(text)
    client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=uri)))
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)


async def test_an_error_shows_as_you_type_and_goes_when_fixed(client: LanguageClient) -> None:
    broken = MODEL.replace("type word = bv[8]", "type word = bv[0]")
    uri, _ = await open_file(client, "typing.mv", broken)
    (d,) = client.diagnostics[uri]
    assert (d.code, d.range.start.line, d.range.start.character) == ("bad-type", 3, 12)
    assert d.severity is types.DiagnosticSeverity.Error and "bit-vector width" in d.message
    await change(client, uri, 2, MODEL.replace("chek", "check"))
    assert list(client.diagnostics[uri]) == []
    await change(client, uri, 3, MODEL.replace("    public := secret[v]", "    chek public == 0 else halt"))
    (typo,) = client.diagnostics[uri]
    assert typo.code == "syntax" and "did you mean `check`?" in typo.message and typo.range.start.line == 11


async def test_saving_proves_the_file_and_hover_shows_each_obligation(client: LanguageClient) -> None:
    uri, path = await open_file(client, "leak.mv", MODEL)
    assert list(client.diagnostics[uri]) == []
    await save(client, uri, path, MODEL)
    (failure,) = client.diagnostics[uri]
    assert failure.code == "WSC" and failure.message.startswith("L/WSC/copy/KServ: WSC (weak step consistency)")
    assert failure.range.start.line == 11  # `public := secret[v]`, the responsible statement
    hover = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=10, character=6)))  # `copy`
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    assert "`L/WSC/copy/KServ` FAILED" in hover.contents.value and "`L/INV/copy` PROVED" in hover.contents.value
    fixed = MODEL.replace("    public := secret[v]\n", "    public := 0\n")
    await change(client, uri, 2, fixed)
    stale = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=10, character=6)))
    assert stale is not None and "save to prove it" in stale.contents.value  # type: ignore[union-attr]
    await save(client, uri, path, fixed)
    assert list(client.diagnostics[uri]) == []


async def test_go_to_definition_of_a_type_a_field_and_an_import(client: LanguageClient) -> None:
    (client.root / "base.mv").write_text("principal KServ\ntype word = bv[8]\n")  # type: ignore[attr-defined]
    text = 'import "base.mv"\nlayer L {\n  state { x : word }\n  observe KServ { x }\n  op f() by KServ { x := 0 }\n}\n'
    uri, _ = await open_file(client, "main.mv", text)
    assert list(client.diagnostics[uri]) == []

    async def at(line: int, character: int) -> types.Location:
        found = await client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(uri=uri), types.Position(line=line, character=character)))
        assert isinstance(found, types.Location), found
        return found

    word = await at(2, 15)  # `word` in `x : word`
    assert word.uri.endswith("/base.mv") and word.range.start.line == 1
    field = await at(4, 20)  # `x` in `x := 0`
    assert field.uri == uri and (field.range.start.line, field.range.start.character) == (2, 10)
    imported = await at(0, 10)  # the imported file's name
    assert imported.uri.endswith("/base.mv") and imported.range.start.line == 0


async def test_go_to_definition_counts_lines_as_the_parser_does(client: LanguageClient) -> None:
    """A form feed is whitespace, not a line break (nor to the protocol); the word under the
    cursor was looked up on a line counted by str.splitlines, one too far on."""
    (client.root / "paged.mv").write_text("principal KServ\ntype word = bv[8]\n")  # type: ignore[attr-defined]
    text = 'import "paged.mv"\n// one page\f the next\nlayer L {\n  state { x : word }\n  op f() by KServ { x := 0 }\n}\n'
    uri, _ = await open_file(client, "paged_main.mv", text)
    assert list(client.diagnostics[uri]) == []
    found = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=3, character=15)))  # `word`
    assert isinstance(found, types.Location) and found.uri.endswith("/paged.mv") and found.range.start.line == 1


async def test_saving_an_imported_file_proves_the_open_files_that_import_it(client: LanguageClient) -> None:
    """An importer's results depend on what it imports: saving the imported file proves every
    open file that imports it again, without saving them (the other way round they would keep
    the results of the old import until their next save)."""
    secure = "def shown(secret: map[vmid] -> word, v: vmid) -> word = 0\n"
    leaky = "def shown(secret: map[vmid] -> word, v: vmid) -> word = secret[v]\n"
    lib_uri, lib = await open_file(client, "shown.mv", secure)
    importer = 'import "shown.mv"\n' + MODEL.replace("public := secret[v]", "public := shown(secret, v)")
    uri, path = await open_file(client, "importer.mv", importer)
    await save(client, uri, path, importer)
    assert list(client.diagnostics[uri]) == []

    async def saved(text: str) -> list[types.Diagnostic]:
        """Edit and save the imported file, as an editor does (the server reads an open file
        from its buffer, not from the disk); the importer's diagnostics once they change (each
        save below flips them). Read from the client's record of every notification, since the
        two that follow a save (the imported file's own, then the importer's) may come at once,
        the second before a new wait for it has begun."""
        before = list(client.diagnostics.get(uri, []))
        edit(client, lib_uri, text)
        lib.write_text(text)
        client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=lib_uri)))
        deadline = asyncio.get_running_loop().time() + 60
        while list(client.diagnostics.get(uri, [])) == before:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the importer was not proved again")
            await asyncio.sleep(0.05)
        return list(client.diagnostics[uri])

    (failure,) = await saved(leaky)
    assert failure.code == "WSC" and failure.message.startswith("L/WSC/copy/KServ")
    hover = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=11, character=6)))  # `copy`
    assert hover is not None and "`L/WSC/copy/KServ` FAILED" in hover.contents.value  # type: ignore[union-attr]
    assert await saved(secure) == []


def _stack(client: LanguageClient, folder: str, spec: str) -> tuple[str, str, Path, str]:
    """Copies of tests/cases/stacks/{spec,machine}.mv (machine.mv imports spec.mv) in a folder
    of their own, spec.mv written with the given text: their URIs, spec.mv's path and
    machine.mv's text."""
    root = client.root / folder  # type: ignore[attr-defined]
    root.mkdir()
    (root / "spec.mv").write_text(spec)
    machine = (CASES / "stacks" / "machine.mv").read_text()
    (root / "machine.mv").write_text(machine)
    return (root / "spec.mv").as_uri(), (root / "machine.mv").as_uri(), root / "spec.mv", machine


def _open(client: LanguageClient, uri: str, text: str) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="microverify", version=1, text=text)))


SPEC = (CASES / "stacks" / "spec.mv").read_text()
E1 = SPEC.replace("    mem[p] := x\n", "    mem[p] := true\n")  # a type error at 42:15
E2 = SPEC.replace("    owner[p] := KServ\n", "    owner[p] := 5\n")  # one at 36:17


def _where(client: LanguageClient, uri: str) -> list[tuple[int, int, str | int | None]]:
    return [(d.range.start.line + 1, d.range.start.character + 1, d.code) for d in client.diagnostics.get(uri, [])]


async def test_an_imported_file_open_in_the_editor_is_checked_as_its_buffer_shows_it(client: LanguageClient) -> None:
    """spec.mv is open with an unsaved fix of the error its file still has; opening machine.mv,
    which imports it, checked spec.mv as the disk has it and showed the disk's error on spec.mv,
    at a line that in the editor is correct."""
    assert E1 != SPEC and E2 != SPEC
    spec, machine, _, machine_text = _stack(client, "stack_unsaved_fix", E1)
    _open(client, spec, SPEC)
    _open(client, machine, machine_text)
    await settled(client, machine)
    assert _where(client, spec) == [] and _where(client, machine) == []


async def test_diagnostics_found_by_an_importer_do_not_replace_the_imported_files_own(client: LanguageClient) -> None:
    """machine.mv is opened while spec.mv has an error on disk; spec.mv is fixed and saved,
    opened, and a new error typed in it. spec.mv shows the new error alone: not the old one
    (machine.mv's check found it in a text no longer there), and still after machine.mv is
    edited (its check published spec.mv -> [] over it). Closed unsaved, spec.mv is again the
    file on disk: machine.mv's check shows the disk's error on it."""
    spec, machine, spec_path, machine_text = _stack(client, "stack_new_error", E1)
    _open(client, machine, machine_text)
    await settled(client, machine)
    assert _where(client, spec) == [(42, 15, "type-mismatch")]
    spec_path.write_text(SPEC)  # fixed and saved
    _open(client, spec, SPEC)
    await settled(client, spec)
    assert _where(client, spec) == []
    edit(client, spec, E2)
    await settled(client, spec)
    assert _where(client, spec) == [(36, 17, "type-mismatch")]
    edit(client, machine, machine_text + "\n")
    await settled(client, machine)
    assert _where(client, spec) == [(36, 17, "type-mismatch")] and _where(client, machine) == []
    spec_path.write_text(E1)
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=spec)))
    await settled(client, machine)
    assert _where(client, spec) == [(42, 15, "type-mismatch")]


EMOJI = "/* \U0001f600 */"  # one character, two UTF-16 code units: the protocol's unit (positionEncoding)


async def test_columns_are_utf16_code_units(client: LanguageClient) -> None:
    """After a character outside the Basic Multilingual Plane, every column the server sent
    (a diagnostic's, in the open file and in a file it imports, a hover's, a definition's) was
    one short for each such character, and each it was sent was read one too far on."""
    (client.root / "astral_base.mv").write_text(  # type: ignore[attr-defined]
        f"principal KServ\n{EMOJI} type word = bv[8]\n{EMOJI} type byte = bv[0]\n")
    text = (f'import "astral_base.mv"\nlayer L {{\n  state {{ {EMOJI} x : {EMOJI} word }}\n  observe KServ {{ x }}\n'
            f'  op {EMOJI} f() by KServ {{ x := 0 }}\n}}\n')
    uri, _ = await open_file(client, "astral.mv", text)
    await settled(client, uri)
    base = (client.root / "astral_base.mv").as_uri()  # type: ignore[attr-defined]
    (width,) = client.diagnostics[base]  # `bv[0]`: 20 characters on, 21 UTF-16 code units
    assert (width.range.start.line, width.range.start.character, width.range.end.character) == (2, 21, 26)
    assert width.code == "bad-type"
    edit(client, uri, text.replace(f"{EMOJI} x : {EMOJI} word", f"{EMOJI} x : {EMOJI} wrd"))
    await settled(client, uri)
    (unknown,) = client.diagnostics[uri]
    assert (unknown.range.start.line, unknown.range.start.character, unknown.range.end.character) == (2, 32, 35)
    (client.root / "astral_base.mv").write_text(  # type: ignore[attr-defined]
        f"principal KServ\n{EMOJI} type word = bv[8]\n")
    edit(client, uri, text)
    await settled(client, uri)
    assert list(client.diagnostics[uri]) == []

    hover = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=4, character=14)))  # the `f` of `f()`
    assert hover is not None and hover.range is not None
    assert (hover.range.start.character, hover.range.end.character) == (14, 15)
    assert await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line=4, character=15))) is None  # its `(`

    async def at(line: int, character: int) -> types.Location | None:
        found = await client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(uri=uri), types.Position(line=line, character=character)))
        assert found is None or isinstance(found, types.Location), found
        return found

    word = await at(2, 35)  # the `d` of `word`
    assert word is not None and word.uri == base
    assert (word.range.start.line, word.range.start.character) == (1, 9)  # `type word`, after the emoji
    field = await at(4, 29)  # `x` in `x := 0`
    assert field is not None and (field.range.start.line, field.range.start.character) == (2, 19)
    assert await at(2, 36) is None  # the space after `word`


async def test_a_file_name_with_a_nul_is_checked_and_breaks_nothing(client: LanguageClient) -> None:
    """A URI with %00 (no file can have that name) raised ValueError: embedded null byte in the
    server, which published nothing. Its text is checked as any other; the server carries on."""
    folder = (client.root / "nul").as_uri()  # type: ignore[attr-defined]
    uri = folder + "/%FF%00x.mv"
    _open(client, uri, MODEL.replace("type word = bv[8]", "type word = bv[0]"))
    await settled(client, uri)
    assert _where(client, uri) == [(4, 13, "bad-type")]
    inside = folder + "/%00/in.mv"  # a folder with a NUL: an import from it cannot be read
    _open(client, inside, 'import "base.mv"\n' + MODEL)
    await settled(client, inside)
    ((line, column, code),) = _where(client, inside)
    assert (line, column, code) == (1, 1, "io") and "cannot read" in client.diagnostics[inside][0].message
    assert not [m for m in client.log_messages if "Error" in m.message]


async def test_a_buffer_with_a_byte_order_mark_checks_as_the_file_does(client: LanguageClient) -> None:
    """`prove` reads a file's leading byte-order mark as no character; an editor that keeps it
    in the buffer sent it to the parser, a syntax error at 1:1 for a file that proves. It is
    read as a blank now, and still counted as the editor counts it: an error on its line is
    under the right character (and in a file it imports, open with one too)."""
    root = client.root / "bom"  # type: ignore[attr-defined]
    root.mkdir()
    base = "principal KServ\ntype word = bv[8]\n"
    (root / "base.mv").write_text(base)
    uri = (root / "main.mv").as_uri()
    text = '\ufeffimport "base.mv"\nlayer L {\n  state { x : word }\n  observe KServ { x }\n  op f() by KServ { x := 0 }\n}\n'
    _open(client, uri, text)
    await settled(client, uri)
    assert _where(client, uri) == []
    edit(client, uri, "\ufeff" + text[1:].replace('"base.mv"', '"base.mv" bad', 1))
    await settled(client, uri)
    assert [(line, column) for line, column, _ in _where(client, uri)] == [(1, 19)]  # `bad`, BOM counted
    _open(client, (root / "base.mv").as_uri(), "\ufeff" + base.replace("bv[8]", "bv[0]"))
    edit(client, uri, text)
    await settled(client, uri)
    assert _where(client, (root / "base.mv").as_uri()) == [(2, 13, "bad-type")]


async def test_a_buffer_larger_than_the_file_limit_is_refused_as_the_file_would_be(client: LanguageClient) -> None:
    """`prove` refuses a file of more than MAX_FILE_BYTES; the server checked such a buffer
    (open, or imported while open) whatever its size. Both are now an `io` error, as
    `prove` reports it, and the server carries on."""
    from microverify.dsl.limits import MAX_FILE_BYTES

    root = client.root / "huge"  # type: ignore[attr-defined]
    root.mkdir()
    padding = "// " + "x" * 1000 + "\n"
    huge = "principal KServ\ntype word = bv[8]\n" + padding * (MAX_FILE_BYTES // len(padding) + 1)
    uri = (root / "huge.mv").as_uri()
    _open(client, uri, huge)
    await settled(client, uri)
    ((line, column, code),) = _where(client, uri)
    assert (line, column, code) == (1, 1, "io") and "MiB" in client.diagnostics[uri][0].message
    importer = (root / "importer.mv").as_uri()
    _open(client, importer, 'import "huge.mv"\nlayer L {\n  state { x : word }\n  observe KServ { x }\n}\n')
    await settled(client, importer)
    ((line, column, code),) = _where(client, importer)
    assert (line, column, code) == (1, 1, "io") and "MiB" in client.diagnostics[importer][0].message
