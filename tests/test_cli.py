"""The `prove` command's contract: exit statuses, diagnostics, summary, configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CASES, SECURE
from microverify.prover import cli



def prove(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microverify", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_all_proved_exits_0_with_summary(tmp_mv) -> None:
    r = prove(str(tmp_mv(SECURE)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "13 of 13 obligations proved"


def test_failed_obligation_exits_1_with_counterexample() -> None:
    r = prove(str(CASES / "kinds" / "wsc_only.mv"))
    assert r.returncode == 1
    out = r.stdout
    assert "FAILED   L/WSC/copy/KServ" in out
    assert "error: WSC (weak step consistency) fails for `copy`, observer KServ" in out
    assert "why:          observation `public` differs" in out
    assert "operation:    copy(v = 0)   by KServ" in out or "operation:    copy(v = 1)   by KServ" in out
    assert "responsible statement: public := secret[v]" in out
    assert out.strip().splitlines()[-1] == "13 of 14 obligations proved, 1 failed"


def test_the_responsible_statement_is_the_statement_not_its_line(tmp_mv) -> None:
    """Found in review: the note printed the whole line the statement is on (all of a one-line
    layer, or a 60 KB line); now the statement's text on its line, cut at 200 characters."""
    padding = " + ".join(["0"] * 100)
    r = prove(str(tmp_mv("principal K  layer A { state { x: bv[8] } op f() by K -> bv[8] { return x } "
                         f"op g() by K -> bv[8] {{ return x + {padding} }}\n"
                         "  op h() by K -> bv[8] { return\n    x } }\n")))
    assert r.returncode == 1
    notes = [line for line in r.stdout.splitlines() if "note: responsible statement: " in line]
    assert [n.split("responsible statement: ")[1] for n in notes] == \
        ["return x", "return x + " + padding[:189] + "...", "return ..."]  # h's goes on below
    assert "\n  op f() by K -> bv[8] { return x }\n" in r.stdout  # the operation under its error


def test_contradictory_invariant_is_vacuous_and_exits_1(tmp_mv) -> None:
    path = tmp_mv(SECURE.replace("observe VM(v)", "invariant { forall v: bv[1]. secret[v] == 1 && secret[v] == 2 }\n  observe VM(v)"))
    r = prove(str(path))
    assert r.returncode == 1
    assert "VACUOUS  L/VAC " in r.stdout
    assert "VACUOUS  L/WSC/write/VM" in r.stdout
    assert "the hypotheses are unsatisfiable" in r.stdout
    assert "PROVED   L/WSC" not in r.stdout
    assert "1 of 13 obligations proved" in r.stdout and "PROVED   L/VIEW/VM" in r.stdout  # VIEW reads no invariant


def test_hitting_the_rlimit_is_unknown_and_exits_1(tmp_mv) -> None:
    """Z3 checks the limit only now and then: a fresh solver (the second try at a goal,
    prover/solve.py) may finish a tiny satisfiability check (VAC) before it looks. Every other
    obligation of the model needs more than one unit."""
    r = prove("--rlimit", "1", str(tmp_mv(SECURE)))
    assert r.returncode == 1
    lines = r.stdout.strip().splitlines()
    proved = [line.split()[1] for line in lines if line.startswith("PROVED")]
    assert all("/VAC" in ob or "/VIEW/" in ob for ob in proved), proved
    assert f"{13 - len(proved)} unknown" in lines[-1]
    assert "FAILED" not in r.stdout
    assert "resource limit of 1 reached (--rlimit)" in r.stdout


def test_bad_input_exits_2_with_caret_and_no_traceback() -> None:
    r = prove(str(CASES / "bad" / "width_mismatch.mv"))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0].endswith("width_mismatch.mv:8:14: error: expected bv[8], found bv[16] [width-mismatch]")
    assert lines[1] == "      x := x + y"
    assert lines[2] == " " * 15 + "^"
    assert "Traceback" not in r.stderr + r.stdout


def test_caret_underlines_the_whole_span() -> None:
    r = prove(str(CASES / "bad" / "oracle_in_predicate.mv"))
    assert r.returncode == 2
    assert "    invariant { read o == x }\n                ^~~~~~\n" in r.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    r = prove(str(tmp_path / "nope.mv"))
    assert r.returncode == 2
    assert "no such file" in r.stderr


