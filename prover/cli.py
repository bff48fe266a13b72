"""The `prove` command (DESIGN §6)."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import math
import multiprocessing
import os
import signal
import stat
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from microverify import REPORT_URL, __version__
from microverify.dsl import ir
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError, identity, render
from microverify.dsl.limits import ensure_recursion_limit
from microverify.dsl.defines import Define, Uses, parse_defines, unused
from microverify.dsl.loader import discover, load_file
from microverify.dsl.spans import Span
from microverify.prover import formats, progress
from microverify.prover.formats import USAGE, Problem, cross_check_message
from microverify.files import remove_left_behind, unwritable
from microverify.prover.cache import AST_SUBDIR, DEFAULT_DIR, MAX_ENTRIES, Cache, prune
from microverify.prover.crosscheck import RECHECKED, SOLVERS, available
from microverify.prover.driver import Pair, obligations, prove_pairs
from microverify.prover.parent import ANY_RUN_TAG, run_tag
from microverify.prover.process import SolverProcess, signal_group
from microverify.prover.progress import Progress
from microverify.prover.report import quantified, render_counterexample, result_line, slowest, summary, theorems
from microverify.prover import fingerprint, runindex
from microverify.prover.verdict import (ENCODINGS, Options, Result, Status, answered_by, cache_key, cached,
                                        needs_formula, option_text)

EXIT_PROVED, EXIT_NOT_PROVED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
UINT_MAX = 2**32 - 1  # Z3 takes --rlimit, --seed and the timeout in ms as unsigned 32-bit numbers
FORMATS = ("text", "json", "junit", "sarif", "github")


class BadInput(Exception):
    """Bad input found after option parsing: reported as `error: ...` on standard error and as
    problems in the report of the chosen format, exit 2. Without `problems`, one problem of
    `code` (about the path `file`, if given) whose message is the text without its prefix."""

    def __init__(self, text: str, problems: tuple[Problem, ...] | None = None, code: str = USAGE,
                 file: Path | None = None) -> None:
        super().__init__(text)
        if problems is None:
            message = text.split("error: ", 1)[-1].removesuffix(f" [{code}]")
            problems = (Problem(code, message, text, file=shown(file) if file is not None else None),)
        self.problems = problems


class Interrupted(BaseException):
    """Ctrl-C: the run stops at once (workers killed), exit 130. A BaseException of our own, so
    that click does not turn it into its Abort (which prints an empty line first)."""


class Terminated(BaseException):
    """SIGTERM: as Ctrl-C, exit 143."""


def configured_roots(start: Path) -> list[Path]:
    """`[tool.microverify] roots` of the nearest pyproject.toml, default `proofs/`."""
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            tool = data.get("tool", {})
            section = tool.get("microverify", {}) if isinstance(tool, dict) else {}
            roots = section.get("roots") if isinstance(section, dict) else None
            if roots is not None:
                if not isinstance(roots, list) or not all(isinstance(r, str) and r and "\0" not in r
                                                          for r in roots):
                    raise BadInput(f"{shown(pyproject)}: error: [tool.microverify] roots must be a list of "
                                   f"paths (strings), not {roots!r:.60}")
                return [folder / r for r in roots]
    return [start / "proofs"]


def load_all(paths: list[Path], sources: dict[str, str], defines: tuple[Define, ...] = (),
             parsed: Path | None = None) -> list[ir.Module]:
    unusable = [Problem("io", why, f"{shown(p)}: error: {why} [io]", file=shown(p))
                for p in paths if (why := _unusable(p)) is not None]
    if unusable:
        raise BadInput("\n".join(u.text for u in unusable), tuple(unusable))
    modules: list[ir.Module] = []
    errors: list[Problem] = []
    uses = Uses()
    sources.update({d.file: d.text for d in defines})  # diagnostics quote them

    seen: set[tuple[str, Span, str]] = set()

    def add(diagnostics: list[Diagnostic]) -> None:  # a file two roots import is reported once
        for d in diagnostics:
            if identity(d) not in seen:
                seen.add(identity(d))
                errors.append(Problem(d.code, d.message, render(d, sources), d.span))

    for path in discover(paths):
        try:
            modules.append(load_file(path, sources, defines, uses, parsed))
        except DiagnosticError as exc:
            add(exc.diagnostics)
    if not errors:  # a file that does not parse declares nothing: its defines are not unused
        add(unused(defines, uses))
    if errors:
        raise BadInput("\n".join(e.text for e in errors) + f"\n{len(errors)} error(s) in the input; nothing was proved",
                       tuple(errors))
    if not modules:
        raise BadInput("error: no .mv files found in " + ", ".join(map(str, paths)) + " [io]", code="io")
    return modules


def shown(path: Path) -> str:
    """A path as given, printable even if it is not UTF-8."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _unusable(path: Path) -> str | None:
    """Why a command-line path cannot be used at all, or None (a FIFO or device is reported
    as an `io` diagnostic when it is read)."""
    try:
        os.stat(path)
    except OSError as exc:
        return "no such file or directory" if exc.errno == errno.ENOENT else (exc.strerror or str(exc)).lower()
    except ValueError as exc:
        return str(exc)
    return None


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
        # an id as printed matches itself, though `[b.mv]` in it is a character class to fnmatch
        pairs = [p for p in pairs if any(p[1].id == pat or fnmatch.fnmatchcase(p[1].id, pat)
                                         or fnmatch.fnmatchcase(p[1].base_id, pat) for pat in only)]
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


