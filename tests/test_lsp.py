"""The language server end to end: `microverify-lsp` runs in a subprocess and is driven over
stdio by pytest-lsp's client, as an editor drives it. Open a file with an error and see the
diagnostic; fix it and see it go; save and see the obligations' results; hover an operation;
go to a definition."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from conftest import ROOT

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
        """Save the imported file; the importer's diagnostics once they change (each save below
        flips them). Read from the client's record of every notification, since the two that
        follow a save (the imported file's own, then the importer's) may come at once, the
        second before a new wait for it has begun."""
        before = list(client.diagnostics.get(uri, []))
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
