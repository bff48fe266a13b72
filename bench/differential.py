"""The differential soundness campaign (issue 13): generated models proved in both encodings,
every printed theorem checked exhaustively with the reference interpreter.

    .venv/bin/python bench/differential.py --seed 1 --models 2000 [--first 0] [--jobs 2] [--calibrate]

Model i of seed N is `tests/modelgen.random_model(f"{N}:{i}")`, so a run is reproducible and
a model can be regenerated alone. Ends with one summary line; exits 1 if a theorem is refuted
or the encodings disagree (PROVED against FAILED or VACUOUS on one obligation), printing each
offending model; 2 on bad usage. `--calibrate` also runs the exhaustive check on the models
`prove` does not prove, and counts how many of them it refutes: evidence that the check can
fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from exhaustive import CHECKED, Bounds, differential  # noqa: E402
from microverify.dsl.diagnostics import DiagnosticError  # noqa: E402
from modelgen import random_model  # noqa: E402


@dataclass(frozen=True)
class Row:
    index: int
    stack: bool
    category: str  # checked | unchecked | not-proved | unknown | invalid
    refuted: bool  # a printed theorem is refuted
    disagreements: int
    calibrated: bool  # --calibrate, not proved, and the check refutes the layer anyway
    report: str  # the offending model, when refuted or disagreeing
    prove_seconds: float
    check_seconds: float


def run_one(seed: int, index: int, bounds: Bounds, calibrate: bool) -> Row:
    text = random_model(f"{seed}:{index}")
    try:
        verdict = differential(text, bounds, check_all=calibrate)
    except DiagnosticError as exc:  # a generator defect: reported, never skipped
        return Row(index, "refines" in text, "invalid", False, 0, False,
                   f"the generated text does not load: {exc}\n{text}", 0.0, 0.0)
    printed = {x for layers in verdict.theorems.values() for x in layers}
    refuted = [o for o in verdict.refuted if o.layer in printed]
    offending = bool(refuted) or bool(verdict.disagreements)
    category = verdict.category if printed or verdict.unknown else "not-proved"
    if category == "checked" and not any(o.status in CHECKED for o in verdict.outcomes if o.layer in printed):
        category = "unchecked"  # every printed theorem too large, or with no initial state
    return Row(index, "refines" in text, category, bool(refuted), len(verdict.disagreements),
               calibrate and not printed and bool(verdict.refuted), verdict.report() if offending else "",
               verdict.prove_seconds, verdict.check_seconds)


def _run_star(job: tuple[int, int, Bounds, bool]) -> Row:
    return run_one(*job)


def rows(seed: int, first: int, models: int, jobs: int, bounds: Bounds, calibrate: bool) -> Iterator[Row]:
    work = [(seed, i, bounds, calibrate) for i in range(first, first + models)]
    if jobs <= 1:
        yield from map(_run_star, work)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_run_star, work, chunksize=1)


def summary(done: list[Row], seed: int, seconds: float) -> str:
    c = Counter(r.category for r in done)
    extra = f", {c['unchecked']} unchecked (too large, or no initial state)" if c["unchecked"] else ""
    extra += f", {c['invalid']} INVALID (the generator wrote a text that does not load)" if c["invalid"] else ""
    return (f"differential: {len(done)} models ({c['checked']} proved theorems checked, {c['not-proved']} not "
            f"proved, {c['unknown']} unknown{extra}), {sum(r.refuted for r in done)} refuted, "
            f"{sum(r.disagreements > 0 for r in done)} disagreements, seed {seed}, {seconds:.0f} s")


def details(done: list[Row], calibrate: bool) -> list[str]:
    out = []
    for kind, stack in (("single layers", False), ("stacks", True)):
        mine = [r for r in done if r.stack == stack]
        c = Counter(r.category for r in mine)
        out.append(f"  {kind}: {len(mine)} ({c['checked']} checked, {c['not-proved']} not proved, "
                   f"{c['unknown']} unknown, {c['unchecked']} unchecked)")
    out.append(f"  time: prove {sum(r.prove_seconds for r in done):.0f} s, "
               f"check {sum(r.check_seconds for r in done):.0f} s")
    if calibrate:
        not_proved = [r for r in done if r.category == "not-proved"]
        out.append(f"  calibration: the exhaustive check refutes {sum(r.calibrated for r in not_proved)} of "
                   f"{len(not_proved)} models prove does not prove")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--first", type=int, default=0, help="the index of the first model (to resume a campaign)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--depth", type=int, default=Bounds.depth, help="operations per run")
    parser.add_argument("--max-states", type=int, default=Bounds.max_states)
    parser.add_argument("--calibrate", action="store_true", help="also check the layers prove does not prove")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per model")
    args = parser.parse_args(argv)
    if args.models < 1 or args.jobs < 1 or args.depth < 0 or args.first < 0:
        parser.error("--models and --jobs must be positive, --depth and --first not negative")
    bounds = Bounds(max_states=args.max_states, depth=args.depth)
    started = time.perf_counter()
    done: list[Row] = []
    for row in rows(args.seed, args.first, args.models, args.jobs, bounds, args.calibrate):
        done.append(row)
        if args.verbose:
            print(f"{args.seed}:{row.index} {'stack' if row.stack else 'layer'} {row.category}"
                  f"{' REFUTED' if row.refuted else ''}{' DISAGREE' if row.disagreements else ''}", flush=True)
        if row.report:
            print(f"---- model {args.seed}:{row.index}\n{row.report}", flush=True)
    print("\n".join(details(done, args.calibrate)))
    print(summary(done, args.seed, time.perf_counter() - started))
    return 1 if any(r.refuted or r.disagreements or r.category == "invalid" for r in done) else 0


if __name__ == "__main__":
    sys.exit(main())
