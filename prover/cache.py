"""Content-addressed cache of PROVED results (only PROVED results are ever stored).

The key is computed from what the obligation is built from, without building it
(prover/fingerprint.py). An entry is a small JSON file `<dir>/<key[:2]>/<key>.json` holding the
key, the status, the versions and a checksum over all of it. An entry that does not parse,
whose checksum, key, status or versions do not match, is ignored with a warning and the
obligation is solved again: a corrupted or foreign entry is never trusted.

An entry that is not a regular file of at most MAX_ENTRY_BYTES (a directory, a FIFO, a device)
is ignored the same way, without being opened. A cache directory that cannot be used (under a
regular file, not writable) is found before any work starts: the CLI warns and proves without
the cache. A write that fails later (a full disk) warns once and turns the cache off for the rest
of the run in that process. The cache never changes a verdict, so none of this fails a run.

Threat model: the cache is as trusted as the working tree it sits in. The checks above catch
corruption, stale entries, and an entry copied or edited to stand for another obligation; they
do not stop someone who can write the cache *and* recompute checksums (they could as well
edit the proofs).

Size: an entry found is touched (its modification time is its last use), and after a run that
solved something, `prune` removes the least recently used entries beyond a number (results,
parsed files and runs' front ends counted apart), none of them used by that run, and temporary
files left by writers that were stopped. It removes only files named as entries are, so a cache
directory pointed at a folder with other files in it loses none of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import z3

from microverify import __version__
from microverify.files import STALE_TEMPORARY_SECONDS, read_small, touch, write_atomically

DEFAULT_DIR = Path(".microverify-cache")
AST_SUBDIR = "ast"  # parsed files (dsl/astcache.py), beside the result entries
RUNS_SUBDIR = "runs"  # what runs' front ends gave (prover/runindex.py)
FORMAT = 2
MAX_ENTRY_BYTES = 64 * 1024  # an entry is about 400 bytes
MAX_ENTRIES = 20_000  # kept of each kind by default (--cache-max-entries): about 80 MiB on disk
_SHARD = re.compile(r"[0-9a-f]{2}")  # <dir>/<key[:2]>/
_ENTRY = re.compile(r"[0-9a-f]{64}\.json")
_LEFT_BEHIND = re.compile(r"\.tmp-[A-Za-z0-9_]+\.json")  # files.write_atomically's, of a stopped writer
_TIME_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class Hit:
    rlimit_used: int
    quantified: bool  # solved in an encoding that kept quantifiers (as the report says of every result)


def checksum(entry: dict[str, object]) -> str:
    """The SHA-256 an entry (of results, or prover/runindex.py's) carries of all it holds but it."""
    body = json.dumps({k: v for k, v in entry.items() if k != "checksum"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.warnings: list[str] = []
        self.writable = True  # False after a failed write: the rest of the run goes without

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def holds(self, key: str) -> bool:
        """Whether there is an entry under `key` (valid or not: `get` says)."""
        return self._path(key).is_file()

    def get(self, key: str, obligation_id: str) -> Hit | None:
        path = self._path(key)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError:
            info = None  # e.g. <dir>/<key[:2]> is a file: invalid
        try:
            if info is None or not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
                raise ValueError("not a small regular file")
            entry = json.loads(read_small(path, MAX_ENTRY_BYTES))
            valid = (isinstance(entry, dict) and entry.get("checksum") == checksum(entry)
                     and entry.get("key") == key and entry.get("status") == "PROVED"
                     and entry.get("tool") == __version__ and entry.get("z3") == z3.get_version_string()
                     and entry.get("format") == FORMAT and isinstance(entry.get("rlimit_used"), int)
                     and isinstance(entry.get("quantified"), bool))
        except FileNotFoundError:  # removed since (another run's prune)
            return None
        except (OSError, ValueError, RecursionError):  # RecursionError: deeply nested JSON
            valid = False
        if not valid:
            self.warnings.append(f"warning: ignoring an invalid cache entry {path} (for {obligation_id}); "
                                 "solving again")
            return None
        touch(path)
        return Hit(int(entry["rlimit_used"]), bool(entry["quantified"]))

    def put(self, key: str, obligation_id: str, rlimit_used: int, quantified: bool) -> None:
        entry: dict[str, object] = {"format": FORMAT, "key": key, "status": "PROVED", "obligation": obligation_id,
                                    "tool": __version__, "z3": z3.get_version_string(),
                                    "rlimit_used": rlimit_used, "quantified": quantified}
        entry["checksum"] = checksum(entry)
        if not self.writable:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(entry))  # parallel workers never see half an entry
        except OSError as exc:
            # something in the way of this one entry (a directory where it goes), or the cache
            # as a whole failing (a full disk, a read-only file system): then stop writing
            alone = isinstance(exc, (IsADirectoryError, NotADirectoryError, FileExistsError))
            self.writable = alone
            self.warnings.append(f"warning: cannot write the cache entry {path} (for {obligation_id}): "
                                 f"{exc.strerror or exc}"
                                 + ("" if alone else "; not writing the cache any more in this run"))


def prune(directory: Path, keep: int, started: float) -> int:
    """Remove the least recently used result entries beyond `keep`, and the parsed files
    (AST_SUBDIR) and runs' front ends (RUNS_SUBDIR) beyond `keep` each, but none used or
    written since `started` (time.time()); and temporary files left for an hour. Returns how
    many files were removed. Best effort: a file that cannot be looked at or removed (another
    run's, a read-only cache) is left."""
    results = [entry for folder in _listed(directory, follow=True) if _SHARD.fullmatch(folder.name)
               for entry in _listed(folder)]
    removed = 0
    for entries in (results, _listed(directory / AST_SUBDIR), _listed(directory / RUNS_SUBDIR)):
        dated: list[tuple[float, Path]] = []
        for path in entries:
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if _ENTRY.fullmatch(path.name):
                dated.append((info.st_mtime, path))
            elif _LEFT_BEHIND.fullmatch(path.name) and info.st_mtime < time.time() - STALE_TEMPORARY_SECONDS:
                removed += _remove(path)
        dated.sort()
        # a margin for file systems that keep times coarsely: nothing this run used goes
        removed += sum(_remove(path) for mtime, path in dated[:max(0, len(dated) - keep)]
                       if mtime < started - _TIME_MARGIN_SECONDS)
    return removed


def _listed(folder: Path, follow: bool = False) -> list[Path]:
    """The files in a folder of the cache; none in a link to a folder elsewhere (prune removes
    only what is in the cache itself), unless `follow` (the cache directory the user named)."""
    try:
        if not stat.S_ISDIR((folder.stat() if follow else folder.lstat()).st_mode):
            return []
        return list(folder.iterdir())
    except OSError:
        return []


def _remove(path: Path) -> int:
    try:
        path.unlink()
    except OSError:
        return 0
    return 1
