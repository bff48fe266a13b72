"""Obligations as standalone SMT-LIB2 scripts, re-checkable by any SMT-LIB solver.

The script asserts the hypotheses and the goal (negated for a validity obligation), so for a
validity obligation `unsat` means PROVED, and for a non-vacuity (`VAC`) obligation `sat` does.
Terms are simplified first, which beta-reduces the reads of abstraction functions (lambdas).
SMT-LIB 2.6 has no lambda: a lambda left (in the quantified encoding) is replaced by an array
constant defined by a universal hypothesis, as in pass 0 of prover/qf.py. Quantifier-free
obligations are declared QF_AUFBV, those that keep quantifiers AUFBV.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import z3

from microverify.files import write_atomically
from microverify.prover.formula import Formula
from microverify.prover.qf import binders, define_lambdas
from microverify.prover.obligations import KIND_NAMES, Obligation


def terms(formula: Formula, hypotheses_only: bool = False) -> list[z3.BoolRef]:
    out = [z3.simplify(h.term) for h in formula.hypotheses]
    if not hypotheses_only:
        out.append(z3.simplify(formula.asserted_goal()))
    replaced, definitions = define_lambdas(out)  # type: ignore[arg-type]
    return definitions + replaced


def logic(assertions: list[z3.BoolRef]) -> str:
    found = binders(assertions)
    if "lambda" in found:  # one under a quantifier, with free variables: not SMT-LIB 2.6
        return "ALL"
    return "AUFBV" if "quantifier" in found else "QF_AUFBV"


def script(ob: Obligation, formula: Formula, hypotheses_only: bool = False) -> str:
    assertions = terms(formula, hypotheses_only)
    solver = z3.Solver(ctx=formula.ctx)
    solver.add(assertions)
    body = solver.to_smt2()
    body = body.replace("; benchmark generated from python API\n", "")
    body = re.sub(r"\(set-info :status \w+\)\n", "", body)
    if hypotheses_only:
        expect = "sat (the hypotheses are satisfiable: not VACUOUS)"
    elif formula.mode == "sat":
        expect = "sat means PROVED (a witness exists), unsat means VACUOUS"
    else:
        expect = "unsat means PROVED; sat means FAILED"
    header = (f"; microverify obligation {ob.id}: {ob.kind.value} ({KIND_NAMES[ob.kind]})\n"
              f"; declared at {ob.span}\n; expected: {expect}\n")
    return header + f"(set-logic {logic(assertions)})\n" + body


def file_name(ob: Obligation) -> str:
    """`<file's stem>-<8 hex digits>__<id>.smt2`: the digits (of the file's path and the id) tell
    apart x/a.mv from y/a.mv, and ids that read alike once made safe for a file name."""
    tag = hashlib.sha256(f"{ob.file}\0{ob.id}".encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(ob.file).stem}-{tag}__{ob.id}")
    return f"{stem}.smt2"


def dump(ob: Obligation, formula: Formula, directory: Path) -> Path:
    """Write the obligation's script into `directory`, whole or not at all: it is written to a
    file of its own there and renamed into place. With several jobs the main process may solve
    (and dump) an obligation a worker holds, then kill that worker, which was perhaps writing
    the same script: written in place, the script could be left empty (seen in review)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(ob)
    write_atomically(path, script(ob, formula))
    return path