def test_unknown_option_exits_2() -> None:
    r = prove("--no-such-flag")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_empty_directory_exits_2(tmp_path: Path) -> None:
    r = prove(str(tmp_path))
    assert r.returncode == 2
    assert "no .mv files" in r.stderr


def test_no_arguments_proves_configured_roots(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.microverify]\nroots = ["models"]\n')
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.mv").write_text(SECURE)
    r = prove(cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "13 of 13 obligations proved" in r.stdout


def test_no_configuration_defaults_to_proofs(tmp_path: Path) -> None:
    (tmp_path / "proofs").mkdir()
    (tmp_path / "proofs" / "a.mv").write_text(SECURE)
    r = prove(cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_internal_error_exits_3_and_says_how_to_report(monkeypatch: pytest.MonkeyPatch, tmp_mv, capsys) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(cli, "prove_pairs", boom)
    monkeypatch.setattr(sys, "argv", ["prove", str(tmp_mv(SECURE))])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Please report" in err


def test_quiet_prints_only_what_is_not_proved() -> None:
    r = prove("-q", str(CASES / "kinds" / "inv_only.mv"))
    lines = [ln for ln in r.stdout.splitlines() if ln[:8].strip() in {"PROVED", "FAILED"}]
    assert [ln.split()[0] for ln in lines] == ["FAILED"]


def test_a_stack_gets_one_transfer_theorem_for_its_bottom_layer() -> None:
    r = prove("-q", str(CASES / "stacks"), str(CASES / "kinds" / "lr_only.mv"))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    theorems = [ln for ln in lines if ln.startswith(("theorem:", "no theorem"))]
    assert len(theorems) == 4
    assert theorems[0].startswith("theorem: Cached is noninterfering for observers KServ, VM(v) under policy "
                                  "{KServ -> VM}, via Cached ⊑ Machine ⊑ Spec: any two runs of Cached from "
                                  "states satisfying `init` whose abstractions in Spec agree")
    assert "R-OBS" in theorems[0] and "R-STEP" in theorems[0] and "WSC" in theorems[0]
    assert theorems[1].startswith("theorem: Cpu is noninterfering")  # own_view.mv
    assert theorems[2].startswith("theorem: Impl is noninterfering")  # stutter_abstract_view.mv
    assert theorems[3] == ("no theorem for L (via L): it does not follow, since 1 obligation(s) are not "
                           "proved: L/LR/wipe/VM")
    # spec.mv and machine.mv are imported by cached.mv too: their obligations are counted once
    assert "242 of 243 obligations proved, 1 failed" in lines[-2:]  # then, maybe, what kept quantifiers


FORGOTTEN_VIEW = """type word = bv[4]
principal KServ
principal VM(v: bv[1])
layer Spec {
  state { sec: map[bv[1]] -> word; pub: word }
  observe KServ { pub }
  observe VM(v) { sec[v] }
  op vm_set(v: bv[1], x: word) by VM(v) { sec[v] := x }
  op k_get() by KServ -> word { return pub }
}
layer Impl refines Spec {
  state { sec: map[bv[1]] -> word; pub: word; kbuf: word }
  abstraction { sec = sec; pub = pub }
  observe VM(v) { sec[v] }
  op vm_set(v: bv[1], x: word) by VM(v) { sec[v] := x  kbuf := x }
  op k_get() by KServ -> word { return pub }
}
"""


def test_the_theorem_names_an_observer_the_bottom_layer_gives_no_view(tmp_mv) -> None:
    """Impl forgets to restate `observe KServ`, and copies each VM's data into `kbuf`: at Impl
    KServ sees no state, so nothing is checked of what kbuf holds. Every obligation holds (the
    outputs are protected); the theorem now says that for KServ it covers outputs alone, and so
    with an empty `observe KServ { }`. With the view restated (`kbuf` in it) the copy is found."""
    r = prove("-q", "--no-cache", str(tmp_mv(FORGOTTEN_VIEW)))
    assert r.returncode == 0, r.stdout + r.stderr
    [theorem] = [ln for ln in r.stdout.splitlines() if ln.startswith("theorem:")]
    blind = ("KServ (Spec gives it one) sees no state of Impl (no `observe` block, or an empty one): for it "
             "the theorem covers outputs alone.")
    assert blind in theorem
    empty = FORGOTTEN_VIEW.replace("  observe VM(v) { sec[v] }\n  op vm_set(v: bv[1], x: word) by VM(v) { sec[v] := x  kbuf",
                                   "  observe KServ { }\n  observe VM(v) { sec[v] }\n"
                                   "  op vm_set(v: bv[1], x: word) by VM(v) { sec[v] := x  kbuf")
    r = prove("-q", "--no-cache", str(tmp_mv(empty)))
    assert r.returncode == 0 and blind in r.stdout, r.stdout + r.stderr
    restated = FORGOTTEN_VIEW.replace("  observe VM(v) { sec[v] }\n  op vm_set(v: bv[1], x: word) by VM(v) { sec[v] := x  kbuf",
                                      "  observe KServ { pub; kbuf }\n  observe VM(v) { sec[v] }\n"
                                      "  op vm_set(v: bv[1], x: word) by VM(v) { sec[v] := x  kbuf")
    r = prove("-q", "--no-cache", str(tmp_mv(restated)))
    assert r.returncode == 1 and "FAILED" in r.stdout and "sees no state" not in r.stdout


def test_a_broken_stack_says_which_obligations_are_missing() -> None:
    r = prove("-q", str(CASES / "leak" / "stack_tlb_no_flush.mv"))
    assert r.returncode == 1
    assert ("no theorem for Cached (via Cached ⊑ Machine ⊑ Spec): it does not follow, since 1 "
            "obligation(s) are not proved: Cached/INV/reclaim") in r.stdout


def test_refinement_counterexample_shows_lower_state_alpha_and_both_steps() -> None:
    r = prove("-q", str(CASES / "leak" / "stack_rstep_no_owner_check.mv"))
    out = r.stdout
    assert "error: R-STEP (refinement of a step) fails for `vm_write`" in out
    assert "why:          α(step_L(s)) and step_U(α(s)) differ in `mem`" in out
    assert "  lower:\n" in out and "  upper:\n" in out
    assert "α(s)  step_U(α(s))  α(step_L(s))" in out
    assert "responsible statement: frame[p].data := x" in out


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    """rich is imported when a bar is shown (prover/progress.py); a run under a pseudo-terminal
    draws one on stderr, and the report lines are the same."""
    import pty

    (tmp_path / "secure.mv").write_text(SECURE)
    secure = str(tmp_path / "secure.mv")
    plain = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", secure],
                           capture_output=True, text=True, timeout=120)
    assert "proving" not in plain.stderr
    out = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 4096)
        out.extend(data)
        return data

    status = pty.spawn([sys.executable, "-m", "microverify", "--no-cache", "-j1", secure], read)
    assert os.waitstatus_to_exitcode(status) == 0
    shown = out.decode("utf-8", "replace")
    assert "proving" in shown  # the bar
    assert plain.stdout.strip().splitlines()[-1] in shown  # "N of N obligations proved"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or shutil.which("taskset") is None,
                    reason="needs CPU affinity, two cores to restrict it to one, and taskset")
