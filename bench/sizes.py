"""Hardware sizes against the small configuration (not a test): for each shipped system that
states a second configuration (a comment line `//   NAME[, FILE ...]: -D ...`, read by
tests/conftest.configuration), `prove --no-cache` on the files it covers, at both sizes, one
after the other in one run, as a user runs it.

    python bench/sizes.py [-j N] [SYSTEM ...]      (default: every such system, N = 2)

It prints each run's verdict line and wall time, and the ratio hardware / small. Absolute
seconds are for reference only (these machines are shared and noisy): compare the ratio.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import configuration  # noqa: E402


def run(files: list[str], defines: tuple[str, ...], jobs: int) -> tuple[float, str]:
    args = [a for d in defines for a in ("-D", d)]
    start = time.perf_counter()
    prove = shutil.which("prove", path=str(Path(sys.executable).parent)) or "prove"  # the venv's console script
    done = subprocess.run([prove, "--no-cache", "-q", f"-j{jobs}", *args, *files],
                          capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if re.match(r"\d+ of \d+ obligations", line)]
    return took, (lines[-1] if lines else f"exit {done.returncode}: {done.stderr.strip()[-200:]}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("systems", nargs="*")
    args = parser.parse_args(argv)
    systems = args.systems or sorted(p.name for p in (ROOT / "proofs").iterdir() if configuration(p.name))
    for system in systems:
        config = configuration(system)
        if config is None:
            print(f"{system}: states no second configuration")
            continue
        files = [str(ROOT / "proofs" / system / f) for f in config.files] or [str(ROOT / "proofs" / system)]
        shipped = run(files, (), args.jobs)
        other = run(files, config.defines, args.jobs)
        small, hardware = (shipped, other) if config.name == "hardware" else (other, shipped)
        shown = ", ".join(Path(f).name for f in files)
        print(f"{system} ({shown}), -j{args.jobs}, --no-cache")
        print(f"  small     {small[0]:7.1f} s  {small[1]}")
        print(f"  hardware  {hardware[0]:7.1f} s  {hardware[1]}")
        print(f"  hardware / small: {hardware[0] / small[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
