"""The `prove` command (DESIGN §6)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import tomllib
import traceback
from pathlib import Path

import click

from microverify import __version__
from microverify.dsl import ir
from microverify.dsl.diagnostics import DiagnosticError, render
from microverify.dsl.loader import discover, load_file
from microverify.prover import formats
from microverify.prover.cache import DEFAULT_DIR
from microverify.prover.crosscheck import SOLVERS, available
from microverify.prover.driver import Pair, obligations, prove_pairs
from microverify.prover.progress import Progress
from microverify.prover.report import quantified, render_counterexample, result_line, summary, theorems
from microverify.prover.solve import ENCODINGS, Options, Result, Status

EXIT_PROVED, EXIT_NOT_PROVED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
REPORT_URL = "the microverify issue tracker"
FORMATS = ("text", "json", "junit", "sarif", "github")


class BadInput(Exception):
    """A usage problem found after option parsing: reported as `error: ...`, exit 2."""


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


def load_all(paths: list[Path], sources: dict[str, str]) -> list[ir.Module]:
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise BadInput("\n".join(f"{p}: error: no such file or directory [io]" for p in missing))
    modules: list[ir.Module] = []
    errors: list[str] = []
    for path in discover(paths):
        try:
            modules.append(load_file(path, sources))
        except DiagnosticError as exc:
            errors.extend(render(d, sources) for d in exc.diagnostics)
    if errors:
        raise BadInput("\n".join(errors) + f"\n{len(errors)} error(s) in the input; nothing was proved")
    if not modules:
        raise BadInput("error: no .mv files found in " + ", ".join(map(str, paths)) + " [io]")
    return modules


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BadInput(f"error: --shard takes I/N with 1 <= I <= N, not {text!r}") from None
    if not 1 <= i <= n:
        raise BadInput(f"error: --shard takes I/N with 1 <= I <= N, not {text!r}")
    return i, n


def in_shard(pair: Pair, shard: tuple[int, int]) -> bool:
    """Stable: a hash of the obligation's file and id, the same on every machine and run."""
    _, ob = pair
    digest = hashlib.sha256(f"{ob.file}\0{ob.id}".encode()).hexdigest()
    return int(digest, 16) % shard[1] == shard[0] - 1


def select(pairs: list[Pair], only: tuple[str, ...], shard: tuple[int, int] | None) -> list[Pair]:
    if only:
        pairs = [p for p in pairs if any(fnmatch.fnmatchcase(p[1].id, pat) for pat in only)]
        if not pairs:
            raise BadInput("error: --only " + " ".join(only) + " matches no obligation (see --list)")
    if shard is not None:
        pairs = [p for p in pairs if in_shard(p, shard)]
    return pairs


def list_obligations(pairs: list[Pair], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"id": ob.id, "kind": ob.kind.value, "layer": ob.layer, "operation": ob.op,
                            "observer": ob.observer, "file": ob.file, "line": ob.span.line}
                           for _, ob in pairs], indent=2)
    if fmt != "text":
        raise BadInput("error: --list prints text or json")
    return "\n".join(f"{ob.id:<48} {ob.span}" for _, ob in pairs) + f"\n{len(pairs)} obligations"


def emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n")


