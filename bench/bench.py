"""Benchmark `prove` on the shipped proofs (not a test): where the time goes, as ratios.

    python bench/bench.py [-j N] [PATH ...]        (default: proofs/, N = all cores)

From one run it reports: wall time at -j1 and at -jN (and their ratio); the front end's share
(parse + check + lowering) against solving; the cached re-run against the cold run; and the
per-obligation median and maximum. Absolute seconds are printed for reference only: these
machines are shared and noisy, so compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from microverify.dsl.loader import discover, load_file
from microverify.prover.driver import obligations, prove_pairs
from microverify.prover.solve import Options, Result, Status


def timed(pairs: list, options: Options, jobs: int, cache: Path | None) -> tuple[float, list[Result]]:
    start = time.perf_counter()
    results = prove_pairs(pairs, options, jobs=jobs, cache_dir=cache)
    return time.perf_counter() - start, results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    roots = args.paths or [Path(__file__).resolve().parent.parent / "proofs"]

    t0 = time.perf_counter()
    modules = [load_file(f, {}) for f in discover(roots)]
    pairs = obligations(modules)
    t_parse = time.perf_counter() - t0
    options = Options()

    t_j1, results = timed(pairs, options, 1, None)
    t_jn, results_n = timed(pairs, options, args.jobs, None)
    assert [r.status for r in results] == [r.status for r in results_n], "verdicts depend on -j"
    with tempfile.TemporaryDirectory() as cache:
        t_cold, _ = timed(pairs, options, 1, Path(cache))
        t_warm, warm = timed(pairs, options, 1, Path(cache))
    lower = sum(r.lower_seconds for r in results)
    solve = sum(r.seconds - r.lower_seconds for r in results)
    per = [r.seconds for r in results]
    med = statistics.median(per)

    print(f"{len(modules)} files, {len(pairs)} obligations, "
          f"{sum(r.status is not Status.PROVED for r in results)} not proved; "
          f"{os.cpu_count()} cores; -j1 took {t_j1:.1f}s")
    print(f"-j{args.jobs} / -j1 wall time:             {t_jn / t_j1:5.2f}")
    front = t_parse + lower
    print(f"front end (parse+check+lowering) share:  {front / (front + solve):5.1%}  "
          f"(parse+check {t_parse / (front + solve):.1%}, lowering {lower / (front + solve):.1%})")
    print(f"solving share:                           {solve / (front + solve):5.1%}")
    print(f"cached re-run / cold run (-j1):          {t_warm / t_cold:5.2f}  "
          f"({sum(r.cached for r in warm)} of {len(warm)} from the cache)")
    print(f"per obligation: median {med * 1000:.1f} ms; max {max(per) / med:.1f} x median; "
          f"p90 {statistics.quantiles(per, n=10)[-1] / med:.1f} x median")
    slow = sorted(zip(per, (ob.id for _, ob in pairs)), reverse=True)[:5]
    print("slowest: " + ", ".join(f"{i} ({t / med:.1f} x)" for t, i in slow))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
