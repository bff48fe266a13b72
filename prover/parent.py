"""A child process that ends when its parent does, and the run it works for."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time


# What names the files the `prove` run this process works for writes to before renaming them
# into place (files.py, write_atomically), which the run removes as it ends if a process was
# killed before the rename (--dump-smt: prover/cli.py). Random, made as this module is imported
# in the `prove` process (a forked process has it from the fork; a spawned one that solves for
# a run is given the run's, prover/process.py init_worker). Not the process id: runs in two
# containers that share a --dump-smt folder may well have the same one (found in review).
_run_tag = secrets.token_hex(8) + "-"
ANY_RUN_TAG = "[0-9a-f]{16}-"  # a regular expression for every run's


def run_tag() -> str:
    return _run_tag


def working_for(tag: str) -> None:
    """Write as the run whose tag is `tag`."""
    global _run_tag
    _run_tag = tag


def exit_with_parent(parent: int, group: bool = False) -> None:
    """End this process within a quarter of a second of its parent `parent`, however the parent
    ended (SIGKILL included): a solver runs in C and pays no attention to Python signals, so
    only exiting the process stops it. Watched from a thread of its own; with `group`, the
    process group this process leads ends with it (its children: the cross-check's)."""
    threading.Thread(target=_watch, args=(parent, group), name="microverify-watch-parent", daemon=True).start()


def _watch(parent: int, group: bool) -> None:
    while os.getppid() == parent:
        time.sleep(0.25)
    if group:
        os.killpg(0, signal.SIGKILL)
    os._exit(1)
