"""Z3's memory limit for one obligation, and making a context while it is in force."""

from __future__ import annotations

import z3

MEMORY_REASONS = ("out of memory", "max. memory exceeded")


def limit_memory(max_memory: int) -> None:
    """Let Z3 allocate at most `max_memory` MiB more than it holds now (0: no limit).

    Neither --rlimit nor --timeout stops some blow-ups (bit-blasting a 4096-bit division builds
    gigabytes before Z3 looks at either); Z3's global memory limit does: the check ends
    `unknown` ("out of memory"). The limit is Z3's count of what it allocated in this process,
    and that count keeps what a failed check held even after it is freed, so the limit is set
    afresh before every obligation, above the count. (A fixed limit would make every later
    context fail, and creating one then crashes Z3.)"""
    global _limit
    _limit = 0 if max_memory <= 0 else int(z3.Z3_get_estimated_alloc_size()) // (1024 * 1024) + max_memory
    z3.set_param("memory_max_size", _limit)


def lift_memory_limit() -> None:
    """No memory limit, until the next obligation sets one. Called as soon as Z3 reports that it
    ran out of memory, before anything of that obligation is freed: with the limit still
    exceeded, the allocation that freeing a context does would fail, and Z3 would abort."""
    global _limit
    _limit = 0
    z3.set_param("memory_max_size", 0)


_limit = 0  # the memory limit in force (MiB, Z3's count; 0: none)


def new_context() -> z3.Context:
    """A Z3 context, made with no memory limit in force (the limit is set again after): making
    one allocates, and when that fails Z3 hands back no context, which z3py then uses, a
    segmentation fault rather than an error (with `--max-memory` at 33 MiB or less it failed
    for the very first context of an obligation)."""
    z3.set_param("memory_max_size", 0)
    try:
        return z3.Context()
    finally:
        z3.set_param("memory_max_size", _limit)
