"""Benchmark `prove` on the shipped proofs (not a test): where the time goes, as ratios.

    python bench/bench.py [-j N] [PATH ...]        (default: proofs/, N = all cores)

From one run it reports: wall time at -j1 and at -jN (and their ratio, also for `prove` on a
small file); the front end's share (parse + check + lowering) against solving; the tool's time
against Z3 alone on the exported scripts; the cached re-run against the cold run, in-process and
as `prove PATH` (the command, with its start-up); the per-obligation median and maximum; per
folder, the quantifier-free encoding against the quantified one (solve time and wall time;
bench/handwritten.py compares with a hand-written z3py encoding of the tutorial Pages model);
and last the width sweep of bench/widths.py. Absolute seconds are printed for reference only:
these machines are shared and noisy, so compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import z3

from microverify.dsl.loader import discover, load_file
from microverify.prover.driver import Pair, obligations, prove_pairs
from microverify.prover.verdict import Options, Result, Status


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
    with tempfile.TemporaryDirectory() as cache:
        c_cold, c_warm = (command(["--cache-dir", cache, *map(str, roots)]) for _ in range(2))
    small = Path(__file__).resolve().parent.parent / "proofs" / "tutorial" / "context_switch.mv"
    s_j1, s_jn = (statistics.median(command(["--no-cache", f"-j{j}", str(small)]) for _ in range(3))
                  for j in (1, args.jobs))
    with tempfile.TemporaryDirectory() as scripts:
        timed(pairs, Options(dump_smt=Path(scripts)), 1, None)
        t_z3 = z3_alone(Path(scripts), options)
    lower = sum(r.lower_seconds for r in results)
    solve = sum(r.seconds - r.lower_seconds for r in results)
    per = [r.seconds for r in results]
    med = statistics.median(per)

    print(f"{len(modules)} files, {len(pairs)} obligations, "
          f"{sum(r.status is not Status.PROVED for r in results)} not proved; "
          f"{os.cpu_count()} cores; -j1 took {t_j1:.1f}s")
    print(f"-j{args.jobs} / -j1 wall time:             {t_jn / t_j1:5.2f}")
    print(f"the same for `prove {small.name}`:  {s_jn / s_j1:5.2f}  (a small file; median of 3)")
    front = t_parse + lower
    print(f"front end (parse+check+lowering) share:  {front / (front + solve):5.1%}  "
          f"(parse+check {t_parse / (front + solve):.1%}, lowering {lower / (front + solve):.1%})")
    print(f"solving share:                           {solve / (front + solve):5.1%}")
    print(f"tool (-j1) / Z3 alone on the exported scripts: {t_j1 / t_z3:5.2f}  "
          f"(Z3 parses each script and checks it once)")
    print(f"cached re-run / cold run (-j1):          {t_warm / t_cold:5.2f}  "
          f"({sum(r.cached for r in warm)} of {len(warm)} from the cache)")
    print(f"`prove PATH` cached re-run / cold run:   {c_warm / c_cold:5.2f}  "
          f"(default -j, with the command's start-up)")
    print(f"per obligation: median {med * 1000:.1f} ms; max {max(per) / med:.1f} x median; "
          f"p90 {statistics.quantiles(per, n=10)[-1] / med:.1f} x median")
    slow = sorted(zip(per, (ob.id for _, ob in pairs)), reverse=True)[:5]
    print("slowest: " + ", ".join(f"{i} ({t / med:.1f} x)" for t, i in slow))
    encodings(pairs, args.jobs)
    sys.stdout.flush()
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "widths.py")], check=True)
    return 0


def command(args: list[str]) -> float:
    """Wall time of `prove ARGS` (with -q), which must prove everything."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "microverify", "-q", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def z3_alone(scripts: Path, options: Options) -> float:
    """Seconds Z3 takes to parse and check every script, under the same rlimit and seed."""
    start = time.perf_counter()
    for path in sorted(scripts.glob("*.smt2")):
        solver = z3.Solver(ctx=z3.Context())
        solver.set("rlimit", options.rlimit, "random_seed", options.seed)
        solver.from_file(str(path))
        solver.check()
    return time.perf_counter() - start


def encodings(pairs: list[Pair], jobs: int) -> None:
    """The quantifier-free encoding (the default) against the quantified one, per folder."""
    print("encoding qf / quantified (-j%d):  solve  total  still quantified" % jobs)
    by_folder: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_folder.setdefault(Path(pair[1].file).parent.name, []).append(pair)
    for folder, group in sorted(by_folder.items()):
        runs = {}
        for encoding in ("qf", "quantified"):
            wall, results = timed(group, Options(encoding=encoding), jobs, None)
            runs[encoding] = (wall, sum(r.seconds - r.lower_seconds for r in results), results)
        (qf_wall, qf_solve, qf_res), (q_wall, q_solve, q_res) = runs["qf"], runs["quantified"]
        assert [r.status for r in qf_res] == [r.status for r in q_res], f"{folder}: the encodings disagree"
        print(f"  {folder:<28} {qf_solve / q_solve:5.2f}  {qf_wall / q_wall:5.2f}  "
              f"{sum(r.quantified for r in qf_res)} of {len(qf_res)} (quantified: "
              f"{sum(r.quantified for r in q_res)})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
