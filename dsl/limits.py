"""The documented limits on input (docs/language.md, "Limits"), in one place.

Every limit is checked where the input is read, so that what is beyond it gets a located
diagnostic instead of a crash, a hang or unbounded memory further down:

- a source file is a regular file of at most MAX_FILE_BYTES bytes (`io`);
- expressions, types and `if` statements nest at most MAX_DEPTH levels (`too-deep`), checked
  on the parse tree, without recursion, before any recursive pass. A chain of one associative
  operator (`a && b && c ...`) is rebalanced first, so it may be as long as wanted;
- a type is made of at most MAX_TYPE_LEAVES scalars, aliases expanded (`bad-type`);
- a bit-vector is 1..MAX_BV_WIDTH bits wide, wherever a width is written (`bv[N]`, `zext`,
  `sext`: `bad-type`), and an integer literal is at most MAX_BV_WIDTH bits (`literal-range`);
- an expression with its defs and constants expanded (dsl/inline.py) has at most
  MAX_EXPANDED_NODES nodes (`too-large`) and nests at most MAX_DEPTH levels (`too-deep`),
  and the expressions of a file that expand something have at most MAX_EXPANDED_NODES in all:
  a def that uses its parameter twice, called on itself a few times, or a constant defined
  as the sum of the one before with itself, doubles at each step, and every pass after the
  checker walks each use of it whole;
- the work of comparing unknown names with declared ones for `did you mean` notes is at most
  MAX_SUGGESTION_WORK per file: past that, an unknown name gets no note.

With these, the recursive passes (checking, lowering, the solver's term walks) stay well within
RECURSION_LIMIT, which the entry points raise Python's default (1000) to.
"""

from __future__ import annotations

import ctypes
import sys

MAX_DEPTH = 200
MAX_BV_WIDTH = 4096
MAX_FILE_BYTES = 4 * 1024 * 1024  # 150 times the largest shipped model
MAX_EXPANDED_NODES = 200_000  # 60 times what a shipped file's expansions come to (3,235, walk.mv)
MAX_TYPE_LEAVES = 65_536  # scalars in one type, aliases expanded (a state field, a parameter)
# The work of comparing unknown names with declared ones for `did you mean` notes, per check
# of a file, counted as the product of the two names' lengths: a comparison of two short names
# costs tens of microseconds, and more as they grow, so a file with many unknown names among
# many declared ones took hours (20,000 enum members and 300 misspelt uses: 3.6 min). About
# 100,000 comparisons of 8-character names, a few seconds; past it, no more notes.
MAX_SUGGESTION_WORK = 6_400_000
# Python frames: a nesting level costs a handful of frames in the checker and the lowering,
# and a deep but flat formula (a long chain of writes to one map) one per term level in the
# solver's term walks. 10,000 frames fit the usual 8 MiB main-thread stack.
RECURSION_LIMIT = 10_000


def ensure_recursion_limit() -> None:
    """Raise the interpreter's recursion limit to RECURSION_LIMIT (never lower it)."""
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


def too_deep(exc: BaseException) -> bool:
    """Whether `exc` is Python's recursion limit reached: a RecursionError, or the one ctypes
    reports in its own type when the limit is reached while it converts the arguments of a
    call (as in a walk of Z3's terms through its C API)."""
    return isinstance(exc, RecursionError) or \
        isinstance(exc, ctypes.ArgumentError) and "RecursionError" in str(exc)
