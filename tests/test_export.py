"""SMT-LIB export and the second-solver cross-check."""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import z3

from conftest import CASES, SECURE, prove_text
from microverify.dsl.loader import load_file
from microverify.prover import crosscheck
from microverify.prover.crosscheck import _sat, available, cross_check
from microverify.prover.driver import obligations
from microverify.prover.export import script, standard
from microverify.prover.solve import build

PROOFS = Path(__file__).resolve().parent.parent / "proofs"

pytest.importorskip("cvc5")


def formula_of(path: Path, obligation_id: str, encoding: str = "qf"):  # type: ignore[no-untyped-def]
    module = load_file(path, {})
    (ob,) = [ob for _, ob in obligations([module]) if ob.id == obligation_id]
    return ob, build(module, ob, z3.Context(), encoding)


def test_dump_smt_writes_one_standalone_script_per_obligation(tmp_path: Path) -> None:
    case = CASES / "kinds" / "oc_only.mv"
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "--dump-smt", str(tmp_path / "smt"),
                        str(case)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    files = sorted((tmp_path / "smt").glob("*.smt2"))
    assert len(files) == 13
    [script] = (tmp_path / "smt").glob("oc_only-*__L_OC_peek.smt2")
    text = script.read_text()
    assert text.startswith("; microverify obligation L/OC/peek: OC (output consistency)\n; declared at ")
    assert ("; expected: the first (check-sat), of the hypotheses alone: sat (unsat means VACUOUS); the second, "
            "with the negated goal: unsat means PROVED, sat means FAILED\n(set-logic QF_AUFBV)\n") in text
    assert text.count("\n(check-sat)\n") == 2
    # any SMT-LIB solver can take it: here pysmt parses it and cvc5 finds the leak (sat)
    from pysmt.shortcuts import Solver
    from pysmt.smtlib.parser import SmtLibParser
    formula = SmtLibParser().get_script(io.StringIO(text)).get_last_formula()
    with Solver(name="cvc5", logic="QF_AUFBV") as s:
        assert s.is_sat(formula)


def test_cross_check_agrees_on_proved_and_failed_and_catches_a_disagreement() -> None:
    assert available("cvc5") is None
    ob, f = formula_of(CASES / "kinds" / "oc_only.mv", "L/OC/peek")
    assert cross_check(ob, f, "FAILED", "cvc5", 30) == ""
    assert "cvc5 disagrees with Z3 (PROVED)" in cross_check(ob, f, "PROVED", "cvc5", 30)
    ob, f = formula_of(CASES / "kinds" / "oc_only.mv", "L/DC/peek")
    assert cross_check(ob, f, "PROVED", "cvc5", 30) == ""
    ob, f = formula_of(CASES / "kinds" / "vac_only.mv", "L/VAC/never")
    assert cross_check(ob, f, "VACUOUS", "cvc5", 30) == ""


def test_cross_check_from_the_command_line() -> None:
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "--cross-check", "cvc5",
                        str(CASES / "kinds" / "oc_only.mv")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1  # the OC leak
    assert "cross-check: cvc5 agrees on 13 of 13 obligations" in r.stderr


def test_cross_check_and_dump_do_not_depend_on_the_cache(tmp_path: Path) -> None:
    """The exact check first proves most of pages.mv with its quantifiers, which cvc5 does not
    decide (unknown, after minutes): cvc5 gets the quantifier-free form of each, and agrees on
    all of them, cold and from the cache alike. A result taken from the cache is solved again
    to be dumped, so the scripts are the same with and without it: the formulas the verdicts
    came from, with their quantifiers."""
    model = PROOFS / "tutorial" / "pages.mv"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "microverify", "-j1", "-q", "--cache-dir", str(tmp_path / "c"),
                               *args, str(model)], capture_output=True, text=True, timeout=600)

    for _ in range(2):  # cold, then every result in the cache
        r = run("--cross-check", "cvc5")
        assert r.returncode == 0 and "cross-check: cvc5 agrees on 84 of 84 obligations" in r.stderr, r.stderr
    warm = run("--dump-smt", str(tmp_path / "warm"))
    cold = subprocess.run([sys.executable, "-m", "microverify", "-j1", "-q", "--no-cache", "--dump-smt",
                           str(tmp_path / "cold"), str(model)], capture_output=True, text=True, timeout=600)
    assert warm.returncode == cold.returncode == 0
    scripts = {p.name: p.read_text() for p in (tmp_path / "cold").iterdir()}
    assert len(scripts) == 84 and scripts == {p.name: p.read_text() for p in (tmp_path / "warm").iterdir()}
    assert any("(forall" in text for text in scripts.values())


