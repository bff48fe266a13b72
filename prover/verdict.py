"""What solving an obligation answers, and the cache lookup that answers it without solving.

The types the whole tool shares (Status, Options, Result), an obligation's cache key and
`look_up`, apart from prover/solve.py: a run that the cache answers in full imports none of
the machinery that builds and solves formulas (lowering, the quantifier-free rewriting,
counterexamples, the reference interpreter), and spends its time on the input alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from microverify.dsl import ir
from microverify.prover import fingerprint
from microverify.prover.cache import Cache, Hit
from microverify.prover.obligations import Obligation

if TYPE_CHECKING:  # only as the types of fields: imported by prover/solve.py, which makes them
    from microverify.prover.counterexample import Counterexample
    from microverify.prover.replay import Replay

ENCODINGS = ("qf", "quantified")


class Status(Enum):
    PROVED = "PROVED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    VACUOUS = "VACUOUS"
    ERROR = "ERROR"  # an internal error: the solver's counterexample does not replay


@dataclass(frozen=True)
class Options:
    rlimit: int = 20_000_000  # Z3 resource units per check(); the deterministic gate
    timeout: float = 60.0  # seconds per check(); a backstop only
    seed: int = 0
    dump_smt: Path | None = None  # write every obligation there as SMT-LIB2
    cross_check: str | None = None  # re-check every verdict with this solver (through pysmt)
    encoding: str = "qf"  # "qf": quantifiers instantiated where sound (prover/qf.py); "quantified"
    max_memory: int = 2048  # MiB Z3 may allocate for one obligation (0: no limit); prover/memory.py


@dataclass(frozen=True)
class Result:
    obligation: Obligation
    status: Status
    seconds: float  # lowering + solving
    rlimit_used: int
    lower_seconds: float  # building the terms (symbolic execution), part of `seconds`
    detail: str = ""  # why UNKNOWN / VACUOUS, or what failed
    counterexample: Counterexample | None = None
    cached: bool = False  # PROVED by a valid cache entry for exactly this key (cache_key)
    warnings: tuple[str, ...] = ()
    disagreement: str = ""  # the second solver's objection (--cross-check), "" if it agrees
    # the formula solved kept quantifiers (--encoding quantified, or the rewriting could not
    # remove them all); False when the exact-first check decided it: no rewriting ran (docs/ci.md)
    quantified: bool = False
    replay: Replay | None = None  # the counterexample run by the reference interpreter


def cache_key(sliced: ir.Module, ob: Obligation, options: Options) -> str:
    """The key of `ob`, built from `sliced` (fingerprint.slice_module): the options that can
    change a PROVED into something else are in it; --max-memory is not (docs/ci.md)."""
    return fingerprint.obligation_key(sliced, ob, option_text(options))


def option_text(options: Options) -> str:
    """The options in every cache key: those that can change a PROVED into something else."""
    return f"rlimit={options.rlimit};timeout={options.timeout};seed={options.seed};encoding={options.encoding}"


@dataclass(frozen=True)
class Lookup:
    """An obligation's slice and cache key, and its result if the cache holds it."""

    sliced: ir.Module
    key: str | None  # None: no cache
    cached: Result | None
    start: float
    warnings: tuple[str, ...] = ()


def look_up(module: ir.Module, ob: Obligation, options: Options, cache: Cache | None) -> Lookup:
    """Slice the obligation and look it up in the cache, building no formula: cheap enough for
    the main thread (prover/driver.py answers a hit without a solving thread)."""
    start = time.perf_counter()
    sliced = fingerprint.slice_module(module, ob)
    if cache is None:
        return Lookup(sliced, None, None, start)
    key = cache_key(sliced, ob, options)
    hit = cache.get(key, ob.id)
    warnings = tuple(cache.warnings)
    cache.warnings.clear()
    if hit is None:
        return Lookup(sliced, key, None, start, warnings)
    return Lookup(sliced, key, _answered(ob, hit, start, warnings), start, warnings)


def cached(ob: Obligation, key: str, cache: Cache) -> Result | None:
    """The result the cache holds for `ob` under `key` (prover/runindex.py), if a valid one."""
    start = time.perf_counter()
    hit = cache.get(key, ob.id)
    return None if hit is None else _answered(ob, hit, start, ())


def _answered(ob: Obligation, hit: Hit, start: float, warnings: tuple[str, ...]) -> Result:
    elapsed = time.perf_counter() - start
    return Result(ob, Status.PROVED, elapsed, hit.rlimit_used, elapsed, cached=True, warnings=warnings,
                  quantified=hit.quantified)


def answered_by(cache_dir: Path | None, pairs: list[tuple[ir.Module, Obligation]], options: Options) -> bool:
    """Whether the cache in `cache_dir` likely answers every pair: each has an entry (not checked
    for validity; an invalid one is solved all the same, only later). Reads no entry."""
    if cache_dir is None or needs_formula(options):
        return False
    cache = Cache(cache_dir)
    return all(cache.holds(cache_key(fingerprint.slice_module(m, ob), ob, options)) for m, ob in pairs)


def needs_formula(options: Options) -> bool:
    """Whether an obligation is solved even when the cache holds it: to dump or cross-check the
    formula its verdict came from (prover/solve.py, `solve`)."""
    return options.dump_smt is not None or options.cross_check is not None
