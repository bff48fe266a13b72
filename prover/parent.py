"""A child process that ends when its parent does, and the run it works for."""

from __future__ import annotations

import os
import signal
import threading
import time


# The `prove` run this process works for: its own process id, or, in a process that solves for
# a run (prover/process.py, init_worker), the run's; a forked process has it from the fork.
_run = os.getpid()


def working_for(run: int) -> None:
    global _run
    _run = run


def run_tag() -> str:
    """What names the files this run writes to before renaming them into place (files.py,
    write_atomically), which the run removes as it ends if a process was killed before the
    rename (--dump-smt: prover/cli.py)."""
    return f"{_run}-"


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