def run(paths: list[Path], options: Options, quiet: bool, jobs: int, cache_dir: Path | None,
        only: tuple[str, ...], shard_text: str | None, fmt: str, output: Path | None,
        list_only: bool, check_only: bool) -> int:
    sources: dict[str, str] = {}
    shard = parse_shard(shard_text)
    modules = load_all(paths, sources)
    if check_only:
        click.echo(f"checked {len(sources)} file(s): no errors")
        return EXIT_PROVED
    every = obligations(modules)
    pairs = select(every, only, shard)
    if list_only:
        emit(list_obligations(pairs, fmt), output)
        return EXIT_PROVED
    text = fmt == "text" or output is not None  # the human report goes to stdout
    progress = Progress(len(pairs), enabled=sys.stderr.isatty() and not quiet)

    def report(r: Result) -> None:
        progress.advance(r)
        if text and (not quiet or r.status is not Status.PROVED):
            progress.echo(result_line(r))
        if text and r.counterexample is not None:
            progress.echo(render_counterexample(r, sources))

    with progress:
        results = prove_pairs(pairs, options, report, jobs, cache_dir)
    for r in results:
        for w in r.warnings:
            click.echo(w, err=True)
    disagreements = [r for r in results if r.disagreement]
    for r in disagreements:
        click.echo(f"{r.obligation.span}: error: cross-check of {r.obligation.id} failed: {r.disagreement}",
                   err=True)
    if options.cross_check is not None:
        click.echo(f"cross-check: {options.cross_check} agrees on {len(results) - len(disagreements)} of "
                   f"{len(results)} obligations", err=True)
    lines = theorems(modules, results, [ob for _, ob in every])
    if text:
        for line in lines:
            click.echo(line)
        click.echo(summary(results))
        if (kept := quantified(results, options)):
            click.echo(kept)
    if fmt == "json":
        emit(formats.to_json(results, lines, options, jobs), output)
    elif fmt == "junit":
        emit(formats.to_junit(results), output)
    elif fmt == "sarif":
        emit(formats.to_sarif(results), output)
    elif fmt == "github":
        emit(formats.to_github(results), output)
    if not text:
        click.echo(summary(results), err=True)
    if disagreements:
        return EXIT_NOT_PROVED
    return EXIT_PROVED if all(r.status is Status.PROVED for r in results) else EXIT_NOT_PROVED


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes. [default: all cores]")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_DIR,
              show_default=True, help="Where PROVED results are cached, keyed by the obligation's formula.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--list", "list_only", is_flag=True, help="List the obligations (text or json) and exit.")
@click.option("--only", multiple=True, metavar="PATTERN",
              help="Only obligations whose id (Layer/KIND/op/Observer) matches this glob; repeatable.")
@click.option("--shard", metavar="I/N", help="Only the I-th of N stable shards of the obligations.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Report format.")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the report there (the text report still goes to stdout).")
@click.option("--check", "check_only", is_flag=True, help="Only parse and type-check, then exit.")
@click.option("--dump-smt", type=click.Path(path_type=Path, file_okay=False),
              help="Write every obligation there as a standalone SMT-LIB2 script.")
@click.option("--cross-check", type=click.Choice(SOLVERS),
              help="Re-check every verdict with a second solver through pysmt.")
@click.option("--encoding", type=click.Choice(ENCODINGS), default=Options.encoding, show_default=True,
              help="qf: instantiate quantifiers where that is sound (exact), keep the rest; "
                   "quantified: leave every quantifier to the solver.")
@click.option("--rlimit", type=click.IntRange(min=1), default=Options.rlimit, show_default=True,
              help="Z3 resource limit per solver check: the deterministic gate.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=Options.timeout, show_default=True,
              help="Wall-clock seconds per solver check: a backstop only.")
@click.option("--seed", type=click.IntRange(min=0), default=Options.seed, show_default=True,
              help="Z3 random seed.")
@click.option("-q", "--quiet", is_flag=True, help="Print only obligations that are not proved.")
@click.version_option(__version__, prog_name="prove")
def prove(paths: tuple[Path, ...], jobs: int | None, cache_dir: Path, no_cache: bool, list_only: bool,
          only: tuple[str, ...], shard: str | None, fmt: str, output: Path | None, check_only: bool,
          dump_smt: Path | None, cross_check: str | None, encoding: str, rlimit: int, timeout: float,
          seed: int, quiet: bool) -> None:
    """Prove the noninterference obligations of microverify layers (.mv files or folders).

    Without PATHS, proves the roots under [tool.microverify] in pyproject.toml (default proofs/).
    Exit status: 0 all proved, 1 some obligation not proved, 2 bad input, 3 internal error.
    """
    targets = list(paths) or configured_roots(Path.cwd())
    try:
        if cross_check is not None and (why := available(cross_check)) is not None:
            raise BadInput(f"error: cannot cross-check with {cross_check}: {why}")
        options = Options(rlimit=rlimit, timeout=timeout, seed=seed, dump_smt=dump_smt, cross_check=cross_check,
                          encoding=encoding)
        code = run(targets, options, quiet,
                   jobs or os.cpu_count() or 1, None if no_cache else cache_dir, only, shard, fmt, output,
                   list_only, check_only)
    except BadInput as exc:
        click.echo(str(exc), err=True)
        code = EXIT_BAD_INPUT
    sys.exit(code)


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
