"""Where an obligation is solved: in a thread of its own, so that Ctrl-C is taken at once; in a
process of its own (SolverProcess), so that Z3 ending the process costs one obligation and not
the run; and the set-up of the worker processes that prover/driver.py starts."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path

import z3

from microverify import REPORT_URL
from microverify.dsl import ir
from microverify.dsl.limits import ensure_recursion_limit, too_deep
from microverify.prover import fingerprint
from microverify.prover.cache import Cache
from microverify.prover.memory import keep_freed_memory, lift_memory_limit, out_of_memory
from microverify.prover.parent import exit_with_parent, run_tag, working_for
from microverify.prover.obligations import Obligation
from microverify.prover.verdict import Lookup, Options, Result, Status

Pair = tuple[ir.Module, Obligation]
Z3_MEMOUT = 101  # the exit status Z3 ends a process with when it runs out of memory (ERR_MEMOUT)
_SOLVER_STACK = 256 * 1024 * 1024  # bytes of stack (address space) for the solving thread


class Ticker:
    """What a thread that waits for an answer (in_thread, SolverProcess) does meanwhile: it
    calls `tick` (prove_pairs: keep the workers busy, take their answers) as soon as a worker
    answers (`wake`, from the worker pool's thread) and every TICK seconds at most. Woken only
    by the clock, a worker whose obligations took milliseconds sat idle for the rest of it: on
    the ARINC 653 model at -j2 the worker was idle a third of the time."""

    def __init__(self, tick: Callable[[], None] = lambda: None) -> None:
        self.tick = tick
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()  # wake() and close() come from different threads
        self._open = True

    def wake(self) -> None:
        with self._lock:
            if self._open:  # after close(), the descriptor's number may be another file's
                try:
                    os.write(self._write, b"!")
                except BlockingIOError:  # a wake-up is waiting to be read already
                    pass

    def wait(self, conn: Connection | None = None) -> None:
        """Until `conn` (if given) can be read, wake() is called, or TICK seconds have passed;
        then tick()."""
        ready = multiprocessing.connection.wait([self._read] + ([conn] if conn is not None else []), TICK)
        if self._read in ready:
            try:
                while os.read(self._read, 4096):
                    pass
            except BlockingIOError:
                pass
        self.tick()

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                os.close(self._read)
                os.close(self._write)


TICK = 0.1  # seconds: the longest a waiting thread goes without calling its Ticker's tick


def in_thread(work: Callable[[], Result], ticker: Ticker | None = None) -> Result:
    """work() in a thread of its own, while this (the main) thread waits: a Z3 check runs in C
    for as long as it takes, and only a thread that is not in it can take Ctrl-C or SIGTERM at
    once. The solving thread blocks both signals, so that they go to this thread; it has a
    large stack, for deep recursion in the term walks (dsl/limits.py). Meanwhile `ticker`
    ticks (prove_pairs keeps its workers busy with it); the solving thread wakes it as it
    ends."""
    outcome: list[tuple[bool, object]] = []
    own = ticker is None
    waiting = Ticker() if ticker is None else ticker

    def run() -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        finally:
            waiting.wake()

    previous = threading.stack_size()
    try:
        threading.stack_size(_SOLVER_STACK)
    except (ValueError, RuntimeError):
        pass
    try:
        thread = threading.Thread(target=run, name="microverify-solve", daemon=True)
        thread.start()
    finally:
        threading.stack_size(previous)
    try:
        while not outcome:
            waiting.wait()
    finally:
        if own:  # abandoned on Ctrl-C: its wake() finds it closed
            waiting.close()
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    assert isinstance(value, Result)
    return value


def solve_guarded(module: ir.Module, ob: Obligation, options: Options, cache: Cache | None,
                  looked_up: Lookup | None = None) -> Result:
    """solve(), with a failure that comes from the size of the formula as an UNKNOWN result
    (with the reason) rather than a crash: a formula too deep for the Python term walks (a long
    chain of writes to one map), or memory running out outside a check."""
    from microverify.prover.solve import solve  # on first use: see import_solver

    start = time.perf_counter()
    try:
        return solve(module, ob, options, cache, looked_up)
    except (RecursionError, ctypes.ArgumentError) as exc:
        if not too_deep(exc):
            raise
        why = "the formula is nested too deeply for microverify's term walks"
    except MemoryError:
        lift_memory_limit()
        why = "out of memory"
    except z3.Z3Exception as exc:
        if not out_of_memory(exc):
            raise
        lift_memory_limit()  # first: the obligation's terms are freed when this block ends
        why = f"memory limit of {options.max_memory} MiB reached (--max-memory)"
    seconds = time.perf_counter() - start
    return Result(ob, Status.UNKNOWN, seconds, 0, seconds, detail=why)


def import_solver() -> float:
    """Import prover/solve.py, if it is not yet, and the seconds that took: a run the cache
    answers in full never imports the solver and what it builds on (prover/verdict.py)."""
    start = time.perf_counter()
    importlib.import_module("microverify.prover.solve")
    return time.perf_counter() - start


_WORKER: dict[str, object] = {}


def init_worker(pairs: list[Pair], options: Options, cache_dir: Path | None, parent: int, run: str,
                name: str = "prove-worker") -> None:
    """Set up a process that solves: a worker, or a SolverProcess (`name` "prove-solver").

    It leads a process group of its own, which is killed with it (SolverProcess.kill,
    driver.kill_workers) or by it when its parent is gone: a `--cross-check` process, its
    child, goes too. That process may be deep in cvc5, which holds Python's lock, so that it
    cannot see its parent end: a worker's went on for `--timeout` after a Ctrl-C (60 s at the
    default) before workers led groups of their own. Its name (`ps`, /proc) says which it is."""
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)
        # in a group of its own, the process is not in the terminal's foreground: a write to the
        # terminal (Z3's line as it ends the process) would stop it, were `stty tostop` set
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        Path("/proc/self/comm").write_text(name)
    except OSError:  # not Linux
        pass
    # Z3 prints a line on standard output as it ends the process at its memory limit; the
    # report may be there (--format json)
    os.dup2(2, 1)
    # The parent handles Ctrl-C (it kills the workers); a worker ignores it, and Z3 must not
    # catch it either (it would end the check as `unknown` and go on with the next one).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited by fork()
    for name in ("SIGTSTP", "SIGTTIN"):  # nor its job-control one: the parent stops this process's group
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    # both were blocked as the process was made (signals_blocked): from here on they do as set
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    z3.set_param("ctrl_c", False)
    ensure_recursion_limit()
    keep_freed_memory()
    exit_with_parent(parent, group=hasattr(os, "setpgid"))
    working_for(run)  # the parent's run: a spawned process made a tag of its own as it imported
    import_solver()  # a worker is there to solve: it imports the solver as it starts
    _WORKER["pairs"] = pairs
    _WORKER["options"] = options
    _WORKER["cache"] = Cache(cache_dir) if cache_dir is not None else None


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in this thread while a solving process is made: the process
    inherits the mask (across exec too) and keeps them blocked until init_worker has set what
    they do there, and until this process knows of it (a KeyboardInterrupt in between would
    leave it running). A Ctrl-C to the terminal's process group must not reach it as a
    KeyboardInterrupt with a traceback."""
    masks = hasattr(signal, "pthread_sigmask")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if masks else set()
    try:
        yield
    finally:
        if masks:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def work(index: int, looked_up: Lookup | None = None) -> Result:
    """Solve obligation `index` in a process set up by init_worker."""
    pairs = _WORKER["pairs"]
    assert isinstance(pairs, list)
    module, ob = pairs[index]
    options = _WORKER["options"]
    assert isinstance(options, Options)
    cache = _WORKER["cache"]
    assert cache is None or isinstance(cache, Cache)
    return solve_guarded(module, ob, options, cache, looked_up)


