"""The run index (prover/runindex.py): a run the cache answers in full takes its obligations and
keys from what an earlier run's front end gave, without loading a file, and only while every
file that front end read resolves and reads as it did. Each attack below changes what the
files mean after a run that proved them, in a way the index must notice, so that the leak is
found (FAILED), never answered PROVED from the cache."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import SECURE, SPLIT_ORDERS, split_over_two_files
from microverify.dsl.defines import parse_defines
from microverify.prover import cli
from microverify.prover.cache import RUNS_SUBDIR, checksum
from microverify.prover.verdict import ENCODINGS, Options

LEAKY = SECURE.replace("secret[v] := x", "secret[v + 1] := x")  # VM(v) writes its neighbour's secret
MAIN = 'import "lib.mv"\n'


def prove(capsys: pytest.CaptureFixture[str], cache: Path, *paths: Path, fmt: str = "text",
          defines: tuple[str, ...] = (), encoding: str = "qf") -> tuple[int, str]:
    """`prove` in this process (the index needs no solving process): exit status and what it
    printed, times left out."""
    capsys.readouterr()
    code = cli.run(list(paths), Options(encoding=encoding), quiet=False, jobs=1, cache_dir=cache, only=(), shard_text=None, fmt=fmt,
                   output=None, list_only=False, check_only=False, defines=parse_defines(defines))
    out = capsys.readouterr()
    return code, re.sub(r" *\d+\.\d+s  rlimit| *\"time\": [0-9.e-]+,?| time=\"[0-9.]+\"", "", out.out) + out.err


def loads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file was loaded")

    monkeypatch.setattr(cli, "load_all", no_loading)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main.mv imports lib.mv (the secure model), in a folder that is the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib.mv").write_text(SECURE)
    (tmp_path / "main.mv").write_text(MAIN)
    return tmp_path


def test_a_run_the_cache_answers_loads_no_file_and_says_what_a_cached_run_says(
        stack: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = stack / "c"
    code, cold = prove(capsys, cache, Path("main.mv"))
    assert code == 0 and "theorem: L is noninterfering" in cold
    assert len(list((cache / RUNS_SUBDIR).iterdir())) == 1
    for fmt in ("text", "json", "sarif", "junit"):
        with monkeypatch.context() as m:
            loads_nothing(m)
            code, indexed = prove(capsys, cache, Path("main.mv"), fmt=fmt)
        assert code == 0
        shutil.rmtree(cache / RUNS_SUBDIR)
        assert prove(capsys, cache, Path("main.mv"), fmt=fmt) == (0, indexed), fmt  # loaded (and kept again)
    assert "(cached)" in prove(capsys, cache, Path("main.mv"))[1]


def test_a_run_with_one_result_missing_loads_its_files_and_solves_that_one(
        stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = stack / "c"
    prove(capsys, cache, Path("main.mv"))
    entry = json.loads(next((cache / RUNS_SUBDIR).iterdir()).read_text())
    key = entry["obligations"][-1][-1]
    (cache / key[:2] / f"{key}.json").unlink()
    code, out = prove(capsys, cache, Path("main.mv"))
    assert code == 0
    assert [line.endswith("(cached)") for line in out.splitlines() if line.startswith("PROVED")].count(False) == 1


@pytest.mark.parametrize("corrupt", ["checksum", "shape"])
def test_a_corrupt_entry_is_ignored_with_a_warning(stack: Path, capsys: pytest.CaptureFixture[str],
                                                   corrupt: str) -> None:
    """An edited entry (its checksum no longer matches), or one of another shape with its checksum
    made to match: a warning, and the files are loaded."""
    cache = stack / "c"
    prove(capsys, cache, Path("main.mv"))
    (path,) = (cache / RUNS_SUBDIR).iterdir()
    entry = json.loads(path.read_text())
    if corrupt == "checksum":
        entry["obligations"][0][2] = "Other"
    else:
        entry["files"] = [entry["files"]]
        entry["checksum"] = checksum(entry)
    path.write_text(json.dumps(entry))
    code, out = prove(capsys, cache, Path("main.mv"))
    assert code == 0 and f"warning: ignoring an invalid cache entry {path}; loading the files" in out
    assert "Traceback" not in out


# -- attacks: the files change after a run that proved them; the leak must be found


def assert_leak_found(capsys: pytest.CaptureFixture[str], cache: Path, *paths: Path,
                      defines: tuple[str, ...] = (), layer: str = "L", encoding: str = "qf") -> None:
    code, out = prove(capsys, cache, *paths, defines=defines, encoding=encoding)
    assert code == 1, out
    assert re.search(rf"^FAILED +{layer}/LR/write/VM", out, re.M), out


def test_an_imported_file_edited_is_read_again(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prove(capsys, stack / "c", Path("main.mv"))
    (stack / "lib.mv").write_text(LEAKY)
    assert_leak_found(capsys, stack / "c", Path("main.mv"))


@pytest.mark.parametrize("order", SPLIT_ORDERS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_imported_model_edited_is_read_again_in_either_encoding_and_order(
        stack: Path, capsys: pytest.CaptureFixture[str], encoding: str, order: str) -> None:
    """The model in one file and an importer of it given as roots in either order, proved in
    either encoding; then the model is made leaky: two runs where VM(0) writes different
    values, and VM(1) sees its own secret differ."""
    split_over_two_files(stack, SECURE, "VM(v)", order)
    roots = [Path("model.mv"), Path("other.mv")]
    roots = roots if order == SPLIT_ORDERS[0] else roots[::-1]
    assert prove(capsys, stack / "c", *roots, encoding=encoding)[0] == 0
    (stack / "model.mv").write_text(LEAKY)
    assert_leak_found(capsys, stack / "c", *roots, encoding=encoding)


def test_a_link_an_import_goes_through_pointed_elsewhere_is_followed(
        stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The import names lib.mv, a link; the link is pointed at a leaky file of another name."""
    (stack / "secure.mv").write_text(SECURE)
    (stack / "leaky.mv").write_text(LEAKY)
    (stack / "lib.mv").unlink()
    os.symlink("secure.mv", stack / "lib.mv")
    prove(capsys, stack / "c", Path("main.mv"))
    (stack / "lib.mv").unlink()
    os.symlink("leaky.mv", stack / "lib.mv")
    assert_leak_found(capsys, stack / "c", Path("main.mv"))


