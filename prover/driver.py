"""Prove loaded modules: the loop shared by the CLI, the tests and the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from microverify.dsl import ir
from microverify.prover.obligations import Obligation, generate
from microverify.prover.solve import Options, Result, solve


def obligations(modules: Iterable[ir.Module]) -> list[tuple[ir.Module, Obligation]]:
    """Every obligation once, though a file imported by several others is in each of them."""
    seen: set[object] = set()
    out = []
    for m in modules:
        context = (m.principals, m.flows, m.oracles)
        for ob in generate(m):
            key = (ob, context)
            if key not in seen:
                seen.add(key)
                out.append((m, ob))
    return out


def prove_modules(modules: Iterable[ir.Module], options: Options,
                  on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    results = []
    for module, ob in obligations(modules):
        r = solve(module, ob, options)
        on_result(r)
        results.append(r)
    return results