class SolverProcess:
    """A process that solves obligations one at a time, for prove_pairs.

    Z3 ends the process it runs in on some paths when it reaches its memory limit
    (--max-memory): with exit status 101 and a line on standard output, when the limit is
    reached while it infers patterns for a quantifier, or with abort() when an allocation that
    fails breaks one of its assertions. The system's out-of-memory killer, too, ends the
    largest process. Solved in a process of its own, that costs the obligation it was solving,
    which is UNKNOWN and says why; a new process solves the rest.

    The process is made by fork() where that is safe (Linux, with no other thread in this
    process): it shares what this process has imported and built, and costs a few
    milliseconds. The `prove` command forks it before its progress bar's thread starts
    (`fork`). Otherwise (after a process ended, once the worker pool's or the progress bar's
    threads run, or on another system) it is spawned, as the workers are, and imports
    everything again (about a second). Only what differs per obligation crosses the pipe: its
    index and what look_up found go in (not the slice, which the process makes again: pickling
    the slices of the shipped proofs took 2 s), the Result comes back."""

    def __init__(self, pairs: list[Pair], options: Options, cache_dir: Path | None) -> None:
        self.pairs = pairs
        self.options = options
        self.cache_dir = cache_dir
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready = False  # it said so: start() waited for it, to solve an obligation

    def fork(self) -> None:
        """Make the process now if fork() is safe (it imports the solver as it starts); else
        leave it to `start`."""
        if self.process is None and fork_is_safe():
            self._make(multiprocessing.get_context("fork"))

    def start(self, ticker: Ticker) -> float:
        """Have the process ready, made and started if need be; the seconds that took."""
        began = time.perf_counter()
        if self.process is None:
            if fork_is_safe():
                import_solver()  # the process inherits it
                self._make(multiprocessing.get_context("fork"))
            else:
                self._make(multiprocessing.get_context("spawn"))
        if not self.ready:
            try:
                self._receive(ticker)  # "ready", or the exception that stopped it
                self.ready = True
            except EOFError:  # it ended as it started: the next solve() says so
                pass
        return time.perf_counter() - began

    def _make(self, context: ForkContext | SpawnContext) -> None:
        conn, theirs = context.Pipe()
        forked = isinstance(context, ForkContext)
        process = context.Process(target=_serve, args=(theirs, conn if forked else None, self.pairs, self.options,
                                                       self.cache_dir, os.getpid(), run_tag()),
                                  name="microverify-solver")  # not daemonic: --cross-check starts processes
        try:
            with signals_blocked():
                process.start()
                self.process, self.conn, self.ready = process, conn, False
        finally:
            theirs.close()  # its end of the pipe is open in it alone: it closes when the process ends

    def solve(self, index: int, looked_up: Lookup, ticker: Ticker,
              wanted: Callable[[], bool] = lambda: True) -> Result | None:
        """Obligation `index`, solved in the process (start() first); UNKNOWN, saying why, if the
        process ends before it answers; None, and the process killed, once `wanted()` (asked
        as the ticker ticks) says the answer is not needed any more (a worker gave it)."""
        assert self.process is not None and self.conn is not None
        job = (index, looked_up.key, looked_up.cached, looked_up.start, looked_up.warnings)
        if self.ready and not _sent(self.conn, job):  # it ended while it waited: that cost no obligation
            self.kill()
            self.start(ticker)
            self.ready = self.ready and self.conn is not None and _sent(self.conn, job)
        if self.ready:
            try:
                result = self._receive(ticker, wanted)
                assert isinstance(result, Result)
                return result
            except EOFError:  # it ended
                pass
            except _Unwanted:
                self.kill()
                return None
        process = self.process
        assert process is not None
        process.join(5)
        detail = ended(process.exitcode, self.options.max_memory)
        self.kill()
        seconds = time.perf_counter() - looked_up.start
        return Result(self.pairs[index][1], Status.UNKNOWN, seconds, 0, seconds, detail=detail)

    def _receive(self, ticker: Ticker, wanted: Callable[[], bool] = lambda: True) -> object:
        """What the process sends next; EOFError if it ends first, _Unwanted once `wanted()` is
        false."""
        assert self.conn is not None
        while not self.conn.poll():
            ticker.wait(self.conn)
            if not wanted():
                raise _Unwanted
        kind, value = self.conn.recv()
        if kind == "raised":
            self.kill()
            assert isinstance(value, BaseException)
            raise value
        return value

    def close(self) -> None:
        """Let the process end, and wait for it (it waits for nothing but the next index); one
        that was never asked to be ready is killed (it may still be importing the solver)."""
        if self.process is not None and self.conn is not None and self.ready:
            try:
                self.conn.send(None)
                self.process.join(5)
            except OSError:
                pass
        self.kill()

    def kill(self) -> None:
        """Kill the process and its process group: the cross-check's process is a child of it,
        and may be deep in cvc5, which holds Python's lock, so that it cannot see its parent go
        (prover/parent.py) until its alarm (--timeout); before, the tracebacks it printed then
        came after `prove` had ended."""
        if self.process is not None:
            kill_group(self.process)
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None
        self.ready = False


