"""Parsed files kept between runs, beside the result cache: a fully cached run parses nothing.

Parsing is most of what a fully cached `prove` does (lark builds a parse tree per token). An
entry `ast/<key>.json` in the cache directory holds the syntax tree of one file; the key is a
SHA-256 of this format's number, of the source of the `dsl` package (parser, grammar and tree
classes: a change to any of them makes every entry stale), of the file's name (spans carry it)
and of its text. So an entry can only be found for exactly the text it was parsed from.

An entry is JSON, never pickle, and is read back only into the tree's own classes (`dsl.ast`
and `Span`), each with exactly its fields, with a SHA-256 of the payload stored beside it:
anything else (JSON that does not parse, another class, a field missing or extra, a checksum
that does not match, a file that is not a regular one or is too large) is a miss, and the file
is parsed again and its entry rewritten. Like the result cache, it is as trusted as the working
tree it lives in. Only trees of files without syntax errors are kept. Writes are atomic (a
temporary file renamed) and a failed write is ignored: the cache only saves time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache, lru_cache
from pathlib import Path

from microverify.dsl import ast
from microverify.dsl.spans import Span, span_fields
from microverify.files import read_small, touch, write_atomically

FORMAT = 2
MAX_ENTRY_BYTES = 64 * 1024 * 1024
_CLASSES: dict[str, type] = {c.__name__: c for c in vars(ast).values()
                             if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == ast.__name__}
_CLASSES["Span"] = Span
_FIELDS = {name: tuple(f.name for f in dataclasses.fields(c)) for name, c in _CLASSES.items()}
# fields declared as a Span: most nodes of a tree are these, so a span of the tree's own file
# is kept there as the list [line, column, end_line, end_column] (see encode)
_SPAN_FIELDS = {name: span_fields(c) for name, c in _CLASSES.items()}


def encode(node: object, file: str) -> object:
    """A tree parsed from `file` as JSON values: a node as {"@": class, field: value, ...}, a
    tuple as a list; a field declared as a Span whose file is `file` as [line, column,
    end_line, end_column] (a span field never holds a tuple, so the list is not ambiguous)."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        name = type(node).__name__
        if _CLASSES.get(name) is not type(node):
            raise TypeError(f"not a syntax tree class: {name}")
        out: dict[str, object] = {"@": name}
        spans = _SPAN_FIELDS[name]
        for f in _FIELDS[name]:
            value = getattr(node, f)
            if f in spans and type(value) is Span and value.file == file:
                out[f] = [value.line, value.column, value.end_line, value.end_column]
            else:
                out[f] = encode(value, file)
        return out
    if isinstance(node, tuple):
        return [encode(x, file) for x in node]
    if node is None or isinstance(node, (bool, int, str)):
        return node
    raise TypeError(f"cannot keep a {type(node).__name__} in a syntax tree entry")


def decode(payload: str, file: str) -> object:
    """The tree `encode(..., file)` gave the JSON text `payload` for; ValueError if it is no
    such encoding. Nodes are built as the JSON is read (an object hook), innermost first."""

    def node(value: dict[str, object]) -> object:
        name = value.get("@")
        if not isinstance(name, str) or name not in _CLASSES or value.keys() != {"@", *_FIELDS[name]}:
            raise ValueError("not an encoded syntax tree node")
        spans = _SPAN_FIELDS[name]
        args = []
        for f in _FIELDS[name]:
            x = value[f]
            if type(x) is list:
                x = _span(file, x) if f in spans else _tuples(x)
            elif type(x) is float:
                raise ValueError("not an encoded syntax tree value: float")
            args.append(x)
        return _CLASSES[name](*args)

    return _tuples(json.loads(payload, object_hook=node))


def _span(file: str, value: list[object]) -> Span:
    if len(value) != 4 or any(type(x) is not int for x in value):
        raise ValueError("not an encoded span")
    line, column, end_line, end_column = value
    return Span(file, line, column, end_line, end_column)  # type: ignore[arg-type]


def _tuples(value: object) -> object:
    if isinstance(value, list):
        return tuple(_tuples(x) for x in value)
    if isinstance(value, float):
        raise ValueError("not an encoded syntax tree value: float")
    return value


@cache
def _dsl_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.iterdir()):
        if path.suffix in (".py", ".lark") and path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def key(text: str, file: str) -> str:
    h = hashlib.sha256()
    for part in (f"ast format {FORMAT}", _dsl_digest(), file, text):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _load(entry: Path, file: str) -> ast.Module | None:
    try:
        if not entry.is_file() or entry.stat().st_size > MAX_ENTRY_BYTES:
            return None
        stored = json.loads(read_small(entry, MAX_ENTRY_BYTES))
        payload = stored["tree"]
        if not isinstance(payload, str) or stored["sha256"] != hashlib.sha256(payload.encode("utf-8")).hexdigest():
            return None
        module = decode(payload, file)
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if not isinstance(module, ast.Module):
        return None
    touch(entry)  # used now: kept when the cache is pruned (prover/cache.py)
    return module


def _store(entry: Path, module: ast.Module, file: str) -> None:
    try:
        payload = json.dumps(encode(module, file), separators=(",", ":"))
        data = json.dumps({"sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest(), "tree": payload})
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(entry, data)
    except (OSError, ValueError, TypeError, RecursionError):
        pass  # only a speed-up


@lru_cache(maxsize=64)
def parse_cached(text: str, file: str, folder: Path | None) -> ast.Module:
    """parse(text, file), taken from `folder` when an entry for exactly this text is there.
    Remembered, as parse is: a file several roots import is read once."""
    if folder is None:
        return _parse(text, file)
    entry = folder / f"{key(text, file)}.json"
    module = _load(entry, file)
    if module is None:
        module = _parse(text, file)  # raises on syntax errors: nothing is kept
        _store(entry, module, file)
    return module


def _parse(text: str, file: str) -> ast.Module:
    """The parser's `parse`, imported on first use: a run that finds every tree in the cache
    never imports lark."""
    from microverify.dsl.parser import parse

    return parse(text, file)
