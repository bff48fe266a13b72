"""Obligations as standalone SMT-LIB2 scripts, re-checkable by any SMT-LIB solver.

The script asserts the hypotheses and the goal (negated for a validity obligation), so for a
validity obligation `unsat` means PROVED, and for a non-vacuity (`VAC`) obligation `sat` does.
Terms are simplified first, which beta-reduces the reads of abstraction functions (lambdas).
SMT-LIB 2.6 has no lambda: a lambda left (in the quantified encoding) is replaced by an array
constant defined by a universal hypothesis, as in pass 0 of prover/qf.py. Quantifier-free
obligations are declared QF_AUFBV, those that keep quantifiers AUFBV. What Z3 prints is made
standard SMT-LIB (`standard`): the simplifier turns division and remainder into operators of
its own, and writes `bvxor` with more than two arguments.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import z3

from microverify.files import write_atomically
from microverify.prover.formula import Formula
from microverify.prover.parent import run_tag
from microverify.prover.qf import binders, define_lambdas
from microverify.prover.obligations import KIND_NAMES, Obligation


def terms(formula: Formula, hypotheses_only: bool = False) -> list[z3.BoolRef]:
    out = [z3.simplify(h.term) for h in formula.hypotheses]
    if not hypotheses_only:  # separate questions: each over constants of its own (Formula.alone)
        out.append(z3.simplify(formula.alone() if formula.separate_goals else formula.asserted_goal()))
    replaced, definitions = define_lambdas(out)  # type: ignore[arg-type]
    return definitions + replaced


# Z3's simplifier writes `bvudiv` as `bvudiv_i`, ...: the same function when division by zero
# has its SMT-LIB meaning, which the simplifier's `hi_div0` (on by default) gives it, but a name
# no other parser (Z3's own included) reads.
_INTERNAL = {"bvudiv_i": "bvudiv", "bvurem_i": "bvurem", "bvsdiv_i": "bvsdiv", "bvsrem_i": "bvsrem",
             "bvsmod_i": "bvsmod"}
_BINDERS = frozenset({"forall", "exists", "lambda"})
_TOKENS = re.compile(r'\|[^|]*\||"(?:[^"]|"")*"|;[^\n]*|[()]|[^\s()|";]+|\s+')


@dataclass
class _List:
    head: str | None = None
    seen: int = 0  # elements so far, the head included
    variables: bool = False  # inside the sorted variables of a quantifier: names, not operators
    xor_head: int = -1  # where a `bvxor`'s head was written, to write its fold there


def standard(text: str, check_hypotheses: bool = False) -> str:
    """Z3's SMT-LIB output made standard: each of its internal division and remainder
    operators named as SMT-LIB names it (as an operator only: a variable or constant of that
    name, declared or bound, keeps it), and a `bvxor` of more than two arguments folded to the
    left, `(bvxor (bvxor a b) c)` (SMT-LIB's QF_BV lets it take more, but not every parser:
    pysmt does not). `check_hypotheses`: a `(check-sat)` before the last assertion (the goal)."""
    out: list[str] = []
    stack: list[_List] = []
    last_assert = goal = -1
    for token in _TOKENS.findall(text):
        if token == "(":
            parent = stack[-1] if stack else None
            if parent is None:
                last_assert = len(out)  # where a top-level command starts, if it is an assert
            variables = parent is not None and (parent.variables or (parent.head in _BINDERS and parent.seen == 1))
            _element(parent, out)
            stack.append(_List(variables=variables))
            out.append(token)
        elif token == ")":
            closed = stack.pop()
            if closed.xor_head >= 0 and closed.seen > 3:  # bvxor with seen - 1 arguments
                out[closed.xor_head] = "bvxor (" * (closed.seen - 3) + "bvxor"
            out.append(token)
        elif token[0].isspace() or token[0] == ";":
            out.append(token)
        else:
            top = stack[-1] if stack else None
            if top is not None and top.seen == 0 and not top.variables:
                top.head = token
                if len(stack) == 1 and token == "assert":
                    goal = last_assert
                token = _INTERNAL.get(token, token)
                if token == "bvxor":
                    top.xor_head = len(out)
            _element(top, out)
            out.append(token)
    if check_hypotheses:
        assert goal >= 0, "no assertion to check the hypotheses before"
        out.insert(goal, "(check-sat)\n")
    return "".join(out)


def _element(parent: _List | None, out: list[str]) -> None:
    """An element of `parent` begins: from a `bvxor`'s third argument on, the fold closes the
    application of the arguments before it."""
    if parent is None:
        return
    if parent.xor_head >= 0 and parent.seen >= 3:
        out.insert(len(out) - 1 if out[-1].isspace() else len(out), ")")
    parent.seen += 1


def logic(assertions: list[z3.BoolRef]) -> str:
    found = binders(assertions)
    if "lambda" in found:  # one under a quantifier, with free variables: not SMT-LIB 2.6
        return "ALL"
    return "AUFBV" if "quantifier" in found else "QF_AUFBV"


def script(ob: Obligation, formula: Formula, hypotheses_only: bool = False) -> str:
    assertions = terms(formula, hypotheses_only)
    solver = z3.Solver(ctx=formula.ctx)
    # Z3 leaves out a last assertion that is `true` (a goal the simplifier made `true`, whose
    # place the hypotheses check below must find): one more `true` is last instead
    solver.add(assertions + [z3.BoolVal(True, formula.ctx)])
    text = solver.to_smt2()
    printed = len(re.findall(r"^\(assert\b", text, re.MULTILINE))
    assert printed == len(assertions), f"{ob.id}: {printed} assertions written for {len(assertions)}"
    # a validity obligation with hypotheses checks them alone first: unsat, the goal's answer
    # would be unsat too, and the obligation is VACUOUS, not PROVED
    both = not hypotheses_only and formula.mode == "valid" and bool(formula.hypotheses)
    body = standard(text, check_hypotheses=both)
    body = body.replace("; benchmark generated from python API\n", "")
    body = re.sub(r"\(set-info :status \w+\)\n", "", body)
    if hypotheses_only:
        expect = "sat (the hypotheses are satisfiable: not VACUOUS)"
    elif formula.mode == "sat":
        expect = "sat means PROVED (a witness exists), unsat means VACUOUS"
    elif both:
        expect = ("the first (check-sat), of the hypotheses alone: sat (unsat means VACUOUS); "
                  "the second, with the negated goal: unsat means PROVED, sat means FAILED")
    else:
        expect = "unsat means PROVED; sat means FAILED"
    header = (f"; microverify obligation {ob.id}: {ob.kind.value} ({KIND_NAMES[ob.kind]})\n"
              f"; declared at {ob.span}\n; expected: {expect}\n")
    if formula.assumed and not hypotheses_only:  # on one line: a label's own line breaks become spaces
        left_out = "; ".join(" ".join(label.split()) for label in formula.assumed)
        header += ("; left out of the goal, since the operation leaves them as they were and a hypothesis "
                   f"states them (docs/theory.md §4): {left_out}\n")
    return header + f"(set-logic {logic(assertions)})\n" + body


def file_name(ob: Obligation) -> str:
    """`<file's stem>-<8 hex digits>__<id>.smt2`: the digits (of the file's path and the id) tell
    apart x/a.mv from y/a.mv, and ids that read alike once made safe for a file name."""
    tag = hashlib.sha256(f"{ob.file}\0{ob.id}".encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(ob.file).stem}-{tag}__{ob.id}")
    return f"{stem}.smt2"


def dump(ob: Obligation, formula: Formula, directory: Path) -> Path:
    """Write the obligation's script into `directory`, whole or not at all: it is written to a
    file of its own there, named by the run, and renamed into place. With several jobs the main
    process may solve (and dump) an obligation a worker holds, then kill that worker, which was
    perhaps writing the same script: written in place, the script could be left empty (seen in
    review); the file of its own is left then, and the run removes it as it ends (prover/cli.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(ob)
    write_atomically(path, script(ob, formula), tag=run_tag())
    return path
