"""Prove loaded modules: the loop shared by the CLI, the tests and the benchmark.

With several jobs, obligations are solved in worker processes. Z3 terms cannot be pickled, so
a worker receives the checked modules once (plain data) and then obligation indices, and
builds every term itself. Results are handed on in generation order whatever the number of
jobs, so the report is the same for any `-j`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from microverify.dsl import ir
from microverify.prover.cache import Cache
from microverify.prover.obligations import Obligation, generate
from microverify.prover.solve import Options, Result, solve

Pair = tuple[ir.Module, Obligation]


def obligations(modules: Iterable[ir.Module]) -> list[Pair]:
    """Every obligation once, though a file imported by several others is in each of them."""
    seen: set[object] = set()
    out = []
    for m in modules:
        context = (m.principals, m.flows, m.oracles)
        for ob in generate(m):
            key = (ob, context)
            if key not in seen:
                seen.add(key)
                out.append((m, ob))
    return out


def prove_modules(modules: Iterable[ir.Module], options: Options,
                  on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    return prove_pairs(obligations(modules), options, on_result)


def prove_pairs(pairs: list[Pair], options: Options, on_result: Callable[[Result], None] = lambda r: None,
                jobs: int = 1, cache_dir: Path | None = None) -> list[Result]:
    if jobs <= 1 or len(pairs) <= 1:
        cache = Cache(cache_dir) if cache_dir is not None else None
        results = []
        for module, ob in pairs:
            r = solve(module, ob, options, cache)
            on_result(r)
            results.append(r)
        return results
    done: dict[int, Result] = {}
    emitted = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init,
                             initargs=(pairs, options, cache_dir)) as pool:
        futures = {pool.submit(_work, i): i for i in range(len(pairs))}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            while emitted in done:
                on_result(done[emitted])
                emitted += 1
    return [done[i] for i in range(len(pairs))]


_WORKER: dict[str, object] = {}


def _init(pairs: list[Pair], options: Options, cache_dir: Path | None) -> None:
    _WORKER["pairs"] = pairs
    _WORKER["options"] = options
    _WORKER["cache"] = Cache(cache_dir) if cache_dir is not None else None


def _work(index: int) -> Result:
    pairs = _WORKER["pairs"]
    assert isinstance(pairs, list)
    module, ob = pairs[index]
    options = _WORKER["options"]
    assert isinstance(options, Options)
    cache = _WORKER["cache"]
    assert cache is None or isinstance(cache, Cache)
    return solve(module, ob, options, cache)