def kill_group(process: BaseProcess) -> None:
    """Kill a solving process (a SolverProcess's, or a worker) with the process group it leads
    (init_worker): its --cross-check process goes too."""
    signal_group(process, signal.SIGKILL)


def signal_group(process: BaseProcess, signum: int) -> None:
    """Send a signal to a solving process and the process group it leads (init_worker). Before
    it leads one, to the process alone; a process that has ended is left alone (its pid may be
    another's by now)."""
    pid = process.pid
    if pid is None or process.exitcode is not None:
        return
    try:
        os.killpg(pid, signum)
    except OSError:  # not yet a group of its own
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


class _Unwanted(Exception):
    """The answer SolverProcess waits for is not needed any more."""


def fork_is_safe() -> bool:
    """fork() copies only the thread that calls it: with another thread running (the worker
    pool's), a lock it held would stay locked in the copy."""
    return sys.platform == "linux" and threading.active_count() == 1


def ended(exitcode: int | None, max_memory: int) -> str:
    """Why an obligation has no answer, when the process solving it ended with `exitcode`
    (multiprocessing's: -N for signal N)."""
    start = "not solved: the process solving it ended before it answered"
    if exitcode == Z3_MEMOUT:
        limit = f"its memory limit ({max_memory} MiB, --max-memory)" if max_memory > 0 else "the memory available"
        return (f"{start}: Z3 ran out of {limit} and ended the process (exit status {Z3_MEMOUT}); solve it again "
                f"alone (--only) with a larger --max-memory")
    if exitcode == -signal.SIGKILL:
        return (f"{start}: it was killed (SIGKILL: by the system, when memory ran out, or by a user); solve it "
                f"again alone (--only) with --max-memory below the memory available")
    if exitcode == -signal.SIGTERM:
        return f"{start}: it was terminated (SIGTERM, sent to it alone)"
    if exitcode == -signal.SIGABRT:
        return (f"{start}: Z3 aborted (SIGABRT), as it does on some paths when it reaches its memory limit; solve "
                f"it again alone (--only) with a larger --max-memory. If it aborts below the limit, this is a bug "
                f"in Z3 or in microverify: please report it on {REPORT_URL} with the input files and this output")
    how = f"signal {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0 and \
        -exitcode in signal.valid_signals() else f"exit status {exitcode}"
    return (f"{start} ({how}): this is a bug in Z3 or in microverify. Please report it on {REPORT_URL} with the "
            f"input files and this output")


