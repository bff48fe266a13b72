"""The `prove` command's entry point. What happens while the command starts (importing what it
needs, a fraction of a second) ends it as it would later (prover/cli.py handles it from then on):
Ctrl-C gives one line and exit status 130, SIGTERM one line and 143, not a traceback or a death
by the signal. A standard error that is closed (`2>&-`) is made /dev/null: the run goes on and
exits with its verdict's status, its workers too (they write Z3's last words there)."""

from __future__ import annotations

import os
import signal
import sys

# prover/cli.py's, which cannot be imported before the import is done
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class _Terminated(BaseException):
    """SIGTERM before prover/cli.py has its own handler."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def _standard_error() -> None:
    """File descriptor 2, and sys.stderr, on /dev/null if the command was started without them."""
    try:
        os.fstat(2)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 2:
            os.dup2(null, 2)
            os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)


def prove() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    _standard_error()
    try:
        from microverify.prover.cli import main
        main()
    except KeyboardInterrupt:  # main() handles both once it runs: here, only while starting
        sys.stderr.write(f"prove: interrupted while starting (exit {EXIT_INTERRUPTED})\n")
        sys.exit(EXIT_INTERRUPTED)
    except _Terminated:
        sys.stderr.write(f"prove: terminated while starting (exit {EXIT_TERMINATED})\n")
        sys.exit(EXIT_TERMINATED)
