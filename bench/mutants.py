"""The mutant campaign (not part of the suite's time budget): every leaky variant of the shipped
systems (tests/mutants/) at both sizes, in both encodings, with none left out.

    python bench/mutants.py [-j N]      (default N = 2)

It runs tests/test_mutants.py with MICROVERIFY_CAMPAIGN=1. The suite runs the same tests but
for most hardware-size runs: in the default encoding none of the mutants in its CAMPAIGN_ONLY
(each runs to the whole rlimit and ends UNKNOWN, never PROVED: 20 to 50 s apiece) and of the
others every other one by name (QF_AT_HARDWARE_SAMPLE), in the quantified encoding every third
(QUANTIFIED_AT_HARDWARE_SAMPLE); the campaign runs them all. Run it after a change to the encoding, the solver's checks or a shipped
system. It prints pytest's summary and the wall time, and exits with pytest's status (0 when
every mutant is rejected as its header says).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description="Every leaky variant of the shipped systems (tests/mutants/) "
                                     "at both sizes, in both encodings: tests/test_mutants.py with MICROVERIFY_CAMPAIGN=1.")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="pytest-xdist workers (default 2)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(args.jobs),
                          "-rs", "tests/test_mutants.py"], cwd=ROOT, env={**os.environ, "MICROVERIFY_CAMPAIGN": "1"})
    print(f"mutant campaign: {time.perf_counter() - start:.0f} s wall at -n {args.jobs}, pytest exit {run.returncode}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
