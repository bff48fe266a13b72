"""Parsed files kept between runs (dsl/astcache.py): the same trees as a fresh parse, a fully
cached run parses nothing, and an entry that is not exactly what was written is a miss."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import CASES, PROOFS
from microverify.dsl import astcache
from microverify.dsl.loader import load_file
from microverify.dsl.parser import parse

FILES = sorted(PROOFS.rglob("*.mv")) + sorted((CASES / "stacks").glob("*.mv"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_kept_tree_is_the_parsed_tree(path: Path) -> None:
    tree = parse(path.read_text(), path.name)
    assert astcache.decode(json.dumps(astcache.encode(tree, path.name)), path.name) == tree


def _fresh() -> None:
    parse.cache_clear()
    astcache.parse_cached.cache_clear()


def test_a_second_load_parses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ast"
    root = PROOFS / "sekvm" / "machine.mv"
    _fresh()
    first = load_file(root, {}, parsed=folder)
    assert len(list(folder.glob("*.json"))) == 4  # machine.mv and the three files it imports
    _fresh()

    def no_parsing(text: str, file: str) -> None:
        raise AssertionError(f"{file} parsed again")

    monkeypatch.setattr(astcache, "_parse", no_parsing)
    assert load_file(root, {}, parsed=folder) == first


@pytest.mark.parametrize("damage", ["payload", "checksum", "class", "field", "float", "json", "directory",
                                    "tree-number", "tree-null", "top-list", "span-float", "span-short",
                                    "span-bool", "span-string"])
def test_a_damaged_entry_is_a_miss_and_is_rewritten(tmp_path: Path, damage: str) -> None:
    text = (PROOFS / "tutorial" / "pages.mv").read_text()
    folder = tmp_path / "ast"
    _fresh()
    tree = astcache.parse_cached(text, "pages.mv", folder)
    entry = folder / f"{astcache.key(text, 'pages.mv')}.json"
    stored = json.loads(entry.read_text())
    if damage == "directory":
        entry.unlink()
        entry.mkdir()
    elif damage == "json":
        entry.write_text(entry.read_text()[:-10])
    elif damage in ("tree-number", "tree-null", "top-list"):  # JSON, but not of an entry's shape
        entry.write_text({"tree-number": '{"sha256": "x", "tree": 5}', "tree-null": '{"sha256": "x", "tree": null}',
                          "top-list": '[1, 2]'}[damage])
    else:
        payload = stored["tree"]
        payload = {"payload": payload.replace('"KServ"', '"KServX"', 1),
                   "checksum": payload,
                   "class": payload.replace('"@":"Module"', '"@":"Path"', 1),
                   "field": payload.replace('"@":"Module",', '"@":"Module","extra":1,', 1),
                   "float": re.sub(r'"width":(\d+)', r'"width":\1.0', payload, count=1),
                   "span-float": re.sub(r'"span":\[(\d+),', r'"span":[\1.0,', payload, count=1),
                   "span-short": re.sub(r'"span":\[\d+,', '"span":[', payload, count=1),
                   "span-bool": re.sub(r'"span":\[\d+,', '"span":[true,', payload, count=1),
                   "span-string": re.sub(r'"span":\[\d+,', '"span":["1",', payload, count=1)}[damage]
        assert (payload == stored["tree"]) == (damage == "checksum")
        checksum = stored["sha256"] if damage == "payload" else astcache.hashlib.sha256(payload.encode()).hexdigest()
        if damage == "checksum":
            checksum = "0" * 64
        entry.write_text(json.dumps({"sha256": checksum, "tree": payload}))
    _fresh()
    assert astcache.parse_cached(text, "pages.mv", folder) == tree
    if damage != "directory":
        assert json.loads(entry.read_text()) == stored  # written again
