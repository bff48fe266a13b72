"""Z3's memory limit for one obligation, making a context while it is in force, and keeping the
memory one context frees for the next."""

from __future__ import annotations

import ctypes
import platform

import z3

MEMORY_REASONS = ("out of memory", "max. memory exceeded")


def out_of_memory(exc: z3.Z3Exception) -> bool:
    """Whether Z3 raised `exc` because it reached its memory limit (outside a check: taking
    assertions in, building terms), rather than for another error."""
    return any(reason in str(exc) for reason in MEMORY_REASONS)


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


# glibc's malloc parameters (malloc.h), and the values keep_freed_memory sets
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
_TUNING = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 128 << 20), (_M_TOP_PAD, 16 << 20), (_M_ARENA_MAX, 1))
_tuned = False


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory one Z3 context frees for the next; whether it is set
    (once per process; False where the C library is not glibc, which is left as it is).

    An obligation makes several contexts (prover/solve.py: a check in a context of its own),
    each of which allocates blocks of megabytes. By default glibc returns such a block to the
    system when it is freed (munmap, or trimming the top of the heap) and maps it again, zeroed,
    for the next context: on the ARINC 653 model (bench/arinc653) that was 2 s of system time in
    the 14 s of `prove -j1`. Here blocks up to 32 MiB (glibc's largest threshold on 64 bits)
    come from the heap, and up to 128 MiB free at its top is kept. Every thread allocates from
    that one heap (one arena): the solving thread (driver._in_thread) had an arena of its own,
    whose heaps of at most 64 MiB glibc maps and shrinks apart from the main heap, and these
    settings do not keep; a context touches about 18 MiB as it is made. With one arena the
    ARINC 653 model's page faults fell from 63K to 27K, the time spent making its 469 contexts
    from 1.04 s to 0.76 s, and `prove` took 0.96 of the wall time (farm-bench, 5 pairs,
    2026-12-03). Memory that is in use is counted as before: Z3's own limit (limit_memory)
    does not see the allocator."""
    global _tuned
    if _tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _tuned = all([mallopt(param, value) == 1 for param, value in _TUNING])
    return _tuned
