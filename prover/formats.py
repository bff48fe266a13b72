"""Machine-readable reports: JSON (schema in docs/ci.md), JUnit XML, SARIF 2.1.0, and GitHub
workflow annotations. All are built from result records, never from solver objects."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from xml.etree import ElementTree as ET

import z3

from microverify import __version__
from microverify.dsl.spans import Span
from microverify.prover.counterexample import Counterexample
from microverify.prover.obligations import KIND_NAMES, Kind
from microverify.prover.replay import Replay
from microverify.prover.solve import Options, Result, Status

JSON_SCHEMA = "microverify-results/2"


def _span(span: Span) -> dict[str, Any]:
    return {"file": span.file, "line": span.line, "column": span.column,
            "end_line": span.end_line, "end_column": span.end_column}


def _cex(cex: Counterexample | None) -> dict[str, Any] | None:
    if cex is None:
        return None
    return {
        "operation": cex.operation,
        "observer": cex.observer,
        "doms": list(cex.doms),
        "results": [{"run": run, "value": value} for run, value in cex.results],
        "oracle_reads": list(cex.oracle_reads),
        "configuration": list(cex.configuration),
        "tables": [{"title": title, "columns": list(columns),
                    "rows": [{"name": row.name, "values": list(row.values)} for row in rows]}
                   for title, columns, rows in cex.tables],
        "failing": list(cex.failing),
        "responsible": [_span(s) for s in cex.responsible],
    }


def _replay(rp: Replay | None) -> dict[str, Any] | None:
    if rp is None:
        return None
    return {"outcome": rp.outcome.value, "findings": list(rp.findings), "observer": rp.observer,
            "arguments": rp.arguments, "states": list(rp.states)}


def message(r: Result) -> str:
    """One line saying why an obligation is not proved."""
    ob = r.obligation
    what = f"{ob.kind.value} ({KIND_NAMES[ob.kind]}) {r.status.value.lower()}"
    where = f" for `{ob.op}`" if ob.op else f" for layer {ob.layer}"
    observer = r.counterexample.observer if r.counterexample and r.counterexample.observer else ob.observer
    who = f", observer {observer}" if observer else ""
    return f"{what}{where}{who}: {r.detail}" if r.detail else f"{what}{where}{who}"


def to_json(results: list[Result], theorems: list[str], options: Options, jobs: int) -> str:
    counts = Counter(r.status for r in results)
    doc = {
        "schema": JSON_SCHEMA,
        "tool": {"name": "microverify", "version": __version__, "z3": z3.get_version_string()},
        "options": {"rlimit": options.rlimit, "timeout": options.timeout, "seed": options.seed, "jobs": jobs,
                    "encoding": options.encoding},
        "summary": {"total": len(results), **{s.value.lower(): counts[s] for s in Status},
                    "cached": sum(r.cached for r in results), "quantified": sum(r.quantified for r in results)},
        "obligations": [{
            "id": r.obligation.id,
            "kind": r.obligation.kind.value,
            "layer": r.obligation.layer,
            "operation": r.obligation.op,
            "observer": r.obligation.observer,
            "status": r.status.value,
            "time": round(r.seconds, 4),
            "rlimit_used": r.rlimit_used,
            "cached": r.cached,
            "quantified": r.quantified,
            "detail": r.detail,
            "span": _span(r.obligation.span),
            "counterexample": _cex(r.counterexample),
            "replay": _replay(r.replay),
        } for r in results],
        "theorems": theorems,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def to_junit(results: list[Result]) -> str:
    errors = [r for r in results if r.status is Status.ERROR]
    failed = [r for r in results if r.status not in (Status.PROVED, Status.ERROR)]
    suite = ET.Element("testsuite", name="microverify", tests=str(len(results)), failures=str(len(failed)),
                       errors=str(len(errors)), skipped="0", time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"{r.obligation.file}:{r.obligation.layer}",
                             name=r.obligation.id, time=f"{r.seconds:.3f}")
        if r.status is not Status.PROVED:
            tag = "error" if r.status is Status.ERROR else "failure"
            failure = ET.SubElement(case, tag, message=message(r), type=r.status.value)
            failure.text = "\n".join(r.counterexample.failing) if r.counterexample else r.detail
            if r.counterexample is not None and r.replay is not None:
                failure.text += "\nreplay: " + r.replay.line()
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def to_sarif(results: list[Result]) -> str:
    rules = [{"id": k.value, "name": k.name, "shortDescription": {"text": KIND_NAMES[k]}} for k in Kind]
    out = []
    for r in results:
        if r.status is Status.PROVED:
            continue
        span = r.obligation.span
        out.append({
            "ruleId": r.obligation.kind.value,
            "level": "error",
            "message": {"text": message(r)},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": span.file},
                "region": {"startLine": span.line, "startColumn": span.column,
                           "endLine": span.end_line, "endColumn": span.end_column}}}],
            "properties": {"obligation": r.obligation.id, "status": r.status.value},
        })
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "microverify", "version": __version__,
                                      "rules": rules}},
                  "results": out}],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def to_github(results: list[Result]) -> str:
    """Workflow commands: one `::error` annotation per obligation that is not proved."""
    lines = []
    for r in results:
        if r.status is Status.PROVED:
            continue
        span = r.obligation.span
        props = (f"file={_escape(span.file, True)},line={span.line},col={span.column},"
                 f"endLine={span.end_line},endColumn={span.end_column},"
                 f"title={_escape(r.obligation.id, True)}")
        lines.append(f"::error {props}::{_escape(message(r))}")
    return "\n".join(lines)