def test_a_second_import_of_a_file_read_once_is_followed_where_it_now_leads(
        stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main.mv imports secure.mv, then lib.mv, a link to secure.mv (read once). The link is
    pointed at a file that adds a leaky layer: every file named before still reads the same,
    but the second import now leads elsewhere."""
    (stack / "secure.mv").write_text(SECURE)
    (stack / "extra.mv").write_text(LEAKY[LEAKY.index("layer"):].replace("layer L", "layer M"))
    (stack / "lib.mv").unlink()
    os.symlink("secure.mv", stack / "lib.mv")
    (stack / "main.mv").write_text('import "secure.mv"\nimport "lib.mv"\n')
    assert prove(capsys, stack / "c", Path("main.mv"))[0] == 0
    (stack / "lib.mv").unlink()
    os.symlink("extra.mv", stack / "lib.mv")
    assert_leak_found(capsys, stack / "c", Path("main.mv"), layer="M")


def test_a_root_given_through_a_link_is_named_as_the_file_it_now_leads_to(
        stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same text under another name proves the same, but the report names the file read."""
    (stack / "a.mv").write_text(SECURE)
    (stack / "b.mv").write_text(SECURE)
    os.symlink("a.mv", stack / "top.mv")
    assert '"a.mv"' in prove(capsys, stack / "c", Path("top.mv"), fmt="json")[1]
    (stack / "top.mv").unlink()
    os.symlink("b.mv", stack / "top.mv")
    code, out = prove(capsys, stack / "c", Path("top.mv"), fmt="json")
    assert code == 0 and '"b.mv"' in out and '"a.mv"' not in out


def shown_alike(folder: Path) -> tuple[Path, Path]:
    """Two files whose names show alike: `\\xff.mv` (a backslash and three letters) and the byte
    0xFF then `.mv`, which is not UTF-8 and so is shown with the same escape."""
    return folder / "\\xff.mv", Path(os.fsdecode(os.fsencode(folder) + b"/\xff.mv"))


@pytest.mark.parametrize("edited", [0, 1], ids=["backslash", "byte"])
def test_two_roots_shown_under_one_name_are_each_read(stack: Path, capsys: pytest.CaptureFixture[str],
                                                       edited: int) -> None:
    """Found in review: the entry keeps one text per name shown, so of two files of one shown
    name only one was read again, and an edit to the other went unnoticed."""
    (stack / "d").mkdir()
    both = shown_alike(stack / "d")
    for path in both:
        path.write_text(SECURE)
    assert prove(capsys, stack / "c", Path("d"))[0] == 0
    both[edited].write_text(LEAKY)
    assert prove(capsys, stack / "c", Path("d"))[0] == 1


def test_two_imports_of_files_shown_under_one_name_are_each_read(
        stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same through imports: main.mv imports `\\xff.mv` and b.mv, a link to the 0xFF file,
    which is then given a leaky layer."""
    literal, byte = shown_alike(stack)
    literal.write_text("// helpers\n")
    byte.write_text("// helpers\n")
    os.symlink(byte.name, stack / "b.mv")
    (stack / "main.mv").write_text('import "\\xff.mv"\nimport "b.mv"\n' + SECURE)
    assert prove(capsys, stack / "c", Path("main.mv"))[0] == 0
    byte.write_text("// helpers\n" + LEAKY[LEAKY.index("layer"):].replace("layer L", "layer M"))
    assert_leak_found(capsys, stack / "c", Path("main.mv"), layer="M")


def test_a_folder_link_pointed_at_a_leaky_copy_of_the_same_names_is_followed(
        stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The root is given through a link to a folder; both folders hold main.mv and lib.mv of the
    same texts but lib.mv, and the link is pointed from one to the other."""
    for folder, lib in (("a", SECURE), ("b", LEAKY)):
        (stack / folder).mkdir()
        (stack / folder / "main.mv").write_text(MAIN)
        (stack / folder / "lib.mv").write_text(lib)
    os.symlink("a", stack / "here")
    prove(capsys, stack / "c", Path("here/main.mv"))
    (stack / "here").unlink()
    os.symlink("b", stack / "here")
    assert_leak_found(capsys, stack / "c", Path("here/main.mv"))


def test_a_file_added_to_a_folder_given_is_proved(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (stack / "lib.mv").unlink()
    (stack / "models").mkdir()
    (stack / "models" / "secure.mv").write_text(SECURE)
    prove(capsys, stack / "c", Path("models"))
    (stack / "models" / "leaky.mv").write_text(LEAKY)
    assert_leak_found(capsys, stack / "c", Path("models"))


def test_a_define_changed_is_another_run(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (stack / "lib.mv").write_text("const step: bv[1] = 0\n" + SECURE.replace("secret[v] := x", "secret[v + step] := x"))
    assert prove(capsys, stack / "c", Path("main.mv"))[0] == 0
    assert_leak_found(capsys, stack / "c", Path("main.mv"), defines=("step=1",))


def test_the_same_names_in_another_working_directory_are_another_run(
        stack: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (stack / "other").mkdir()
    (stack / "other" / "main.mv").write_text(MAIN)
    (stack / "other" / "lib.mv").write_text(LEAKY)
    prove(capsys, stack / "c", Path("main.mv"))
    monkeypatch.chdir(stack / "other")
    assert_leak_found(capsys, stack / "c", Path("main.mv"))