def report(fmt: str, results: list[Result], theorems: list[str], options: Options, jobs: int,
           problems: tuple[Problem, ...] = (), sources: dict[str, str] | None = None) -> str:
    """The report in a machine-readable format."""
    if fmt == "json":
        return formats.to_json(results, theorems, options, jobs, problems)
    if fmt == "junit":
        return formats.to_junit(results, problems, sources)
    if fmt == "sarif":
        return formats.to_sarif(results, problems)
    assert fmt == "github", fmt
    return formats.to_github(results, problems)


def emit(text: str, output: Path | None) -> None:
    """The report to --output, or else to standard output."""
    if output is None:
        click.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"error: cannot write the report to {shown(output)}: "
                       f"{exc.strerror or exc}") from None


def check_output(output: Path) -> None:
    """--output must be writable before any work starts (a missing directory is found now, not
    after the whole run); a write that fails anyway (a full disk) is reported by emit."""
    try:
        info = os.stat(output)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise BadInput(f"error: --output {shown(output)}: {exc.strerror or exc}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise BadInput(f"error: --output {shown(output)} is a directory")
        if not os.access(output, os.W_OK):
            raise BadInput(f"error: --output {shown(output)} is not writable")
        return
    folder = output.parent
    if not folder.is_dir():
        raise BadInput(f"error: --output {shown(output)}: the directory {shown(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"error: --output {shown(output)}: the directory {shown(folder)} is not writable")


def _proved(pairs: list[Pair], options: Options, on_result: Callable[[Result], None], jobs: int,
            cache_dir: Path | None, progress: Progress) -> list[Result]:
    """prove_pairs, in a process of its own where that is safe (prover/process.py)."""
    solver = SolverProcess(pairs, options, cache_dir) if _apart else None
    try:
        if solver is not None and not answered_by(cache_dir, pairs, options):
            solver.fork()  # before the progress bar's thread starts: fork() copies only the thread that calls it
        with progress:
            return prove_pairs(pairs, options, on_result, jobs, cache_dir, solver)
    except BaseException:
        if solver is not None:
            solver.kill()  # it is not daemonic: at exit, multiprocessing would wait for it
        raise
    finally:
        if options.dump_smt is not None:  # the processes that solved are gone: none is writing
            remove_left_behind(options.dump_smt, run_tag(), ANY_RUN_TAG, ".smt2")


def from_index(paths: list[Path], defines: tuple[Define, ...], options: Options,
               cache_dir: Path) -> tuple[runindex.Front, list[Result]] | None:
    """The run's results and front end, if the run index and the result cache answer every
    obligation (prover/runindex.py); else None, and the run loads its files."""
    if any(_unusable(p) is not None for p in paths):
        return None  # load_all says why
    warnings: list[str] = []
    roots = discover(paths)
    front = runindex.find(cache_dir, roots, defines, option_text(options), warnings)
    for w in warnings:
        click.echo(w, err=True)
    if front is None:
        return None
    cache = Cache(cache_dir)
    results = []
    for ob, key in front.obligations:
        r = cached(ob, key, cache)
        if r is None:
            return None  # solved as usual (which warns of an invalid entry)
        results.append(r)
    return front, results


def check_dump_dir(folder: Path) -> None:
    """Before any work: scripts can be written below `folder`. Nothing is created yet (the
    first script does that), so a run that stops at bad input leaves nothing behind."""
    why = unwritable(folder)
    if why is not None:
        raise BadInput(f"error: --dump-smt {why}")


def run(paths: list[Path], options: Options, quiet: bool, jobs: int, cache_dir: Path | None,
        only: tuple[str, ...], shard_text: str | None, fmt: str, output: Path | None,
        list_only: bool, check_only: bool, defines: tuple[Define, ...] = (), durations: int = 0,
        cache_max_entries: int = MAX_ENTRIES) -> int:
    started = time.time()
    sources: dict[str, str] = {}
    shard = parse_shard(shard_text)
    if output is not None:
        check_output(output)
    if options.dump_smt is not None and not check_only and not list_only:
        check_dump_dir(options.dump_smt)
    if cache_dir is not None and not check_only and not list_only:
        why = unwritable(cache_dir)
        if why is not None:
            click.echo(f"warning: not using the cache: {why}", err=True)
            cache_dir = None
    parsed = cache_dir / AST_SUBDIR if cache_dir is not None and not check_only and not list_only else None
    # where a run of every obligation keeps its front end, and finds it (prover/runindex.py)
    index_dir = cache_dir if parsed is not None and not only and shard is None else None
    indexed = None  # a run the cache answers in full, front end included
    if index_dir is not None and not needs_formula(options):
        indexed = from_index(paths, defines, options, index_dir)
    if indexed is not None:
        front, results = indexed
        sources.update(front.sources)
        sources.update({d.file: d.text for d in defines})
        count = len(results)
    else:
        modules = load_all(paths, sources, defines, parsed)  # --check and --list create nothing
        if check_only:
            checked = f"checked {len(sources) - len(defines)} file(s): no errors"  # the defines' texts are no files
            if fmt == "text":
                click.echo(checked)
                if output is not None:
                    emit(checked, output)
            else:
                emit(report(fmt, [], [], options, jobs), output)
                click.echo(checked, err=True)
            return EXIT_PROVED
        every = obligations(modules)
        pairs = select(every, only, shard)
        if list_only:
            emit(list_obligations(pairs, fmt), output)
            return EXIT_PROVED
        count = len(pairs)
    text = fmt == "text" or output is not None  # the human report goes to stdout
    written: list[str] = []  # the text report, for --output with the text format
    progress = Progress(count, enabled=sys.stderr.isatty() and not quiet)

    def say(line: str) -> None:
        progress.echo(line)
        written.append(line)

    def on_result(r: Result) -> None:
        progress.advance(r)
        if text and (not quiet or r.status is not Status.PROVED):
            say(result_line(r))
        if text and r.counterexample is not None:
            say(render_counterexample(r, sources))

    if indexed is not None:
        with progress:
            for r in results:
                on_result(r)
    else:
        results = _proved(pairs, options, on_result, jobs, cache_dir, progress)
    if cache_dir is not None and cache_max_entries and not all(r.cached for r in results):
        prune(cache_dir, cache_max_entries, started)  # a fully cached run added nothing
    for r in results:
        for w in r.warnings:
            click.echo(w, err=True)
    disagreements = [r for r in results if r.disagreement]
    second = [f"{r.obligation.span}: error: {cross_check_message(r)}" for r in disagreements]
    if options.cross_check is not None:
        rechecked = [r for r in results if r.status.value in RECHECKED]
        left = len(results) - len(rechecked)
        second.append(f"cross-check: {options.cross_check} agrees on {len(rechecked) - len(disagreements)} of "
                       f"{len(rechecked)} obligations" + (f"; {left} not re-checked (UNKNOWN or ERROR: no "
                                                        f"verdict to re-check)" if left else ""))
    for line in second:  # on standard error, and in the text report written (--output)
        click.echo(line, err=True)
        if text:
            written.append(line)
    if indexed is not None:
        lines = list(indexed[0].theorems)
    else:
        lines = theorems(modules, results, [ob for _, ob in every])
        if index_dir is not None and all(r.status is Status.PROVED for r in results):
            runindex.store(index_dir, discover(paths), defines, option_text(options), sources,
                           [(ob, cache_key(fingerprint.slice_module(m, ob), ob, options)) for m, ob in every],
                           lines, parsed)
    if text:
        for line in [*lines, summary(results), quantified(results, options)]:
            if line:
                click.echo(line)
                written.append(line)
    if durations:
        ranked = slowest(results, durations)
        click.echo(ranked, err=not text)
        written.append(ranked)
    if fmt != "text":
        emit(report(fmt, results, lines, options, jobs, sources=sources), output)
    elif output is not None:
        emit("\n".join(written), output)
    if not text:
        click.echo(summary(results), err=True)
    errors = [r for r in results if r.status is Status.ERROR]
    for r in errors:
        click.echo(f"{r.obligation.span}: internal error: {r.obligation.id}: {r.detail}", err=True)
    if errors:
        click.echo(f"internal error: microverify {__version__} found {len(errors)} counterexample(s) that its "
                   f"reference interpreter does not confirm, so none of them is reported as a leak; this is a "
                   f"bug. Please report it on {REPORT_URL} with the input files and this output.", err=True)
        return EXIT_INTERNAL
    if disagreements:
        return EXIT_NOT_PROVED
    return EXIT_PROVED if all(r.status is Status.PROVED for r in results) else EXIT_NOT_PROVED


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes. [default: all cores this process may run on]")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_DIR,
              show_default=True, help="Where PROVED results are cached, keyed by what each obligation is built from.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--cache-max-entries", type=click.IntRange(min=0), default=MAX_ENTRIES, show_default=True,
              metavar="N", help="After a run that solved something, remove the least recently used results "
                                "beyond N from the cache, and parsed files beyond N (0: remove none).")
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
@click.option("--rlimit", type=click.IntRange(min=1, max=UINT_MAX), default=Options.rlimit, show_default=True,
              help="Z3 resource limit per solver check: the deterministic gate.")
@click.option("--timeout", type=click.FloatRange(min=0.001, max=UINT_MAX / 1000), default=Options.timeout,
              show_default=True, callback=lambda ctx, param, value: _finite(param, value),
              help="Wall-clock seconds per solver check: a backstop only.")
@click.option("--max-memory", type=click.IntRange(min=0, max=UINT_MAX), default=Options.max_memory,
              show_default=True, metavar="MIB",
              help="Memory Z3 may allocate per obligation, in MiB (0: no limit): what neither "
                   "--rlimit nor --timeout stops ends UNKNOWN.")
@click.option("--seed", type=click.IntRange(min=0, max=UINT_MAX), default=Options.seed, show_default=True,
              help="Z3 random seed.")
@click.option("-D", "--define", "defines", multiple=True, metavar="NAME=VALUE",
              help="Set a `type` alias or a `const` of the model, e.g. -D pfn=bv[36] (repeatable).")
@click.option("--durations", type=click.IntRange(min=0), default=0, metavar="N",
              help="Then list the N slowest obligations (on standard error with a format other than text).")
@click.option("-q", "--quiet", is_flag=True, help="Print only obligations that are not proved.")
@click.version_option(__version__, prog_name="prove")
def prove(paths: tuple[Path, ...], jobs: int | None, cache_dir: Path, no_cache: bool, cache_max_entries: int,
          list_only: bool,
          only: tuple[str, ...], shard: str | None, fmt: str, output: Path | None, check_only: bool,
          dump_smt: Path | None, cross_check: str | None, encoding: str, rlimit: int, timeout: float,
          max_memory: int, seed: int, defines: tuple[str, ...], durations: int, quiet: bool) -> None:
    """Prove the noninterference obligations of microverify layers (.mv files or folders).

    Without PATHS, proves the roots under [tool.microverify] in pyproject.toml (default proofs/).
    Exit status: 0 all proved, 1 some obligation not proved, 2 bad input, 3 internal error,
    130 interrupted (Ctrl-C).
    """
    options = Options(rlimit=rlimit, timeout=timeout, seed=seed, dump_smt=dump_smt, cross_check=cross_check,
                      encoding=encoding, max_memory=max_memory)
    jobs = jobs or _cores()
    try:
        try:
            here = Path.cwd()  # file names are shown relative to it
        except FileNotFoundError:
            raise BadInput("error: the working directory no longer exists [io]", code="io") from None
        targets = list(paths) or configured_roots(here)
        try:
            parsed = parse_defines(defines)
        except ValueError as exc:
            raise BadInput(f"error: -D {exc} [define]", code="define") from None
        if cross_check is not None and (why := available(cross_check)) is not None:
            raise BadInput(f"error: cannot cross-check with {cross_check}: {why}")
        code = run(targets, options, quiet, jobs, None if no_cache else cache_dir, only, shard, fmt, output,
                   list_only, check_only, parsed, durations, cache_max_entries)
    except BadInput as exc:
        click.echo(str(exc), err=True)
        _report_problems(exc, fmt, output, options, jobs)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        raise Interrupted() from None
    sys.exit(code)


def _cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a
    container, `taskset` or a CI runner may allow fewer than the machine has, and a worker per
    core it may not use only competes for the ones it may), else all the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _report_problems(exc: BadInput, fmt: str, output: Path | None, options: Options, jobs: int) -> None:
    """Bad input in the report of the chosen format too, so that a CI that reads the report (a
    SARIF upload, JUnit) shows the errors rather than an empty, green report; with the text
    format, --output gets the errors as printed. A report that cannot be written is said, once."""
    if fmt == "text" and output is None:
        return
    text = str(exc) if fmt == "text" else report(fmt, [], [], options, jobs, exc.problems)
    try:
        emit(text, output)
    except BadInput as unwritable:
        click.echo(str(unwritable), err=True)


