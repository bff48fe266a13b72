"""Re-checking an obligation with a second solver (DESIGN §6).

The obligation's SMT-LIB script (prover/export.py) is parsed by pysmt and solved by the named
solver when it is quantifier-free (QF_AUFBV). pysmt has no logic for quantified arrays and
bit-vectors, so a script that keeps quantifiers is given to cvc5 through its own SMT-LIB parser
instead (still a second, independent solver and parser). The answers must agree with Z3's: the
hypotheses satisfiable, and the main query unsat for a PROVED validity obligation (sat for a
PROVED `VAC`, sat for a FAILED one). Anything else — a different answer, an unknown, a script
the second solver cannot take, no answer within the time limit — is reported and makes `prove`
exit 1.

The second solver runs in a process of its own (`_Child`), one script at a time. cvc5 keeps
Python's global interpreter lock while it solves and does not always stop at its own time
limit: run in this process, one check of `prove --cross-check cvc5 proofs` ran for more than 25
minutes, and neither Ctrl-C nor SIGTERM could stop it (the main thread never got to run). A
script without an answer within twice the time limit and 5 seconds more is not answered: the
child ends itself then (SIGALRM, whose default action needs no Python code to run, so it also
ends when its parent is gone), and the parent kills it if it has not.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cross_check runs inside prover/solve.py, which imports them; the CLI only
    # needs SOLVERS and `available`, even in a run the cache answers in full
    from microverify.prover.formula import Formula
    from microverify.prover.obligations import Obligation

SOLVERS = ("cvc5",)
RECHECKED = ("PROVED", "FAILED", "VACUOUS")  # the verdicts a second solver can re-check (by value)


def _options(solver_name: str, seconds: float) -> dict[str, str]:
    """Options set on top of pysmt's defaults.

    pysmt turns on cvc5's ITE simplification ("ite-simp", "simp-ite-compress"), and with it
    cvc5 1.4 answers sat on some unsat QF_AUFBV scripts (KCoreMachine/INV/host_access in
    proofs/sekvm; cvc5 without them agrees with Z3): a preprocessing heuristic, switched off.
    cvc5's own decision heuristic ("internal") decides the SeKVM obligations in a second where
    the default (justification) runs out of time."""
    assert solver_name == "cvc5", solver_name
    return {"ite-simp": "false", "simp-ite-compress": "false", "decision": "internal",
            "tlimit-per": str(_milliseconds(seconds))}


class _Child:
    """A process that runs functions of this module for this one, one call at a time, until
    this process ends (it then reads the end of its pipe and exits). Started on first use, and
    again after it was killed."""

    def __init__(self) -> None:
        self.process: BaseProcess | None = None
        self.connection: Connection | None = None
        self.lock = threading.Lock()  # one call at a time (the language server solves in threads)

    def call(self, function: Callable[..., Any], args: tuple[object, ...], seconds: float) -> Any:
        """function(*args) in the child; its exception again here (as RuntimeError when it
        cannot be sent); TimeoutError when it has not answered within `seconds` (the child then
        ends itself, or is killed 2 seconds later)."""
        with self.lock:
            if self.process is None or not self.process.is_alive() or self.connection is None:
                self._start()
            assert self.connection is not None and self.process is not None
            self.connection.send((function, args, seconds))
            answer = None
            if self.connection.poll(seconds + 2):  # waits without the interpreter lock
                try:
                    answer = self.connection.recv()
                except (EOFError, OSError):  # it ended itself (SIGALRM)
                    pass
            if answer is None:
                self.process.kill()
                self.process.join()
                code, self.process, self.connection = self.process.exitcode, None, None
                if code not in (-signal.SIGALRM, -signal.SIGKILL):
                    raise RuntimeError(f"the second solver's process ended (exit code {code})")
                raise TimeoutError(f"no answer within {seconds:g} s")
        ok, value = answer
        if not ok:
            raise value if isinstance(value, Exception) else RuntimeError(value)
        return value

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        here, there = context.Pipe()
        self.process = context.Process(target=_serve, args=(there, os.getpid()), name="microverify-cross-check",
                                       daemon=True)
        self.process.start()
        there.close()
        self.connection = here


def _serve(connection: Connection, parent: int) -> None:
    """The child's loop: call what it is sent, send back what came of it; a call that takes
    longer than it may ends the process (SIGALRM at its default action). It ends with its
    parent: that may be `prove`'s solving process (prover/process.py), which is killed, so
    multiprocessing's exit handler does not stop this one."""
    from microverify.prover.parent import exit_with_parent

    exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops it
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    # whatever mask it started with (one child of a run was seen with SIGINT and SIGTERM
    # blocked, as the solving threads have them, prover/driver.py): the parent's exit stops it
    # with SIGTERM
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    while True:
        try:
            function, args, seconds = connection.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        signal.alarm(math.ceil(seconds))
        try:
            connection.send((True, function(*args)))
        except Exception as exc:  # noqa: BLE001 - handed to the parent
            try:
                connection.send((False, exc))
            except OSError:  # the parent is gone
                return
            except Exception:  # noqa: BLE001 - an exception that cannot be pickled
                connection.send((False, f"{type(exc).__name__}: {exc}"))
        finally:
            signal.alarm(0)


