"""A progress bar on a terminal (rich), nothing otherwise: plain report lines stay plain.

rich is imported only when a bar is shown: it is a quarter of `prove`'s start-up, which a CI
run (no terminal) and a fully cached run pay for nothing otherwise."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import click

from microverify.prover.verdict import Result, Status

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress


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
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, r: Result) -> None:
        self.failed += r.status is not Status.PROVED
        if self.bar is not None:
            self.bar.update(self.task, advance=1, failed=self.failed)

    def echo(self, text: str) -> None:
        """Print a report line; while the bar is shown, rich redirects stdout above it."""
        click.echo(text)
