"""Prove loaded modules: the loop shared by the CLI, the tests and the benchmark.

With several jobs, obligations are solved in worker processes. Z3 terms cannot be pickled, so
a worker receives the checked modules once (plain data) and then obligation indices, and
builds every term itself. Results are handed on in generation order whatever the number of
jobs, so the report is the same for any `-j`.
"""

from __future__ import annotations

import hashlib
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
