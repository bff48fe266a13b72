"""Content-addressed cache of PROVED results (only PROVED results are ever stored).

key = sha256(canonical SMT-LIB text of the obligation's hypotheses and goal, Z3 version, solver
options, tool version). An entry is a small JSON file `<dir>/<key[:2]>/<key>.json` holding the
key, the status, the versions and a checksum over all of it. An entry that does not parse,
whose checksum, key, status or versions do not match, is ignored with a warning and the
obligation is solved again: a corrupted or foreign entry is never trusted.

Threat model: the cache is as trusted as the working tree it sits in. The checks above catch
corruption, stale entries, and an entry copied or edited to stand for another obligation; they
do not stop someone who can write the cache *and* recompute checksums (they could as well
edit the proofs).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import z3

from microverify import __version__

DEFAULT_DIR = Path(".microverify-cache")
FORMAT = 1


@dataclass(frozen=True)
class Hit:
    rlimit_used: int


def obligation_key(smt2: str, options: str) -> str:
    h = hashlib.sha256()
    for part in (smt2, z3.get_version_string(), options, __version__, str(FORMAT)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _checksum(entry: dict[str, object]) -> str:
    body = json.dumps({k: v for k, v in entry.items() if k != "checksum"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.warnings: list[str] = []

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str, obligation_id: str) -> Hit | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text())
            valid = (isinstance(entry, dict) and entry.get("checksum") == _checksum(entry)
                     and entry.get("key") == key and entry.get("status") == "PROVED"
                     and entry.get("tool") == __version__ and entry.get("z3") == z3.get_version_string()
                     and entry.get("format") == FORMAT and isinstance(entry.get("rlimit_used"), int))
        except (OSError, ValueError):
            valid = False
        if not valid:
            self.warnings.append(f"warning: ignoring an invalid cache entry {path} (for {obligation_id}); "
                                 "solving again")
            return None
        return Hit(int(entry["rlimit_used"]))

    def put(self, key: str, obligation_id: str, rlimit_used: int) -> None:
        entry: dict[str, object] = {"format": FORMAT, "key": key, "status": "PROVED", "obligation": obligation_id,
                                    "tool": __version__, "z3": z3.get_version_string(),
                                    "rlimit_used": rlimit_used}
        entry["checksum"] = _checksum(entry)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, path)  # atomic: parallel workers never see half an entry
