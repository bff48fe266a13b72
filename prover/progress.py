"""A progress bar on a terminal (rich), nothing otherwise: plain report lines stay plain.

rich is imported only when a bar is shown: it is a quarter of `prove`'s start-up, which a CI
run (no terminal) and a fully cached run pay for nothing otherwise."""

from __future__ import annotations

import os
from types import TracebackType
from typing import TYPE_CHECKING

import click

from microverify.prover.verdict import Result, Status

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress


# Whether a bar is on the terminal (standard error): rich hides the cursor while it is
_shown = False
_SHOW_CURSOR, _HIDE_CURSOR = b"\x1b[?25h", b"\x1b[?25l"


def stopping() -> None:
    """As `prove` stops (Ctrl-Z, prover/cli.py): the cursor shown, not left hidden in the shell."""
    if _shown and in_foreground():
        os.write(2, _SHOW_CURSOR)


def resumed() -> None:
    """As `prove` resumes: the cursor hidden again while the bar is shown. Not from the background,
    where the write would stop it again (`stty tostop`)."""
    if _shown and in_foreground():
        os.write(2, _HIDE_CURSOR)


def in_foreground() -> bool:
    """Whether this process is in the foreground of the terminal on standard error."""
    try:
        return os.tcgetpgrp(2) == os.getpgrp()
    except OSError:
        return False


class Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.bar: RichProgress | None = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn
            self.bar = RichProgress(TextColumn("proving"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[failed]} not proved"), TimeElapsedColumn(),
                                    console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("prove", total=total, failed=0)
        self.failed = 0

    def __enter__(self) -> Progress:
        global _shown
        if self.bar is not None:
            _shown = True  # first: starting, the bar hides the cursor and draws itself, a while
            self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _shown
        if self.bar is not None:
            _shown = False
            self.bar.stop()

    def advance(self, r: Result) -> None:
        self.failed += r.status is not Status.PROVED
        if self.bar is not None:
            self.bar.update(self.task, advance=1, failed=self.failed)

    def echo(self, text: str) -> None:
        """Print a report line; while the bar is shown, rich redirects stdout above it."""
        click.echo(text)