def test_the_default_jobs_are_the_cores_this_process_may_run_on(tmp_mv) -> None:
    """Under `taskset -c 0` (as a container or a CI runner's CPU set restricts a process) the
    default -j is 1, not the machine's count: a second process would only compete for the one
    core, and pay its start-up."""
    model = str(tmp_mv(SECURE))
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "microverify", "--no-cache",
                             "--format", "json", model], capture_output=True, text=True, timeout=300)
    free = prove("--no-cache", "--format", "json", model)
    assert pinned.returncode == free.returncode == 0, pinned.stderr + free.stderr
    assert json.loads(pinned.stdout)["options"]["jobs"] == 1
    assert json.loads(free.stdout)["options"]["jobs"] == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_working_directory_removed_is_bad_input_not_a_crash(tmp_path: Path, fmt: str) -> None:
    """Found in review: from a working directory that had been removed, `prove` crashed (exit 3)
    where it shows file names relative to it."""
    model = tmp_path / "m.mv"
    model.write_text(SECURE)
    gone = tmp_path / "gone"
    gone.mkdir()
    start = ("import os, sys\nos.chdir(sys.argv[1]); os.rmdir(sys.argv[1])\n"
             "sys.argv = ['prove', *sys.argv[2:]]\nfrom microverify.prover.cli import main\nmain()")
    r = subprocess.run([sys.executable, "-c", start, str(gone), "--format", fmt, "--cache-dir", str(tmp_path / "c"),
                        str(model)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "error: the working directory no longer exists [io]" in r.stderr and "Traceback" not in r.stderr
    if fmt == "json":
        assert json.loads(r.stdout)["diagnostics"][0]["code"] == "io"