def _serve(conn: Connection, theirs: Connection | None, pairs: list[Pair], options: Options, cache_dir: Path | None,
           parent: int, run: str) -> None:
    """The SolverProcess: solve what `conn` hands in, one at a time, until it hands in None or
    the parent is gone. `theirs`: the parent's end of the pipe, which a forked process holds
    too and closes, so that its end reads EOF when the parent ends."""
    try:
        if theirs is not None:
            theirs.close()
        init_worker(pairs, options, cache_dir, parent, run, "prove-solver")
        answer: tuple[str, object] = ("ready", None)
        while _sent(conn, answer):
            try:
                job = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                break
            if job is None:
                break
            index, key, cached, start, warnings = job
            module, ob = pairs[index]
            looked_up = Lookup(fingerprint.slice_module(module, ob), key, cached, start, warnings)
            answer = ("solved", in_thread(lambda: work(index, looked_up)))
    except BaseException as exc:  # noqa: BLE001 - handed to prove_pairs, which raises it
        _sent(conn, ("raised", _portable(exc)))
    finally:
        conn.close()


def _sent(conn: Connection, message: object) -> bool:
    """Whether the message could be sent (not if the other end is gone)."""
    try:
        conn.send(message)
        return True
    except OSError:
        return False


def _portable(exc: BaseException) -> BaseException:
    """`exc`, with this process's traceback as a note, in a form that pickles."""
    text = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"raised in the process solving the obligation:\n{text}")
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - some exception types take other arguments than they keep
        return RuntimeError(f"raised in the process solving the obligation:\n{text}")
