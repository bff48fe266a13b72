"""What a run's front end gave, kept so that a run the cache answers in full loads nothing.

A run of `prove` over some root files reads them and what they import, checks them, lists the
obligations and computes each one's cache key from its checked slice (prover/fingerprint.py).
When every obligation then comes from the result cache, that front end is nearly all the run
costs. After a run in which every obligation of the files was PROVED, an entry `runs/<key>.json`
in the cache directory keeps what its front end gave: every obligation with its cache key, and
the theorems printed. A later run with the same key, whose files are unchanged, takes them from
there, and if the result cache holds every key it is answered without reading a syntax tree.

The key is a SHA-256 of this format's number, microverify's own source (`tool_digest`), the
Z3 and Python versions, the options that are in every obligation's key, the `-D` defines, the
working directory and the root files as `discover` lists them. The entry then says what the
front end read: each file's name as spans show it and the SHA-256 of its text, the names of
the roots, and each `import` of each file with the file it named. It is used only if all of
that holds now: every root and every import still resolves to the file of the same name, and
every such file has the same text. The front end is a function of those texts, their names,
the defines and its own code, and reads nothing else (imports are resolved against the
importing file alone, never searched for), so it would give the obligations and keys kept
(docs/theory.md §5). The results themselves still come from the result cache, under those keys.

An entry is JSON with a checksum, read only through `find`; anything that does not parse or
check is ignored (a warning if it is corrupt) and the run loads its files as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import z3

from microverify.dsl.astcache import parse_cached
from microverify.dsl import ast
from microverify.dsl.defines import Define
from microverify.dsl.loader import display_name, read_source, resolve
from microverify.dsl.spans import Span
from microverify.files import read_small, touch, write_atomically
from microverify.prover.cache import RUNS_SUBDIR, checksum
from microverify.prover.fingerprint import tool_digest
from microverify.prover.obligations import Kind, Obligation

FORMAT = 1
MAX_ENTRY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Front:
    """The front end's product for a run: every obligation with its cache key, in order, the
    theorem lines of a run that proves them all, and the text of every file read."""

    obligations: tuple[tuple[Obligation, str], ...]
    theorems: tuple[str, ...]
    sources: dict[str, str]


def _run_key(roots: list[Path], defines: tuple[Define, ...], options: str) -> str:
    h = hashlib.sha256()
    for part in (f"run index format {FORMAT}", tool_digest(), z3.get_version_string(), sys.version, options,
                 str(resolve(Path.cwd())), *(d.text for d in defines), "\0roots", *map(str, roots)):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _path(cache_dir: Path, key: str) -> Path:
    return cache_dir / RUNS_SUBDIR / f"{key}.json"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def store(cache_dir: Path, roots: list[Path], defines: tuple[Define, ...], options: str, sources: dict[str, str],
          obligations: list[tuple[Obligation, str]], theorems: list[str], parsed: Path | None) -> None:
    """Keep what the front end of a run of `roots` gave (`sources`: every text it read, the
    defines' too; `options`: those in every obligation's key). Best effort: the index only
    saves time."""
    key = _run_key(roots, defines, options)
    pseudo = {d.file for d in defines}
    files = {name: _digest(text) for name, text in sources.items() if name not in pseudo}
    imports = []
    for name, text in sources.items():
        if name in pseudo:
            continue
        here = resolve(Path(name)).parent
        for d in parse_cached(text, name, parsed).decls:  # parsed already: remembered
            if isinstance(d, ast.Import):
                imports.append([name, d.path, display_name(here / d.path)])
    entry: dict[str, object] = {
        "format": FORMAT, "key": key, "roots": [display_name(p) for p in roots], "files": files,
        "imports": imports, "theorems": theorems,
        "obligations": [[ob.kind.value, ob.file, ob.layer, ob.op, ob.observer,
                         [ob.span.file, ob.span.line, ob.span.column, ob.span.end_line, ob.span.end_column],
                         list(ob.context), ob.by_file, k] for ob, k in obligations]}
    entry["checksum"] = checksum(entry)
    path = _path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(entry))
    except OSError:
        pass


def find(cache_dir: Path, roots: list[Path], defines: tuple[Define, ...], options: str,
         warnings: list[str]) -> Front | None:
    """The front end's product kept for a run of `roots` (as `store` has it), if every file it
    read is as it was then; else None (with a warning in `warnings` if the entry is corrupt)."""
    key = _run_key(roots, defines, options)
    path = _path(cache_dir, key)
    try:
        os.stat(path)
    except (OSError, ValueError):
        return None  # none kept (or the cache is in the way of one): no warning
    try:
        entry = json.loads(read_small(path, MAX_ENTRY_BYTES))
        if not isinstance(entry, dict) or entry.get("checksum") != checksum(entry) or entry.get("key") != key \
                or entry.get("format") != FORMAT:
            raise ValueError("checksum")
        obligations, theorems = _front(entry)
    except (OSError, ValueError, TypeError, KeyError, IndexError, RecursionError):
        warnings.append(f"warning: ignoring an invalid cache entry {path}; loading the files")
        return None
    sources = _unchanged(entry, roots)
    if sources is None:
        return None
    touch(path)
    return Front(obligations, theorems, sources)


def _front(entry: dict[str, object]) -> tuple[tuple[tuple[Obligation, str], ...], tuple[str, ...]]:
    """The entry's obligations and theorems, having checked that what `_unchanged` reads is of
    the shapes `store` writes; ValueError, TypeError, ... if anything is not."""
    obligations = []
    for kind, file, layer, op, observer, span, context, by_file, k in entry["obligations"]:  # type: ignore[attr-defined]
        if not (isinstance(context, list) and all(isinstance(x, str) for x in (file, layer, k, *context))
                and isinstance(by_file, bool)
                and all(x is None or isinstance(x, str) for x in (op, observer))
                and isinstance(span[0], str) and all(type(x) is int for x in span[1:]) and len(span) == 5):
            raise ValueError("not an obligation")
        obligations.append((Obligation(Kind(kind), file, layer, op, observer, Span(*span), tuple(context), by_file), k))
    files, imports, roots, theorems = entry["files"], entry["imports"], entry["roots"], entry["theorems"]
    if not (isinstance(files, dict) and all(isinstance(x, str) for x in (*files, *files.values()))
            and isinstance(imports, list) and all(isinstance(i, list) and len(i) == 3
                                                  and all(isinstance(x, str) for x in i) for i in imports)
            and isinstance(roots, list) and all(isinstance(r, str) for r in roots)
            and isinstance(theorems, list) and all(isinstance(t, str) for t in theorems)):
        raise ValueError("not an entry")
    return tuple(obligations), tuple(theorems)


def _unchanged(entry: dict[str, object], roots: list[Path]) -> dict[str, str] | None:
    """The texts of the entry's files, read as the loader reads them (each root as given, each
    import resolved against the file that names it), if every one resolves to the file of the
    name kept and has the text it had; else None."""
    files, imports, names = cast(dict[str, str], entry["files"]), cast(list[list[str]], entry["imports"]), \
        cast(list[str], entry["roots"])  # their shapes checked (_front)
    named: dict[str, list[tuple[str, str]]] = {}  # file -> (import as written, the file it names)
    for name, imported, target in imports:
        named.setdefault(name, []).append((imported, target))
    where: dict[str, Path] = {}  # file -> the path it is read from
    left: list[str] = []

    def one_file(name: str, path: Path) -> bool:
        """Whether `name` names this file only: a name that is not UTF-8 is shown with `\\xNN`
        escapes, so two files can show as one name, and then the texts kept under it are
        not both known."""
        if name in where:
            return resolve(where[name]) == resolve(path)
        where[name] = path
        left.append(name)
        return True

    try:
        if [display_name(p) for p in roots] != names or not all(map(one_file, names, roots)):
            return None
        sources: dict[str, str] = {}
        while left:
            name = left.pop()
            text = read_source(where[name])
            if _digest(text) != files.get(name):
                return None
            sources[name] = text
            for imported, target in named.get(name, ()):
                path = resolve(resolve(where[name]).parent / imported)
                if display_name(path) != target or not one_file(target, path):
                    return None
    except (OSError, ValueError, TypeError):
        return None
    return sources if sources.keys() == files.keys() else None
