"""Prove loaded modules: the loop shared by the CLI, the tests and the benchmark.

With several jobs, obligations are solved in worker processes. Z3 terms cannot be pickled, so
a worker receives the checked modules once (plain data) and then obligation indices, and
builds every term itself. Results are handed on in generation order whatever the number of
jobs, so the report is the same for any `-j`.

Stopping: Ctrl-C, SIGTERM (the CLI turns it into an exception) or any error kills the workers
at once; a worker also exits by itself when its parent is gone (even after SIGKILL).
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import z3

from microverify.dsl import ir
from microverify.dsl.limits import ensure_recursion_limit
from microverify.prover.cache import Cache
from microverify.prover.obligations import Obligation, generate
from microverify.prover.solve import MEMORY_REASONS, Options, Result, Status, lift_memory_limit, solve

Pair = tuple[ir.Module, Obligation]


def obligations(modules: Iterable[ir.Module]) -> list[Pair]:
    """Every obligation once, though a file imported by several others is in each of them.

    Two copies are the same obligation only if everything it is built from is the same: the
    module's principals, policy and oracles, and the checked IR of the layer and of every layer
    it refines (a type alias the importing file declares can change what an imported layer
    means, so the file and the layer's name are not enough)."""
    seen: set[object] = set()
    out = []
    for m in modules:
        context = (m.principals, m.flows, m.oracles)
        chains: dict[str, str] = {}
        for ob in generate(m):
            if ob.layer not in chains:
                chains[ob.layer] = _digest(_chain(m, ob.layer))
            key = (ob, context, chains[ob.layer])
            if key not in seen:
                seen.add(key)
                out.append((m, ob))
    return out


def _digest(layers: tuple[ir.Layer, ...]) -> str:
    """A digest of the layers' IR (its repr spells out every node, type and span): hashing and
    comparing the IR itself is slow, as nothing in it caches a hash."""
    return hashlib.sha256(repr(layers).encode()).hexdigest()


def _chain(module: ir.Module, name: str) -> tuple[ir.Layer, ...]:
    """The layer and the layers above it, up to the top of its stack."""
    out = [module.layer(name)]
    while out[-1].refines is not None:
        out.append(module.layer(out[-1].refines))
    return tuple(out)


def prove_modules(modules: Iterable[ir.Module], options: Options,
                  on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    return prove_pairs(obligations(modules), options, on_result)


def prove_pairs(pairs: list[Pair], options: Options, on_result: Callable[[Result], None] = lambda r: None,
                jobs: int = 1, cache_dir: Path | None = None) -> list[Result]:
    """Solve every pair, handing each result on in order.

    Ctrl-C (KeyboardInterrupt) or any other exception stops at once: with one job the solving
    thread is abandoned (the caller exits), with several the worker processes are killed, not
    waited for; the exception goes on."""
    ensure_recursion_limit()
    # Z3 would catch SIGINT during a check (ending it `unknown` and going on with the next one);
    # let Python have it instead
    z3.set_param("ctrl_c", False)
    if jobs <= 1 or len(pairs) <= 1:
        cache = Cache(cache_dir) if cache_dir is not None else None
        results = []
        for module, ob in pairs:
            r = _in_thread(functools.partial(solve_guarded, module, ob, options, cache))
            on_result(r)
            results.append(r)
        return results
    done: dict[int, Result] = {}
    emitted = 0
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(pairs)), mp_context=context, initializer=_init,
                               initargs=(pairs, options, cache_dir, os.getpid()))
    try:
        futures = {pool.submit(_work, i): i for i in range(len(pairs))}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            while emitted in done:
                on_result(done[emitted])
                emitted += 1
    except BaseException:
        kill_workers(pool)
        raise
    pool.shutdown(wait=True)
    return [done[i] for i in range(len(pairs))]


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: its workers may be deep in a Z3 check, which no Python signal reaches."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        try:
            proc.join(timeout=5)
        except (OSError, ValueError, AttributeError, AssertionError):
            pass


_SOLVER_STACK = 256 * 1024 * 1024  # bytes of stack (address space) for the solving thread


def _in_thread(work: Callable[[], Result]) -> Result:
    """work() in a thread of its own, while this (the main) thread waits: a Z3 check runs in C
    for as long as it takes, and only a thread that is not in it can take Ctrl-C or SIGTERM at
    once. The solving thread blocks both signals, so that they go to this thread; it has a
    large stack, for deep recursion in the term walks (dsl/limits.py)."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))

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
    while thread.is_alive():
        thread.join(0.1)
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    assert isinstance(value, Result)
    return value


def solve_guarded(module: ir.Module, ob: Obligation, options: Options, cache: Cache | None) -> Result:
    """solve(), with a failure that comes from the size of the formula as an UNKNOWN result
    (with the reason) rather than a crash: a formula too deep for the Python term walks (a long
    chain of writes to one map), or memory running out outside a check."""
    start = time.perf_counter()
    try:
        return solve(module, ob, options, cache)
    except RecursionError:
        why = "the formula is nested too deeply for microverify's term walks"
    except MemoryError:
        lift_memory_limit()
        why = "out of memory"
    except z3.Z3Exception as exc:
        if not any(reason in str(exc) for reason in MEMORY_REASONS):
            raise
        lift_memory_limit()  # first: the obligation's terms are freed when this block ends
        why = f"memory limit of {options.max_memory} MiB reached (--max-memory)"
    seconds = time.perf_counter() - start
    return Result(ob, Status.UNKNOWN, seconds, 0, seconds, detail=why)


_WORKER: dict[str, object] = {}


def _init(pairs: list[Pair], options: Options, cache_dir: Path | None, parent: int) -> None:
    # The parent handles Ctrl-C (it kills the workers); a worker ignores it, and Z3 must not
    # catch it either (it would end the check as `unknown` and go on with the next one).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    z3.set_param("ctrl_c", False)
    ensure_recursion_limit()
    threading.Thread(target=_exit_with_parent, args=(parent,), name="microverify-watch-parent",
                     daemon=True).start()
    _WORKER["pairs"] = pairs
    _WORKER["options"] = options
    _WORKER["cache"] = Cache(cache_dir) if cache_dir is not None else None


def _exit_with_parent(parent: int) -> None:
    """A worker ends when its parent does, however the parent ended (SIGKILL included): Z3 runs
    in C and pays no attention to Python signals, so only exiting the process stops it."""
    while os.getppid() == parent:
        time.sleep(0.25)
    os._exit(1)


def _work(index: int) -> Result:
    pairs = _WORKER["pairs"]
    assert isinstance(pairs, list)
    module, ob = pairs[index]
    options = _WORKER["options"]
    assert isinstance(options, Options)
    cache = _WORKER["cache"]
    assert cache is None or isinstance(cache, Cache)
    return solve_guarded(module, ob, options, cache)
