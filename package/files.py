"""Files written whole or not at all; files marked used."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path`, whole or not at all: into a file of its own beside it,
    renamed into place, so that a process stopped half-way, or another writing the same path
    at once, never leaves part of a file there. The temporary file is removed when writing
    fails, and the failure goes on."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def touch(path: Path) -> None:
    """Set a file's modification time to now: a cache entry's last use (prover/cache.py prunes
    the least recently used). A file that cannot be written (a read-only cache) is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(path)