def test_a_lambda_left_in_the_quantified_encoding_is_exported_as_a_defined_constant() -> None:
    """The step writes the upper map, so the abstraction's lambda is stored to, not only read:
    Z3 keeps it; SMT-LIB 2.6 has no lambda, so the script defines a constant by a forall."""
    ob, f = formula_of(CASES / "stacks" / "machine.mv", "Machine/R-STEP/vm_write", "quantified")
    assert f.quantified
    text = script(ob, f)
    assert "(lambda" not in text and "(set-logic AUFBV)" in text and "(forall" in text
    s = z3.Solver()
    s.add(z3.parse_smt2_string(text))
    assert s.check() == z3.unsat  # PROVED, as with the lambda
    ob, f = formula_of(CASES / "stacks" / "machine.mv", "Machine/R-STEP/vm_write")  # qf: none left
    assert not f.quantified and "(set-logic QF_AUFBV)" in script(ob, f)


def test_cvc5_runs_without_the_ite_simplification_that_answers_sat_on_an_unsat_script() -> None:
    text = (Path(__file__).parent / "data" / "cvc5_ite_simp_wrong_sat.smt2").read_text()
    assert _sat(text, "cvc5", 60) is False
    from pysmt.environment import reset_env
    from pysmt.shortcuts import Solver
    from pysmt.smtlib.parser import SmtLibParser
    formula = SmtLibParser(environment=reset_env()).get_script(io.StringIO(text)).get_last_formula()
    with Solver(name="cvc5", logic="QF_AUFBV") as s:  # pysmt's defaults: the wrong answer
        assert s.is_sat(formula)


def test_a_script_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: with several jobs, a worker killed while it dumps a script the main
    process dumped too left it empty. A write cut off half-way (here: every file write stops
    after a few characters, and raises) leaves the script that was there whole, and no part."""
    from microverify.prover import export
    ob, f = formula_of(CASES / "kinds" / "oc_only.mv", "L/OC/peek")
    path = export.dump(ob, f, tmp_path)
    whole = path.read_text()
    assert whole.endswith("(check-sat)\n")
    real_open = io.open

    class Cut:
        """A file that takes a few characters, then stops, as a kill would stop it."""

        def __init__(self, handle: io.TextIOWrapper) -> None:
            self.handle = handle

        def __enter__(self) -> "Cut":
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, text: str) -> int:
            self.handle.write(text[:10])
            self.handle.flush()
            raise KeyboardInterrupt

    def cut_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, mode, *args, **kwargs)
        return Cut(handle) if "w" in mode else handle

    monkeypatch.setattr(io, "open", cut_open)
    with pytest.raises(KeyboardInterrupt):
        export.dump(ob, f, tmp_path)
    monkeypatch.undo()
    assert path.read_text() == whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _tag_in_a_spawned_worker(run: str, tags: "multiprocessing.Queue[str]") -> None:
    """The tag a spawned process made as it imported, then the one it has once set up for `run`."""
    from microverify.prover.parent import run_tag
    from microverify.prover.process import init_worker
    from microverify.prover.verdict import Options
    made = run_tag()
    init_worker([], Options(), None, os.getppid(), run)
    tags.put(made)
    tags.put(run_tag())


def test_a_spawned_worker_writes_as_the_run_it_solves_for() -> None:
    """A spawned process makes a tag of its own as it imports; init_worker gives it the run's, so
    that the run removes what it leaves (the spawned workers of a run with a progress bar, and
    the solving process made again after one was killed, are spawned)."""
    from microverify.prover.parent import run_tag
    context = multiprocessing.get_context("spawn")
    tags: multiprocessing.Queue[str] = context.Queue()
    worker = context.Process(target=_tag_in_a_spawned_worker, args=(run_tag(), tags))
    worker.start()
    try:
        made, used = tags.get(timeout=60), tags.get(timeout=60)
    finally:
        worker.join(10)
        worker.kill()
    assert re.fullmatch(r"[0-9a-f]{16}-", made) and made != run_tag()
    assert used == run_tag()


# `prove` with its solving process killed (SIGKILL) as it renames one script into place, after
# writing it to a file of its own: the obligation whose script ends with argv[1].
KILLED_AS_IT_DUMPS = """
import os, signal, sys
from microverify.prover import cli
main, target = os.getpid(), sys.argv.pop(1)
real = os.replace
def replace(src, dst, *args, **kwargs):
    if os.getpid() != main and str(dst).endswith(target):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
