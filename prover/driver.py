"""Prove loaded modules: the loop shared by the CLI, the tests and the benchmark.

With several jobs, obligations are solved in worker processes. Z3 terms cannot be pickled, so
a worker receives the checked modules once (plain data) and then obligation indices, and
builds every term itself. Results are handed on in generation order whatever the number of
jobs, so the report is the same for any `-j`.

Stopping: Ctrl-C, SIGTERM (the CLI turns it into an exception) or any error kills the workers
(and the solving process) at once; each also exits by itself when its parent is gone (even
after SIGKILL). Where an obligation is solved, and how: prover/process.py.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import z3

from microverify.dsl import ir
from microverify.dsl.limits import ensure_recursion_limit
from microverify.prover import fingerprint
from microverify.prover.cache import Cache
from microverify.prover.memory import keep_freed_memory
from microverify.prover.obligations import Obligation, generate
from microverify.prover.parent import run_tag
from microverify.prover.process import (Pair, SolverProcess, Ticker, fork_is_safe, import_solver, in_thread,
                                        init_worker, kill_group, signals_blocked, solve_guarded, work)
from microverify.prover.verdict import Options, Result, Status, look_up, needs_formula


def obligations(modules: Iterable[ir.Module]) -> list[Pair]:
    """Every obligation once, though a file imported by several others is in each of them.

    Two copies are the same obligation only if what it is built from is the same: its slice of
    the module (prover/fingerprint.py: the principals, policy and oracles, its layer and the
    layer that one refines). A type alias the importing file declares can change what an
    imported layer means, so the file and the layer's name are not enough. When root files of
    the run build an obligation in different ways, or some of the files that hold its layer do
    not build it at all (an imported layer under more principals has more observers), each way
    is kept, its `context` naming the root files that build it so (its id says them)."""
    ways: dict[Obligation, dict[bytes, list[str]]] = {}  # obligation -> slice digest -> root files
    holders: dict[tuple[str, str], list[str]] = {}  # (file, layer) -> root files that hold it
    first: list[tuple[ir.Module, Obligation, bytes]] = []
    for m in modules:
        for layer in m.layers:
            holders.setdefault((layer.span.file, layer.name), []).append(m.file)
        for ob in generate(m):
            digest = fingerprint.digest(fingerprint.slice_module(m, ob))
            files = ways.setdefault(ob, {})
            if digest not in files:
                files[digest] = []
                first.append((m, ob, digest))
            files[digest].append(m.file)
    # layers of one name declared in different files: the obligations of each that no context
    # tells apart say its file (and so does its theorem, report.theorems)
    files_of: dict[str, set[str]] = {}
    for _, ob, _ in first:
        files_of.setdefault(ob.layer, set()).add(ob.file)
    out = []
    for m, ob, digest in first:
        builders = ways[ob][digest]
        if builders != holders[(ob.file, ob.layer)]:
            ob = dataclasses.replace(ob, context=tuple(dict.fromkeys(builders)))
        elif len(files_of[ob.layer]) > 1:
            ob = dataclasses.replace(ob, by_file=True)
        out.append((m, ob))
    return out


def prove_modules(modules: Iterable[ir.Module], options: Options,
                  on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    return prove_pairs(obligations(modules), options, on_result)


def prove_pairs(pairs: list[Pair], options: Options, on_result: Callable[[Result], None] = lambda r: None,
                jobs: int = 1, cache_dir: Path | None = None, solver: SolverProcess | None = None) -> list[Result]:
    """Solve every pair, handing each result on in order.

    This process solves, in order; given a `solver`, that process does (SolverProcess: Z3 ending
    it costs one obligation, not the run; prove_pairs closes it) and this one answers cache
    hits. With several jobs, once an obligation is not in the cache, `jobs - 1` worker
    processes join it (a run the cache answers in full has none), each given the next
    obligation and one more, and the next as soon as it answers (Ticker). Where fork() is safe
    (no other thread runs here, as in `prove` without a progress bar) they are forked at once:
    a forked worker costs the solver's import, about 0.1 s. Else they are spawned once this
    process has solved for SPAWN_AFTER seconds and the work left would take WORKER_START
    seconds more at the pace so far: a spawned worker costs about a CPU second to start (it
    imports everything again), which a small run would spend for nothing.

    When nothing is left to hand out, this process also solves what the workers still hold,
    the one handed last first (the likeliest to wait behind another), and takes whichever
    answer comes first (the same answer: the solving is deterministic). A worker's answer ends
    the solving process's work on it (the process is killed), and an UNKNOWN or a cache hit of
    this copy waits for the worker's (the same, unless the process solving the copy was killed
    or the hit is the entry the worker wrote, whose answer then carries its lookup's warnings);
    after either, what workers hold is left to them (with their threads running, a new process
    would be spawned: a second's start-up). Workers left busy are killed at the end.

    Ctrl-C (KeyboardInterrupt) or any other exception stops at once: the solving thread is
    abandoned (the caller exits) and the solving and worker processes are killed, not waited
    for; the exception goes on."""
    ensure_recursion_limit()
    keep_freed_memory()
    # Z3 would catch SIGINT during a check (ending it `unknown` and going on with the next one);
    # let Python have it instead
    z3.set_param("ctrl_c", False)
    cache = Cache(cache_dir) if cache_dir is not None else None

    def here(i: int) -> Result | None:
        module, ob = pairs[i]
        looked_up = look_up(module, ob, options, cache)  # a hit needs no solving thread
        if looked_up.cached is not None and not needs_formula(options):
            return looked_up.cached
        if not workers.needed:  # the first obligation to solve: workers may start (before the solving thread)
            workers.needed = True
            ticker.tick()
        # the obligation's time starts after the solver is imported (and its process started),
        # if this is the first one solved; so does the pace the workers are started by
        imported = solver.start(ticker) if solver is not None else import_solver()
        workers.began += imported
        looked_up = dataclasses.replace(looked_up, start=looked_up.start + imported)
        if solver is not None:  # a worker's answer to it ends the wait (the thread below cannot be stopped)
            return solver.solve(i, looked_up, ticker, lambda: wanted(i))
        return in_thread(lambda: solve_guarded(module, ob, options, cache, looked_up), ticker)

    def wanted(i: int) -> bool:
        """Whether this process's answer to `i` is kept: no worker gave one, or its worker died."""
        return i not in done or i in workers.lost

    done: dict[int, Result] = {}
    emitted = 0
    queue = list(range(len(pairs)))[::-1]  # the next one last
    ticker = Ticker()
    workers = _Workers(pairs, options, cache_dir, min(jobs, len(pairs)) - 1, ticker)
    ticker.tick = lambda: workers.tick(queue, done)

    abandoned = False  # a copy was given up (its process killed, or its answer left to the worker): no more copies
    try:
        while emitted < len(pairs):
            ticker.tick()
            copy = not queue
            i = queue.pop() if queue else -1 if abandoned else workers.held(done)  # this one, or one a worker has
            if i >= 0:
                solved = here(i)
                if copy and solved is not None and i not in done and (solved.cached or solved.status is Status.UNKNOWN):
                    # wait for the worker's answer (`i not in done`: it has neither answered nor died holding i,
                    # which puts i in done as lost): the same, and it says more. This copy's UNKNOWN may be its
                    # process killed; its cache hit may be the entry the worker has just written, while the
                    # worker's answer carries what its own lookup warned of (an invalid entry it replaced)
                    solved = None
                abandoned = solved is None
                if solved is not None and wanted(i):
                    done[i] = solved
            elif len(done) < len(pairs):
                ticker.wait()  # nothing to solve here: until a worker answers
            ticker.tick()
            while emitted in done:
                on_result(done[emitted])
                emitted += 1
    except BaseException:
        workers.kill()
        if solver is not None:
            solver.kill()
        raise
    finally:
        ticker.close()
    workers.close()
    if solver is not None:
        solver.close()
    return [done[i] for i in range(len(pairs))]


class _Workers:
    """The worker processes of prove_pairs (see there for when they start), each given the
    next obligation and one more."""

    def __init__(self, pairs: list[Pair], options: Options, cache_dir: Path | None, count: int,
                 ticker: Ticker) -> None:
        self.pairs = pairs
        self.ticker = ticker  # woken as a worker answers
        self.initargs = (pairs, options, cache_dir, os.getpid(), run_tag())
        self.count = count
        self.began = time.perf_counter()
        self.pool: ProcessPoolExecutor | None = None
        self.handed: dict[Future[Result], int] = {}  # submitted, and not yet in `done`
        self.futures: list[Future[Result]] = []
        self.lost: set[int] = set()  # handed to a worker that died, and UNKNOWN for it
        self.needed = False  # this process has found an obligation the cache does not answer

    def tick(self, queue: list[int], done: dict[int, Result]) -> None:
        """Take the workers' answers, start the workers when it is time, keep them busy (the
        answers first: a worker that answered has room for the next obligation now)."""
        for future in [f for f in self.handed if f.done() or self.handed[f] in done]:
            i = self.handed.pop(future)
            if not future.done():
                continue
            if isinstance(future.exception(), BrokenProcessPool):
                self.broken(i, done)
            else:
                done.setdefault(i, future.result())
        if self.pool is None and self.count > 0 and queue and self.needed:
            forked = fork_is_safe()
            elapsed = time.perf_counter() - self.began
            if forked or (elapsed >= SPAWN_AFTER and len(queue) * elapsed >= WORKER_START * max(len(done), 1)):
                context = multiprocessing.get_context("fork" if forked else "spawn")
                self.pool = ProcessPoolExecutor(max_workers=self.count, mp_context=context, initializer=init_worker,
                                                initargs=self.initargs)
        while self.pool is not None and queue and len(self.handed) < 2 * self.count:
            try:
                with signals_blocked():  # the first submit makes the processes
                    future = self.pool.submit(work, queue[-1])
            except BrokenProcessPool:  # a worker died while it had nothing to do
                self.count = 0
                break
            future.add_done_callback(lambda _: self.ticker.wake())
            self.handed[future] = queue.pop()
            self.futures.append(future)

    def broken(self, i: int, done: dict[int, Result]) -> None:
        """A worker process ended without an answer (killed: by the system running out of
        memory, or by a signal), so the pool is broken and every obligation handed to it is
        lost. Which one the dead worker was solving is not known, and solving them here could
        kill this process the same way: each is UNKNOWN, said why (`lost`; unless this process
        is solving it already, prove_pairs then keeps its answer); the rest are solved here,
        without workers."""
        self.count = 0
        if i not in done:
            done[i] = Result(self.pairs[i][1], Status.UNKNOWN, 0.0, 0, 0.0, detail=WORKER_DIED)
            self.lost.add(i)

    def held(self, done: dict[int, Result]) -> int:
        """The obligation handed to a worker last that is not solved yet, or -1: each worker
        holds the one it solves and the next, so the one handed last is the likeliest not to
        be started yet (and handed in order, it has the highest index)."""
        return max((i for i in self.handed.values() if i not in done), default=-1)

    def kill(self) -> None:
        if self.pool is not None:
            kill_workers(self.pool)

    def close(self) -> None:
        if self.pool is not None and all(f.done() for f in self.futures):
            self.pool.shutdown(wait=True)
        else:
            self.kill()  # busy with (or yet to start) obligations this process has solved


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: its workers may be deep in a Z3 check, which no Python signal reaches."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
    for proc in processes:
        kill_group(proc)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        try:
            proc.join(timeout=5)
        except (OSError, ValueError, AttributeError, AssertionError):
            pass
    # The pool's manager thread notices the dead workers, closes the pool's queues and its wakeup
    # pipe, and ends. Were it still running at exit, the interpreter's shutdown would race it:
    # concurrent.futures' exit hook writes to that pipe while the thread closes it ("OSError:
    # [Errno 9] Bad file descriptor", or "Exception ignored in: <module 'threading'>" on stderr).
    if isinstance(manager, threading.Thread) and manager is not threading.current_thread():
        manager.join(timeout=5)


WORKER_DIED = ("not solved: it was handed to a worker process that ended abruptly (killed by a signal, by the "
               "system when memory ran out, or by Z3 at its memory limit); run with -j1, or with --max-memory, to "
               "solve it")
SPAWN_AFTER = 0.3  # seconds of solving in this process before worker processes may be started
WORKER_START = 1.5  # seconds of work left (at the pace so far) that a worker's start-up is worth
