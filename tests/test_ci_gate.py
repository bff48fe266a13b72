"""`prove` as a CI gate: parallelism, the result cache, selection, sharding, output formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import CASES, PROOFS
from microverify.dsl.loader import load_file
from microverify.prover.cache import Cache
from microverify.prover.driver import obligations
from microverify.prover.fingerprint import slice_module
from microverify.prover.verdict import Options, cache_key


def prove(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microverify", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def verdicts(out: str) -> dict[str, str]:
    return {o["id"]: o["status"] for o in json.loads(out)["obligations"]}


def test_jobs_do_not_change_verdicts_or_order() -> None:
    args = ("--no-cache", "--format", "json", str(CASES / "kinds"), str(CASES / "leak" / "pages_no_scrub.mv"))
    one, two = prove("-j1", *args), prove("-j2", *args)
    assert one.returncode == two.returncode == 1
    assert list(verdicts(one.stdout).items()) == list(verdicts(two.stdout).items())
    assert "FAILED" in verdicts(one.stdout).values()


def test_second_run_reproves_nothing(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    first = json.loads(prove("--cache-dir", cache, "--format", "json", "-j2", str(PROOFS / "tutorial")).stdout)
    second = json.loads(prove("--cache-dir", cache, "--format", "json", "-j2", str(PROOFS / "tutorial")).stdout)
    # (the first run may already hit the cache: identical formulas share an entry)
    assert first["summary"]["proved"] == first["summary"]["total"] > 100
    assert second["summary"]["cached"] == second["summary"]["proved"] == second["summary"]["total"]


def test_editing_one_operation_reproves_only_its_obligations(tmp_path: Path) -> None:
    model = tmp_path / "pages.mv"
    shutil.copy(PROOFS / "tutorial" / "pages.mv", model)
    cache = str(tmp_path / "cache")
    prove("--cache-dir", cache, "-q", str(model))
    text = model.read_text()
    edited = text.replace("    mem[p] := x\n    return true\n  }\n\n  op kserv_read",
                          "    mem[p] := x ^ 0\n    return true\n  }\n\n  op kserv_read")
    assert edited != text
    model.write_text(edited)
    out = json.loads(prove("--cache-dir", cache, "--format", "json", str(model)).stdout)
    fresh = {o["id"] for o in out["obligations"] if not o["cached"]}
    assert fresh and all(i.split("/")[2] == "kserv_write" for i in fresh), fresh
    assert all(o["status"] == "PROVED" for o in out["obligations"])


def _key(path: Path, obligation_id: str) -> str:
    module = load_file(path, {})
    (ob,) = [ob for _, ob in obligations([module]) if ob.id == obligation_id]
    return cache_key(slice_module(module, ob), ob, Options())


def test_a_tampered_cache_entry_cannot_turn_a_failure_into_a_pass(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    leaky = CASES / "kinds" / "lr_only.mv"
    run = prove("--cache-dir", str(cache_dir), "-j1", "--format", "json", str(leaky))
    assert verdicts(run.stdout)["L/LR/wipe/VM"] == "FAILED"
    key = _key(leaky, "L/LR/wipe/VM")
    target = cache_dir / key[:2] / f"{key}.json"
    assert not target.exists()  # failures are never cached
    donor = next(cache_dir.rglob("*.json"))
    target.parent.mkdir(parents=True, exist_ok=True)
    # 1. a PROVED entry of another obligation copied into place
    shutil.copy(donor, target)
    r1 = prove("--cache-dir", str(cache_dir), "-j1", "--format", "json", str(leaky))
    # 2. the same with its key rewritten to fit (its checksum no longer does)
    entry = json.loads(donor.read_text())
    entry["key"] = key
    target.write_text(json.dumps(entry))
    r2 = prove("--cache-dir", str(cache_dir), "-j1", "--format", "json", str(leaky))
    # 3. garbage
    target.write_text("{not json")
    r3 = prove("--cache-dir", str(cache_dir), "-j1", "--format", "json", str(leaky))
    for r in (r1, r2, r3):
        assert r.returncode == 1
        assert verdicts(r.stdout)["L/LR/wipe/VM"] == "FAILED"
        assert "warning: ignoring an invalid cache entry" in r.stderr


def test_cache_entries_hold_only_proved_results(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put("ab" * 32, "X/WSC/f/VM", 7, False)
    assert cache.get("ab" * 32, "X/WSC/f/VM") is not None
    assert cache.get("cd" * 32, "X/WSC/f/VM") is None
    entry_path = tmp_path / "ab" / ("ab" * 32 + ".json")
    entry = json.loads(entry_path.read_text())
    entry["status"] = "FAILED"
    entry_path.write_text(json.dumps(entry))
    assert cache.get("ab" * 32, "X/WSC/f/VM") is None and cache.warnings


def test_shards_partition_the_obligations_exactly() -> None:
    target = str(PROOFS / "tutorial")
    full = json.loads(prove("--list", "--format", "json", target).stdout)
    everything = [(o["file"], o["id"]) for o in full]
    parts = [[(o["file"], o["id"]) for o in json.loads(prove("--list", "--format", "json", "--shard", f"{i}/3",
                                                                  target).stdout)] for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(everything)
    assert all(parts) and sum(len(p) for p in parts) == len(set(everything))


def test_a_shard_never_states_a_theorem(tmp_path: Path) -> None:
    r = prove("--no-cache", "--shard", "1/2", str(CASES / "stacks" / "machine.mv"))
    assert r.returncode == 0
    assert "theorem:" not in r.stdout
    assert "no theorem for Machine (via Machine ⊑ Spec) from this run" in r.stdout


def test_only_selects_by_glob_over_ids() -> None:
    r = prove("--list", "--only", "*/LR/*/VM", "--only", "Pages/INIT", str(PROOFS / "tutorial" / "pages.mv"))
    ids = [line.split()[0] for line in r.stdout.splitlines()[:-1]]
    assert ids[0] == "Pages/INIT" and len(ids) == 1 + 8
    assert all(i == "Pages/INIT" or (i.split("/")[1] == "LR" and i.endswith("/VM")) for i in ids)
    nothing = prove("--only", "Nope/*", str(PROOFS / "tutorial" / "pages.mv"))
    assert nothing.returncode == 2 and "matches no obligation" in nothing.stderr


def test_check_only_parses_and_type_checks() -> None:
    ok = prove("--check", str(PROOFS))
    assert ok.returncode == 0 and ok.stdout.startswith("checked ")
    bad = prove("--check", str(CASES / "bad" / "width_mismatch.mv"))
    assert bad.returncode == 2 and "[width-mismatch]" in bad.stderr


def test_json_report_schema() -> None:
    r = prove("--no-cache", "--format", "json", str(CASES / "kinds" / "oc_only.mv"))
    doc = json.loads(r.stdout)
    assert doc["schema"] == "microverify-results/4"
    assert set(doc) == {"schema", "tool", "options", "summary", "obligations", "theorems", "diagnostics"}
    failed = [o for o in doc["obligations"] if o["status"] == "FAILED"]
    (o,) = failed
    assert set(o) == {"id", "context", "kind", "layer", "operation", "observer", "status", "time", "rlimit_used", "cached", "quantified",
                      "detail", "span", "counterexample", "replay", "cross_check"}
    assert (o["id"], o["kind"], o["operation"], o["span"]["line"]) == ("L/OC/peek", "OC", "peek", 12)
    cex = o["counterexample"]
    assert cex["failing"] == ["the result of `peek` differs between the runs"]
    assert cex["tables"][0]["columns"] == ["s", "t", "step(s)", "step(t)"]
    assert "12 of 13 obligations proved, 1 failed" in r.stderr


def test_junit_sarif_and_github_formats(tmp_path: Path) -> None:
    case = str(CASES / "kinds" / "wsc_only.mv")
    out = tmp_path / "junit.xml"
    r = prove("--no-cache", "--format", "junit", "--output", str(out), case)
    assert "FAILED   L/WSC/copy/KServ" in r.stdout  # the text report still goes to stdout
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "14" and suite.get("failures") == "1"
    failures = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failures == ["L/WSC/copy/KServ"]
    sarif = json.loads(prove("--no-cache", "--format", "sarif", case).stdout)
    assert sarif["version"] == "2.1.0"
    (res,) = sarif["runs"][0]["results"]
    assert res["ruleId"] == "WSC"
    assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == 16
    gh = prove("--no-cache", "--format", "github", case).stdout.strip().splitlines()
    assert gh == ["::error file=tests/cases/kinds/wsc_only.mv,line=17,col=5,endLine=17,endColumn=24,"
                  "title=L/WSC/copy/KServ::WSC (weak step consistency) failed for `copy`, observer KServ: "
                  "observation `public` differs"]


def test_no_progress_bar_when_not_a_terminal() -> None:
    r = prove("--no-cache", str(CASES / "kinds" / "inv_only.mv"))
    assert "\x1b[" not in r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith("PROVED   L/VAC")


def test_timeout_gives_unknown_with_the_reason() -> None:
    """On an obligation whose every check takes far longer than a millisecond (KCore's hypercall
    handler: millions of resource units); the small tutorial models prove some runs within it."""
    r = prove("--no-cache", "-j1", "--timeout", "0.001", "--rlimit", "1000000000",
              "--only", "KCoreSpec/INV/host_hvc", str(PROOFS / "sekvm" / "top.mv"))
    assert r.returncode == 1
    assert "timeout after 0.001s (--timeout)" in r.stdout
    assert "no theorem for KCoreSpec" in r.stdout


def test_seeds_do_not_change_verdicts() -> None:
    args = ("--no-cache", "--format", "json", str(CASES / "kinds"))
    assert verdicts(prove("--seed", "1", *args).stdout) == verdicts(prove("--seed", "12345", *args).stdout)


def test_version() -> None:
    r = prove("--version")
    assert r.returncode == 0 and r.stdout.startswith("prove, version ")
