"""The `prove` command (DESIGN §6)."""

from __future__ import annotations

import sys
import tomllib
import traceback
from pathlib import Path

import click

from microverify import __version__
from microverify.dsl import ir
from microverify.dsl.diagnostics import DiagnosticError, render
from microverify.dsl.loader import discover, load_file
from microverify.prover.driver import prove_modules
from microverify.prover.report import render_counterexample, result_line, summary, theorems
from microverify.prover.solve import Options, Result, Status

EXIT_PROVED, EXIT_NOT_PROVED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
REPORT_URL = "the microverify issue tracker"


def configured_roots(start: Path) -> list[Path]:
    """`[tool.microverify] roots` of the nearest pyproject.toml, default `proofs/`."""
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text())
            except (OSError, tomllib.TOMLDecodeError):
                continue
            roots = data.get("tool", {}).get("microverify", {}).get("roots")
            if roots is not None:
                return [folder / r for r in roots]
    return [start / "proofs"]


def load_all(paths: list[Path], sources: dict[str, str]) -> tuple[list[ir.Module], list[str]]:
    """Load every file; return the modules and the rendered diagnostics of those that failed."""
    modules: list[ir.Module] = []
    errors: list[str] = []
    for path in discover(paths):
        try:
            modules.append(load_file(path, sources))
        except DiagnosticError as exc:
            errors.extend(render(d, sources) for d in exc.diagnostics)
    return modules, errors


def run(paths: list[Path], options: Options, quiet: bool) -> int:
    sources: dict[str, str] = {}
    missing = [p for p in paths if not p.exists()]
    if missing:
        for p in missing:
            click.echo(f"{p}: error: no such file or directory [io]", err=True)
        return EXIT_BAD_INPUT
    modules, errors = load_all(paths, sources)
    if errors:
        for e in errors:
            click.echo(e, err=True)
        click.echo(f"{len(errors)} error(s) in the input; nothing was proved", err=True)
        return EXIT_BAD_INPUT
    if not modules:
        click.echo("error: no .mv files found in " + ", ".join(map(str, paths)) + " [io]", err=True)
        return EXIT_BAD_INPUT

    def report(r: Result) -> None:
        if not quiet or r.status is not Status.PROVED:
            click.echo(result_line(r))
        if r.counterexample is not None:
            click.echo(render_counterexample(r, sources))

    results = prove_modules(modules, options, report)
    for line in theorems(modules, results):
        click.echo(line)
    click.echo(summary(results))
    return EXIT_PROVED if all(r.status is Status.PROVED for r in results) else EXIT_NOT_PROVED


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--rlimit", type=click.IntRange(min=1), default=Options.rlimit, show_default=True,
              help="Z3 resource limit per solver check: the deterministic gate.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=Options.timeout, show_default=True,
              help="Wall-clock seconds per solver check: a backstop only.")
@click.option("--seed", type=click.IntRange(min=0), default=Options.seed, show_default=True,
              help="Z3 random seed.")
@click.option("-q", "--quiet", is_flag=True, help="Print only obligations that are not proved.")
@click.version_option(__version__, prog_name="prove")
def prove(paths: tuple[Path, ...], rlimit: int, timeout: float, seed: int, quiet: bool) -> None:
    """Prove the noninterference obligations of microverify layers (.mv files or folders).

    Without PATHS, proves the roots under [tool.microverify] in pyproject.toml (default proofs/).
    Exit status: 0 all proved, 1 some obligation not proved, 2 bad input, 3 internal error.
    """
    targets = list(paths) or configured_roots(Path.cwd())
    sys.exit(run(targets, Options(rlimit=rlimit, timeout=timeout, seed=seed), quiet))


def main() -> None:
    try:
        prove.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(EXIT_NOT_PROVED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - any other failure is a bug in microverify
        traceback.print_exc()
        click.echo(f"internal error: microverify {__version__} crashed; this is a bug. Please report "
                   f"it on {REPORT_URL} with the input files and the traceback above.", err=True)
        sys.exit(EXIT_INTERNAL)