sys.argv = ["prove"] + sys.argv[1:]
cli.main()
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_process_killed_as_it_dumps_leaves_no_file_behind(tmp_path: Path, jobs: str) -> None:
    """Found in review (carried over since session 28): a process killed while it wrote a
    script (a worker, or the copy of its obligation this process solved, killed once the other
    answered; a solving process Z3 ended) left its file of its own in the --dump-smt folder.
    Such files are named by the run, and the run removes its own once its processes are gone;
    of other runs', only those older than an hour (writing a script takes seconds: the run was
    killed before it could remove them). Found in review: named by the run's process id, a run
    removed the file another was writing, in another container with the same process id, and
    that run crashed; the name is a random one now."""
    dumps = tmp_path / "smt"
    dumps.mkdir()
    another, stale = dumps / ".tmp-0123456789abcdef-abcdefgh.smt2", dumps / ".tmp-fedcba9876543210-abcdefgh.smt2"
    another.write_text("")
    stale.write_text("")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    done = subprocess.run([sys.executable, "-c", KILLED_AS_IT_DUMPS, "__L_OC_peek.smt2", "--no-cache", f"-j{jobs}",
                           "--dump-smt", str(dumps), str(CASES / "kinds" / "oc_only.mv")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    # at -j2 the worker killed may hold a second obligation, which ends UNKNOWN too
    assert re.search(r"^UNKNOWN  L/OC/peek .*\n .*: it was killed \(SIGKILL|^UNKNOWN  L/OC/peek .*\n .*handed to a worker "
                     r"process that ended abruptly", done.stdout, re.M), done.stdout
    proved = re.findall(r"^PROVED +(\S+)", done.stdout, re.M)
    written = sorted(p.name for p in dumps.iterdir())
    assert [name for name in written if not re.fullmatch(r"oc_only-[0-9a-f]{8}__L_\w+\.smt2", name)] == [another.name]
    assert len(proved) >= 11 and len(written) > len(proved), (written, proved)


def test_the_second_solver_runs_in_a_child_that_cannot_outlast_its_time_limit() -> None:
    """cvc5 holds the interpreter lock and may run past its own limit: it runs in a process of
    its own, reused from call to call, which answers, hands back the exception, or ends (by
    itself, SIGALRM, even when nobody waits for it any more) once its time is up."""
    child = crosscheck._Child()
    assert child.call(pow, (2, 10), 30) == 1024
    first = child.process
    with pytest.raises(ValueError):
        child.call(int, ("not a number",), 30)
    assert child.process is first and first is not None and first.is_alive()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        child.call(time.sleep, (60,), 1)
    assert time.monotonic() - start < 10 and child.process is None and not first.is_alive()
    assert child.call(pow, (3, 2), 30) == 9  # a new child
    with pytest.raises(RuntimeError, match=r"process ended \(exit code 3\)"):
        child.call(os._exit, (3,), 30)  # a child that dies is not waited for, and says so
    assert child.call(pow, (3, 2), 30) == 9
    assert child.process is not None and child.connection is not None
    child.connection.send((time.sleep, (60,), 1))  # and nobody waits for the answer
    child.process.join(10)
    assert child.process.exitcode == -signal.SIGALRM


def test_files_of_the_same_name_in_two_folders_get_scripts_of_their_own(tmp_path: Path) -> None:
    """x/m.mv and y/m.mv with the same layer write two scripts per obligation, not one over the
    other (their names differ in the digits after the stem)."""
    for folder, width in (("x", 8), ("y", 4)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.mv").write_text(SECURE.replace("bv[8]", f"bv[{width}]"))
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-q", "--dump-smt", str(tmp_path / "smt"),
                        str(tmp_path / "x" / "m.mv"), str(tmp_path / "y" / "m.mv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    scripts = list((tmp_path / "smt").glob("m-*__L_OC_write_*.smt2"))  # the id names the file
    assert len(scripts) == 2
    assert {"(_ BitVec 8)" in s.read_text() for s in scripts} == {True, False}


DIVIDES = """principal A
principal B
layer Div {
  state { x: bv[8]; y: bv[8]; z: bv[8] }
  observe A { x; y }
  observe B { z }
  op f(d: bv[8]) by A -> bv[8] { return (x / d) % (y + 1) + sdiv(x, d) + srem(y, d) + (x ^ y ^ d) }
}
"""


def run_script(text: str) -> str:
    """What Z3 answers to each command of a script, run in a context of its own."""
    ctx = z3.Context()  # kept alive while it runs
    return str(z3.Z3_eval_smtlib2_string(ctx.ref(), text))


def test_scripts_with_division_and_long_xors_are_standard_smtlib(tmp_path: Path) -> None:
    """Z3's simplifier turns `bvudiv` and its kin into `bvudiv_i` and so on, which no parser
    reads (Z3's own included), and writes `(bvxor a b c)`, which pysmt refuses: a secure model
    that divided failed `--cross-check cvc5` ("cvc5 could not check it: Unknown function
    'bvudiv_i'"), and its dumps could not be re-checked at all. Both encodings."""
    model = tmp_path / "div.mv"
    model.write_text(DIVIDES)
    for encoding in ("qf", "quantified"):
        dumps = tmp_path / encoding
        r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", "-q", "--encoding", encoding,
                            "--dump-smt", str(dumps), "--cross-check", "cvc5", str(model)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "cross-check: cvc5 agrees on 14 of 14 obligations" in r.stderr
        [oc] = dumps.glob("div-*__Div_OC_f.smt2")
        text = oc.read_text()
        assert "_i " not in text and "(bvudiv " in text and "(bvsdiv " in text and "(bvsrem " in text
        assert not re.search(r"\(bvxor [^()\s]+ [^()\s]+ [^()\s]+", text)
        for script_file in dumps.iterdir():  # Z3 runs each: the last answer is PROVED's
            answers = run_script(script_file.read_text()).split()
            satisfiable = "__Div_VAC" in script_file.name or "__Div_VIEW" in script_file.name  # `sat` obligations
            assert answers[-1] == ("sat" if satisfiable else "unsat"), (script_file.name, answers)


def test_standard_renames_operators_only_and_folds_xor_to_the_left() -> None:
    """A constant or a bound variable named like one of Z3's internal operators keeps its name."""
    assert standard("(assert (= (bvxor a b c d) (bvudiv_i x bvurem_i)))") == \
        "(assert (= (bvxor (bvxor (bvxor a b) c) d) (bvudiv x bvurem_i)))"
    assert standard("(forall ((bvsdiv_i (_ BitVec 8))) (= (bvsrem_i bvsdiv_i y) (bvxor a (bvxor b c e))))") == \
        "(forall ((bvsdiv_i (_ BitVec 8))) (= (bvsrem bvsdiv_i y) (bvxor a (bvxor (bvxor b c) e))))"
    assert standard("(declare-fun bvsmod_i () (_ BitVec 8))\n(assert (bvsmod_i |a (b| bvsmod_i))") == \
        "(declare-fun bvsmod_i () (_ BitVec 8))\n(assert (bvsmod |a (b| bvsmod_i))"


def test_a_vacuous_obligation_does_not_read_as_proved_from_its_script(tmp_path: Path) -> None:
    """The script of a validity obligation answered unsat both when it is PROVED and when its
    hypotheses are unsatisfiable (VACUOUS), and said `unsat means PROVED`: a re-check from the
    dumps accepted a vacuous obligation. The hypotheses are now checked first, in the same
    script, and the header says what each answer means."""
    model = tmp_path / "vac.mv"
    model.write_text("principal A\nlayer V {\n  state { x: bv[8] }\n  init { x == 1; x == 2 }\n"
                     "  invariant { x == 7 }\n  observe A { x }\n}\n")
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", "-q", "--dump-smt",
                        str(tmp_path / "smt"), str(model)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "VACUOUS  V/INIT" in r.stdout
    [init] = (tmp_path / "smt").glob("vac-*__V_INIT.smt2")
    text = init.read_text()
    assert "; expected: the first (check-sat), of the hypotheses alone: sat (unsat means VACUOUS); the second" in text
    assert run_script(text).split() == ["unsat", "unsat"]
    [vac] = (tmp_path / "smt").glob("vac-*__V_VAC.smt2")  # a `sat` obligation: one check
    assert vac.read_text().count("\n(check-sat)\n") == 1
    # Found in review: a goal the simplifier makes `true` is not written by Z3 when it is the
    # last assertion, and the hypotheses check went before the last hypothesis instead
    model.write_text("principal KServ\nlayer H {\n  state { x : bv[8] }\n  init { x == 1 }\n  invariant { x != 0 }\n"
                     "  observe KServ { x }\n  op panic() by KServ { x := 0  halt }\n}\n")
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", "-q", "--dump-smt",
                        str(tmp_path / "halt"), str(model)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "VACUOUS  H/INV/panic" in r.stdout
    for script_file in (tmp_path / "halt").iterdir():
        answers = run_script(script_file.read_text()).split()
        if "__H_INV_panic" in script_file.name or "__H_OC_panic" in script_file.name:
            assert answers == ["unsat", "unsat"], (script_file.name, answers)  # VACUOUS, as prove says


def test_the_cross_check_counts_only_the_verdicts_it_re_checked(tmp_path: Path) -> None:
    """UNKNOWN obligations have no verdict to re-check, and were counted as agreed: `cvc5
    agrees on 12 of 12 obligations` for a run with 10 unknown."""
    model = tmp_path / "div.mv"
    model.write_text(DIVIDES)
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", "-q", "--rlimit", "1",
                        "--cross-check", "cvc5", str(model)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("cross-check:")]
    proved = int(re.search(r"(\d+) of 14 obligations proved", r.stdout).group(1))  # type: ignore[union-attr]
    assert proved < 14 and line == (f"cross-check: cvc5 agrees on {proved} of {proved} obligations; {14 - proved} not re-checked "
                    "(UNKNOWN or ERROR: no verdict to re-check)")
    # the text report written with --output says it too (found in review: it said only the summary)
    report = tmp_path / "report.txt"
    r = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", "-q", "--rlimit", "1",
                        "--cross-check", "cvc5", "--output", str(report), str(model)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "cross-check: cvc5 agrees on" in report.read_text()


def test_a_disagreement_is_in_every_report_format() -> None:
    """The second solver's objection was printed on standard error only: the JSON, JUnit, SARIF
    and GitHub reports of a run that exits 1 for it were all green."""
    from microverify.prover import formats
    from microverify.prover.verdict import Options

    options = Options(cross_check="cvc5")
    results = prove_text(DIVIDES, Options())
    objection = "cvc5 disagrees with Z3 (PROVED): hypotheses sat, query sat"
    results[3] = dataclasses.replace(results[3], disagreement=objection)
    doc = json.loads(formats.to_json(results, [], options, 1))
    assert doc["summary"]["cross_check_failed"] == 1 and doc["options"]["cross_check"] == "cvc5"
    assert doc["obligations"][3]["cross_check"] == {"solver": "cvc5", "agrees": False, "objection": objection}
    assert doc["obligations"][0]["cross_check"] == {"solver": "cvc5", "agrees": True, "objection": ""}
    junit = ET.fromstring(formats.to_junit(results))
    [failure] = junit.iter("failure")
    assert failure.get("type") == "cross-check" and objection in (failure.get("message") or "")
    assert junit.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]
    sarif = json.loads(formats.to_sarif(results))["runs"][0]
    [result] = sarif["results"]
    assert result["ruleId"] == "cross-check" and objection in result["message"]["text"]
    assert "cross-check" in {rule["id"] for rule in sarif["tool"]["driver"]["rules"]}
    [annotation] = formats.to_github(results).splitlines()
    assert annotation.startswith("::error file=") and "title=cross-check%3A " in annotation and "disagrees" in annotation