_CHILD = _Child()


def _own_child() -> None:
    """In a forked process (a worker, prover/process.py), a _Child of its own: the one inherited
    is this process's, whose process it cannot test or use ("can only test a child process":
    every cross-check of a worker forked after its parent had cross-checked failed so)."""
    global _CHILD
    _CHILD = _Child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_own_child)


def _sat(text: str, solver_name: str, seconds: float) -> bool | None:
    """Whether the script is satisfiable, by the second solver in its process (`_Child`)."""
    answer = _CHILD.call(_sat_here, (text, solver_name, seconds), 2 * seconds + 5)
    assert answer is None or isinstance(answer, bool)
    return answer


def _sat_here(text: str, solver_name: str, seconds: float) -> bool | None:
    logic_name = text.split("(set-logic ", 1)[1].split(")", 1)[0]
    if logic_name != "QF_AUFBV":
        return _sat_native(text, seconds)
    from pysmt.environment import reset_env
    from pysmt.logics import get_logic_by_name
    from pysmt.shortcuts import Solver
    from pysmt.smtlib.parser import SmtLibParser

    env = reset_env()  # scripts are independent: their fresh names (e.g. lambda!1) may clash
    parsed = SmtLibParser(environment=env).get_script(io.StringIO(text))
    formula = parsed.get_last_formula()
    with Solver(name=solver_name, logic=get_logic_by_name(logic_name),
                solver_options=_options(solver_name, seconds)) as s:
        return s.is_sat(formula)


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _sat_native(text: str, seconds: float) -> bool | None:
    """cvc5's own SMT-LIB parser, for scripts with quantifiers (model-based instantiation)."""
    import cvc5

    solver = cvc5.Solver()
    solver.setOption("produce-models", "false")
    solver.setOption("mbqi", "true")
    solver.setOption("tlimit-per", str(_milliseconds(seconds)))
    symbols = cvc5.SymbolManager(solver.getTermManager())
    parser = cvc5.InputParser(solver, symbols)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text.replace("(check-sat)", ""), "obligation")
    while not (command := parser.nextCommand()).isNull():
        command.invoke(solver, symbols)
    answer = solver.checkSat()
    if answer.isUnknown():
        raise RuntimeError(f"cvc5 answered unknown ({answer.getUnknownExplanation()})")
    return bool(answer.isSat())


def available(solver_name: str) -> str | None:
    """None if the solver can be used, else why not."""
    try:
        from pysmt.shortcuts import get_env
    except ImportError:
        return "pysmt is not installed"
    if solver_name not in get_env().factory.all_solvers():
        return (f"{solver_name} is not available to pysmt; install it with "
                f"`pip install 'microverify[{solver_name}]'`")
    return None


def cross_check(ob: Obligation, formula: Formula, status: str, solver_name: str, seconds: float) -> str:
    """'' when the second solver agrees with `status`, else what went wrong."""
    from microverify.prover.export import script  # see the imports above

    if status not in RECHECKED:
        return ""
    try:
        hyps_sat = _sat(script(ob, formula, hypotheses_only=True), solver_name, seconds)
        main_sat = _sat(script(ob, formula), solver_name, seconds) if hyps_sat else None
    except Exception as exc:  # noqa: BLE001 - the second solver or pysmt refused the script
        return f"{solver_name} could not check it: {type(exc).__name__}: {exc}".splitlines()[0]
    if status == "VACUOUS":
        agrees = hyps_sat is False or (formula.mode == "sat" and main_sat is False)
    elif not hyps_sat:
        agrees = False
    elif formula.mode == "sat":
        agrees = main_sat is (status == "PROVED")
    else:
        agrees = main_sat is (status == "FAILED")
    if agrees:
        return ""
    answers = f"hypotheses {'sat' if hyps_sat else 'unsat'}" + (
        "" if main_sat is None else f", query {'sat' if main_sat else 'unsat'}")
    return f"{solver_name} disagrees with Z3 ({status}): {answers}"
