"""Prove loaded modules: the loop shared by the CLI, the tests and the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from microverify.dsl import ir
from microverify.prover.obligations import Obligation, generate
from microverify.prover.solve import Options, Result, solve


def obligations(modules: Iterable[ir.Module]) -> list[tuple[ir.Module, Obligation]]:
    return [(m, ob) for m in modules for ob in generate(m)]


def prove_modules(modules: Iterable[ir.Module], options: Options,
                  on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    results = []
    for module, ob in obligations(modules):
        r = solve(module, ob, options)
        on_result(r)
        results.append(r)
    return results
