"""The shipped proofs, as a user runs them: `prove proofs/<system>` proves every obligation and
states the theorem for the bottom layer of each stack, through the whole refinement chain, and
the quantified encoding agrees with the default quantifier-free one."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from pathlib import Path

from conftest import PROOFS, ROOT, configuration

# Each shipped folder, and the theorems `prove` must state for it: (bottom layer, refinement chain).
THEOREMS = {
    "tutorial": [("Cpu", "Cpu"), ("IoShare", "IoShare"), ("Pages", "Pages")],
    "xmhf": [("XmhfDev", "XmhfDev ⊑ Xmhf")],
    "sekvm": [("KCoreMachine", "KCoreMachine ⊑ KCoreWalk ⊑ KCoreFlat ⊑ KCoreSpec")],
}


def test_every_shipped_folder_is_covered() -> None:
    assert sorted(p.name for p in PROOFS.iterdir() if p.is_dir()) == sorted(THEOREMS)


QUANTIFIED_SHARD = {"sekvm": "1/8", "xmhf": "1/3"}  # --shard of the quantified comparison


def prove_json(folder: str, *options: str) -> dict:  # type: ignore[type-arg]
    run = subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j2", "--format", "json",
                          *options, str(PROOFS / folder)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("folder", sorted(THEOREMS))
def test_shipped_proof_proves_and_states_the_bottom_theorem(folder: str) -> None:
    report = prove_json(folder)  # the default, quantifier-free encoding
    assert report["options"]["encoding"] == "qf"
    # Every quantifier left to Z3 instead: the same verdicts, on a fixed shard of the large
    # folders to keep the suite short (bench/bench.py compares every obligation of every folder;
    # tests/test_mutants.py runs every mutant in both encodings). SeKVM's eighth is 43 of its 309
    # obligations, 32 CPU-seconds at -j2 in that encoding; its quarter, 68, took 40 (2026-12-02).
    shard = QUANTIFIED_SHARD.get(folder)
    quantified = prove_json(folder, "--encoding", "quantified", *(("--shard", shard) if shard else ()))
    assert quantified["summary"]["quantified"] > 0
    compared = {o["id"] for o in quantified["obligations"]}
    assert len(compared) * 10 > report["summary"]["total"]
    assert [(o["id"], o["status"]) for o in quantified["obligations"]] == \
        [(o["id"], o["status"]) for o in report["obligations"] if o["id"] in compared]
    summary = report["summary"]
    assert summary["total"] > 0 and summary["proved"] == summary["total"], summary
    stated = [t.split(" is noninterfering")[0].removeprefix("theorem: ") for t in report["theorems"]]
    chains = [t.split(", via ")[1].split(":")[0] for t in report["theorems"]]
    assert list(zip(stated, chains)) == THEOREMS[folder]
    if len(report["theorems"]) == 1:  # one stack: its theorem rests on every obligation
        assert f"It rests on {summary['total']} proved obligations" in report["theorems"][0]
    if folder == "sekvm":  # docs/sekvm.md quotes it, abridged with `...`
        assert _quoted_theorem_matches(report["theorems"][0], ROOT / "docs" / "sekvm.md")


@pytest.mark.parametrize("system", ["sekvm", "xmhf"])
def test_a_shipped_system_proves_at_its_second_configuration(system: str) -> None:
    """SeKVM at an Armv8 server's sizes, XMHF at its small configuration (the `-D` line of the
    files, conftest.configuration): every obligation, and the same theorem, naming the sizes."""
    config = configuration(system)
    assert config is not None and not config.files
    report = prove_json(system, *[a for d in config.defines for a in ("-D", d)])
    summary = report["summary"]
    assert summary["total"] > 0 and summary["proved"] == summary["total"], summary
    theorem, = report["theorems"]
    assert theorem.startswith(f"theorem: {THEOREMS[system][0][0]} (with -D {config.defines[0]}, ")
    assert f"via {THEOREMS[system][0][1]}:" in theorem
    if system == "sekvm":  # docs/sekvm.md, "Sizes", quotes the count
        assert f"\n{summary['total']} of {summary['total']} obligations proved\n```" in \
            (ROOT / "docs" / "sekvm.md").read_text().split("## Sizes", 1)[1]


def _quoted_theorem_matches(theorem: str, doc: Path) -> bool:
    """The `theorem:` paragraph of the doc's first text block, wrapped and with `...` for the
    parts left out, is the printed theorem."""
    block = doc.read_text().split("```text\n", 1)[1].split("```", 1)[0]
    quoted = " ".join(block[block.index("theorem:"):].split("\n")[:-2]).replace("  ", " ")
    pattern = ".*".join(re.escape(part.strip()) for part in quoted.split("..."))
    return re.fullmatch(pattern, theorem) is not None

