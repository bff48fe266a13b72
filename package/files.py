"""Files written whole or not at all; files marked used; folders that can be written to."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path


def write_atomically(path: Path, text: str, tag: str = "") -> None:
    """Write `text` (UTF-8) to `path`, whole or not at all: into a file of its own beside it
    (`.tmp-<tag><random>` and the path's suffix), renamed into place, so that a process stopped
    half-way, or another writing the same path at once, never leaves part of a file there. The
    temporary file is removed when writing fails, and the failure goes on; one a killed process
    leaves is removed by remove_left_behind, when its tag says whose it was."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{tag}", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


STALE_TEMPORARY_SECONDS = 3600.0  # a temporary file older than this was left by a writer killed


def remove_left_behind(directory: Path, tag: str, any_tag: str, suffix: str) -> None:
    """Remove from `directory` write_atomically's temporary files with the suffix `suffix` that
    writers killed between making one and renaming it left there: those tagged `tag`, of writers
    that are gone, and those tagged by any tag the regular expression `any_tag` matches that are
    older than STALE_TEMPORARY_SECONDS (writing one takes seconds at most): of writers whose
    own cleanup was killed too. Others are left, and errors ignored."""
    ours = re.compile(re.escape(f".tmp-{tag}") + r"[a-z0-9_]+" + re.escape(suffix))
    anyone = re.compile(r"\.tmp-" + any_tag + r"[a-z0-9_]+" + re.escape(suffix))
    try:
        entries = list(directory.iterdir())
    except OSError:  # not there: nothing was written
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            if ours.fullmatch(entry.name) or (anyone.fullmatch(entry.name) and
                                              entry.lstat().st_mtime < time.time() - STALE_TEMPORARY_SECONDS):
                entry.unlink()


def read_small(path: Path, limit: int) -> str:
    """The text (UTF-8) of a cache file of at most `limit` bytes, opened without blocking and
    read only if it is a regular file, should it have become a FIFO or a device since it was
    looked at; ValueError if it is not one, or is larger."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError("too large")
    return data.decode("utf-8")


def touch(path: Path) -> None:
    """Set a file's modification time to now: a cache entry's last use (prover/cache.py prunes
    the least recently used). A file that cannot be written (a read-only cache) is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(path)


def unwritable(directory: Path) -> str | None:
    """Why files could not be written below `directory` (the cache, --dump-smt), or None.
    Creates nothing: the folder (or its nearest existing ancestor, where it will be created)
    must be a writable directory."""
    folder = directory
    while True:
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            parent = folder.parent
            if parent == folder:
                return f"{directory}: no existing parent directory"
            folder = parent
            continue
        except (OSError, ValueError) as exc:
            return f"{directory}: {getattr(exc, 'strerror', None) or exc}"
        if not stat.S_ISDIR(info.st_mode):
            return f"{directory}: {folder} is not a directory"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{directory}: {folder} is not writable"
        return None