def _finite(param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", param=param)
    return value


def _on_sigint(signum: int, frame: object) -> None:
    """The first Ctrl-C (or SIGTERM) stops the run; one that follows while it stops (killing the
    workers, writing the last line) is ignored, so that it cannot break off that work with a
    traceback (seen in 1 of about 30 runs with two Ctrl-C 20 ms apart)."""
    _disarm()
    raise KeyboardInterrupt()


def _on_sigterm(signum: int, frame: object) -> None:
    _disarm()
    raise Terminated()


def _disarm() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


_stopping = False  # in _on_stop: a stop signal that comes meanwhile is the same stop


def _on_stop(signum: int, frame: object) -> None:
    """A job-control stop: Ctrl-Z (SIGTSTP), or reading the terminal, or writing it under `stty
    tostop`, from the background (SIGTTIN, SIGTTOU; the progress bar writes). Stop the solving
    and worker processes, then this one; resumed (`fg`, `bg`: SIGCONT), resume them. Each of
    them leads a process group of its own (prover/process.py), so the terminal's signal does
    not reach them once they run.

    This one stops by SIGTSTP at its default action, whichever signal came: the system drops it
    where no shell could resume the process (an orphaned group), and the children are resumed
    at once then. Found in review: the progress bar's thread, blocked in the background, raises
    SIGTTOU again and again; each came back into this handler as it ran, and one handled after
    `fg` stopped the run again (so it took several `fg`s), while one arriving with the default
    action set for it made Python print a traceback ("Signal 22 ignored due to race
    condition"). So a stop signal that comes while this runs is the same stop, SIGTTOU's
    handler stays in place, and a SIGTTIN or SIGTTOU handled once this process is in the
    terminal's foreground again stops nothing (the read or write it came from goes on)."""
    global _stopping
    if _stopping or (signum != signal.SIGTSTP and progress.in_foreground()):
        return
    _stopping = True
    try:
        held = multiprocessing.active_children()
        for child in held:
            signal_group(child, signal.SIGSTOP)
        progress.stopping()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until SIGCONT
        except OSError:  # "ignored due to race condition": a second Ctrl-Z just then, the same stop
            pass
        finally:
            signal.signal(signal.SIGTSTP, _on_stop)
        progress.resumed()
        for child in held:
            signal_group(child, signal.SIGCONT)
    finally:
        _stopping = False


def _stop(what: str, code: int) -> None:
    """One line, then exit: the workers are already killed (prover/driver.py)."""
    _disarm()  # a second Ctrl-C does not interrupt the exit
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    click.echo(f"prove: {what}; stopped before every obligation was solved (exit {code})", err=True)
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    if any(t.name == "microverify-solve" and t.is_alive() for t in threading.enumerate()):
        # the solving thread is still inside Z3, which must not see the interpreter (and the Z3
        # contexts) torn down under it
        os._exit(code)
    sys.exit(code)


# Whether obligations are solved in a process apart from this one (prover/process.py,
# SolverProcess), so that Z3 ending that process costs one obligation and not the run: main()
# (the `prove` command) sets it; the library and click's in-process test runner solve here.
_apart = False


def main() -> None:
    global _apart
    _apart = True
    ensure_recursion_limit()
    for stream in (sys.stdout, sys.stderr):  # a name that is not UTF-8 is printed, not a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    for name in ("SIGTSTP", "SIGTTIN", "SIGTTOU"):  # job control, where there is one
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _on_stop)
    try:
        prove.main(standalone_mode=False)
    except (Interrupted, KeyboardInterrupt, click.exceptions.Abort):
        _stop("interrupted", EXIT_INTERRUPTED)
    except Terminated:
        _stop("terminated", EXIT_TERMINATED)
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
