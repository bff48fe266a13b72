"""Benchmark `prove` on the shipped proofs (not a test): where the time goes, as ratios.

    python bench/bench.py [PATH ...]        (default: proofs/)

Reports, from one run: front end (parse + check) vs lowering (building every obligation's
terms) vs solving, as shares of the total; per-obligation solve time median and maximum as
multiples of the median; and rlimit use. Figures are ratios within one run because the
machines are shared and noisy.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from microverify.dsl.loader import discover, load_file
from microverify.prover.obligations import generate
from microverify.prover.solve import Options, solve


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path(__file__).resolve().parent.parent / "proofs"]
    files = discover(roots)
    t0 = time.perf_counter()
    modules = [load_file(f, {}) for f in files]
    t_front = time.perf_counter() - t0

    pairs = [(m, ob) for m in modules for ob in generate(m)]
    options = Options()
    t0 = time.perf_counter()
    results = [solve(m, ob, options) for m, ob in pairs]
    t_prove = time.perf_counter() - t0
    t_lower = sum(r.lower_seconds for r in results)
    t_solve = sum(r.seconds - r.lower_seconds for r in results)
    solve_times = [r.seconds for r in results]
    rlimits = [r.rlimit_used for r in results]
    statuses = [r.status.value for r in results]
    total = t_front + t_prove

    med = statistics.median(solve_times)
    print(f"files: {len(files)}   obligations: {len(pairs)}   "
          f"not proved: {sum(s != 'PROVED' for s in statuses)}")
    print(f"total wall time: {total:.2f}s (absolute figures are noisy; compare the ratios)")
    print(f"  front end (parse + check) share:  {t_front / total:6.1%}")
    print(f"  lowering (build terms) share:     {t_lower / total:6.1%}")
    print(f"  solving share:                    {t_solve / total:6.1%}")
    print(f"per obligation: median {med * 1000:.1f} ms; max = {max(solve_times) / med:.1f} x median; "
          f"p90 = {statistics.quantiles(solve_times, n=10)[-1] / med:.1f} x median")
    print(f"rlimit per obligation: median {int(statistics.median(rlimits))}, max {max(rlimits)} "
          f"(gate {options.rlimit}: headroom {options.rlimit / max(rlimits):.0f} x)")
    slowest = sorted(zip(solve_times, (ob.id for _, ob in pairs)), reverse=True)[:5]
    print("slowest: " + ", ".join(f"{i} ({t / med:.1f} x median)" for t, i in slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
