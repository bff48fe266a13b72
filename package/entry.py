"""The `prove` command's entry point. Ctrl-C while the command starts (importing what it needs,
a fraction of a second) ends it as Ctrl-C does later: one line and exit status 130, not a
traceback (prover/cli.py handles it from then on)."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # prover/cli.py's, which cannot be imported before the import is done


def prove() -> None:
    try:
        from microverify.prover.cli import main
    except KeyboardInterrupt:
        sys.stderr.write(f"prove: interrupted while starting (exit {EXIT_INTERRUPTED})\n")
        sys.exit(EXIT_INTERRUPTED)
    main()
