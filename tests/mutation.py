"""Mutants as patches of the shipped proofs (tests/mutants/<system>/*.mutant).

A mutant file names its base file and the one thing it changes:

    // expect: KIND op            the obligation that must reject it (tests/test_mutants.py)
    // what the change breaks (any number of comment lines)
    base: top.mv                  a file of proofs/<system>/
    - a line of the base file, exactly as it is there
    + the line(s) that replace it
    @@                            between changes, if there are several

Each change replaces consecutive whole lines, the `-` lines, which must occur exactly once in
the base file, by the `+` lines (none: they are deleted; to insert, repeat a line as `-` and
`+` and add the new ones after it). A change that no longer applies, because the base file
was edited, is an error: a mutant cannot silently test an old model.

Run from the repository root, `python tests/mutation.py MUTANT DIR` writes the mutated copy of
the system to DIR and prints the command that proves it.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    path: Path
    expect: str                      # "KIND op"
    base: str                        # a file name in proofs/<system>/
    changes: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # (lines removed, lines added)

    @property
    def system(self) -> str:
        return self.path.parent.name


class MutantError(Exception):
    pass


def parse(path: Path) -> Mutant:
    expect = base = None
    changes: list[tuple[list[str], list[str]]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("// expect:") and expect is None:
            expect = line.removeprefix("// expect:").strip()
        elif line.startswith("//") and base is None:
            continue
        elif line.startswith("base:") and base is None:
            base = line.removeprefix("base:").strip()
        elif base is not None and line == "@@":
            changes.append(([], []))
        elif base is not None and line[:1] in "-+" and line[1:2] in ("", " "):
            if not changes or (line[0] == "-" and changes[-1][1]):
                changes.append(([], []))
            changes[-1][0 if line[0] == "-" else 1].append(line[2:])
        else:
            raise MutantError(f"{path}:{n}: not a mutant line (`// ...`, `base: FILE`, `- line`, `+ line` or `@@`)")
    if expect is None or base is None or not changes or not all(removed for removed, _ in changes):
        raise MutantError(f"{path}: a mutant has `// expect: KIND op`, `base: FILE` and changes that each remove a line")
    return Mutant(path, expect, base, tuple((tuple(r), tuple(a)) for r, a in changes))


def mutated(m: Mutant) -> str:
    """The base file with every change applied."""
    lines = (ROOT / "proofs" / m.system / m.base).read_text().splitlines()
    for removed, added in m.changes:
        at = [i for i in range(len(lines) - len(removed) + 1) if tuple(lines[i:i + len(removed)]) == removed]
        if len(at) != 1:
            where = "does not occur" if not at else f"occurs {len(at)} times"
            raise MutantError(f"{m.path}: the change's `-` lines {where} in proofs/{m.system}/{m.base}: "
                              f"{removed[0].strip()!r}")
        lines[at[0]:at[0] + len(removed)] = added
    return "\n".join(lines) + "\n"


def materialise(m: Mutant, folder: Path) -> Path:
    """proofs/<system>/ copied into folder/<system>/ with the base file mutated; its path."""
    target = folder / m.system
    shutil.copytree(ROOT / "proofs" / m.system, target, dirs_exist_ok=True)
    (target / m.base).write_text(mutated(m))
    return target / m.base


def changed_lines(m: Mutant) -> int:
    return sum(max(len(removed), len(added)) for removed, added in m.changes)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/mutation.py MUTANT DIR")
    path = materialise(parse(Path(sys.argv[1])), Path(sys.argv[2]))
    print(f"prove {path}")
