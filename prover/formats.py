"""Machine-readable reports: JSON (schema in docs/ci.md), JUnit XML, SARIF 2.1.0, and GitHub
workflow annotations. All are built from result records, never from solver objects."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import z3

from microverify import __version__
from microverify.dsl.diagnostics import CODES
from microverify.dsl.spans import Span
from microverify.prover.crosscheck import RECHECKED
from microverify.prover.obligations import KIND_NAMES, Kind
from microverify.prover.report import render_counterexample
from microverify.prover.verdict import Options, Result, Status

if TYPE_CHECKING:  # they come with a Result: prover/solve.py imported them
    from microverify.prover.counterexample import Counterexample
    from microverify.prover.replay import Replay

JSON_SCHEMA = "microverify-results/4"
USAGE = "usage"  # the code of a problem with the command line rather than with a file
CROSS_CHECK = "cross-check"  # the rule of a verdict the second solver does not confirm
PROBLEM_CODES = {**CODES, USAGE: "a command-line option or argument that cannot be used"}


@dataclass(frozen=True)
class Problem:
    """Why nothing was proved: an error in the input, at its span (a diagnostic of the front
    end), or a usage error, about one path (`file`) or the command line as a whole."""

    code: str  # a key of PROBLEM_CODES
    message: str  # one line, without the `file:line:col: error:` prefix
    text: str  # as printed on standard error: with the source line and a caret when there is one
    span: Span | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if self.code not in PROBLEM_CODES:
            raise ValueError(f"unregistered problem code {self.code!r}")

    @property
    def path(self) -> str | None:
        return self.span.file if self.span is not None else self.file


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


def cross_check_message(r: Result) -> str:
    """The second solver's objection to an obligation's verdict, as the text report says it."""
    return f"cross-check of {r.obligation.id} failed: {r.disagreement}"


def _problem(p: Problem) -> dict[str, Any]:
    return {"code": p.code, "severity": "error", "message": p.message, "file": p.path,
            "span": _span(p.span) if p.span is not None else None, "text": p.text}


def to_json(results: list[Result], theorems: list[str], options: Options, jobs: int,
            problems: Sequence[Problem] = ()) -> str:
    counts = Counter(r.status for r in results)
    doc = {
        "schema": JSON_SCHEMA,
        "tool": {"name": "microverify", "version": __version__, "z3": z3.get_version_string()},
        "options": {"rlimit": options.rlimit, "timeout": options.timeout, "seed": options.seed, "jobs": jobs,
                    "encoding": options.encoding, "cross_check": options.cross_check},
        "summary": {"total": len(results), **{s.value.lower(): counts[s] for s in Status},
                    "cached": sum(r.cached for r in results), "quantified": sum(r.quantified for r in results),
                    "cross_check_failed": sum(bool(r.disagreement) for r in results)},
        "obligations": [{
            "id": r.obligation.id,
            "context": list(r.obligation.context),
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
            "cross_check": None if options.cross_check is None or r.status.value not in RECHECKED else
            {"solver": options.cross_check, "agrees": not r.disagreement, "objection": r.disagreement},
        } for r in results],
        "theorems": theorems,
        "diagnostics": [_problem(p) for p in problems],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def to_junit(results: list[Result], problems: Sequence[Problem] = (), sources: dict[str, str] | None = None) -> str:
    """One test case per obligation, and one per problem with the input (an `<error>`); the
    body of a failure is the whole counterexample, as the text report shows it (`sources`, the
    files' texts, give it its source lines)."""
    errors = [r for r in results if r.status is Status.ERROR]
    failed = [r for r in results if r.status not in (Status.PROVED, Status.ERROR) or r.disagreement]
    suite = ET.Element("testsuite", name="microverify", tests=str(len(results) + len(problems)),
                       failures=str(len(failed)), errors=str(len(errors) + len(problems)), skipped="0",
                       time=f"{sum(r.seconds for r in results):.3f}")
    for p in problems:
        where = str(p.span) if p.span is not None else p.file
        case = ET.SubElement(suite, "testcase", classname=p.path or "microverify",
                             name=f"input: {where}: {p.code}" if where else f"input: {p.code}", time="0.000")
        error = ET.SubElement(case, "error", message=p.message, type=p.code)
        error.text = p.text
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"{r.obligation.file}:{r.obligation.layer}",
                             name=r.obligation.id, time=f"{r.seconds:.3f}")
        if r.status is not Status.PROVED:
            tag = "error" if r.status is Status.ERROR else "failure"
            failure = ET.SubElement(case, tag, message=message(r), type=r.status.value)
            failure.text = render_counterexample(r, sources or {}) if r.counterexample else r.detail
            if r.disagreement:
                failure.text += f"\n{cross_check_message(r)}"
        elif r.disagreement:
            failure = ET.SubElement(case, "failure", message=cross_check_message(r), type=CROSS_CHECK)
            failure.text = cross_check_message(r)
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _sarif_location(path: str, span: Span | None) -> dict[str, Any]:
    location: dict[str, Any] = {"artifactLocation": {"uri": path}}
    if span is not None:
        location["region"] = {"startLine": span.line, "startColumn": span.column,
                              "endLine": span.end_line, "endColumn": span.end_column}
    return {"physicalLocation": location}


def fingerprint(r: Result) -> str:
    """A stable id of the obligation (its file and id), the same across runs and machines: code
    scanning matches a result to the one before by it, so a moved operation is not a new alert."""
    return hashlib.sha256(f"{r.obligation.file}\0{r.obligation.id}".encode()).hexdigest()[:32]


def to_sarif(results: list[Result], problems: Sequence[Problem] = ()) -> str:
    """One result per obligation that is not proved (its kind the rule) and one per problem
    with the input (its diagnostic code the rule); every rule used is listed."""
    rules = [{"id": k.value, "name": k.name, "shortDescription": {"text": KIND_NAMES[k]}} for k in Kind]
    rules += [{"id": code, "name": code.replace("-", " "), "shortDescription": {"text": meaning}}
              for code, meaning in PROBLEM_CODES.items()]
    rules.append({"id": CROSS_CHECK, "name": "cross check",
                  "shortDescription": {"text": "the second solver (--cross-check) does not confirm Z3's verdict"}})
    out: list[dict[str, Any]] = []
    for p in problems:
        out.append({
            "ruleId": p.code,
            "level": "error",
            "message": {"text": p.message},
            "locations": [_sarif_location(p.path, p.span)] if p.path is not None else [],
        })
    for r in results:
        if r.status is Status.PROVED:
            continue
        span = r.obligation.span
        out.append({
            "ruleId": r.obligation.kind.value,
            "level": "error",
            "message": {"text": message(r)},
            "locations": [_sarif_location(span.file, span)],
            "partialFingerprints": {"microverifyObligation/v1": fingerprint(r)},
            "relatedLocations": [{"id": i, **_sarif_location(s.file, s), "message": {"text": "responsible statement"}}
                                 for i, s in enumerate(r.counterexample.responsible if r.counterexample else ())],
            "properties": {"obligation": r.obligation.id, "status": r.status.value},
        })
    for r in results:
        if r.disagreement:
            out.append({
                "ruleId": CROSS_CHECK,
                "level": "error",
                "message": {"text": cross_check_message(r)},
                "locations": [_sarif_location(r.obligation.span.file, r.obligation.span)],
                # not the obligation's own key: a FAILED one cvc5 disputes is two alerts, not one
                "partialFingerprints": {"microverifyCrossCheck/v1": fingerprint(r)},
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


def _github_where(span: Span) -> str:
    return (f"file={_escape(span.file, True)},line={span.line},col={span.column},"
            f"endLine={span.end_line},endColumn={span.end_column}")


def _summary(cex: Counterexample | None) -> str:
    """The counterexample in a few lines, for an annotation on its first responsible statement:
    the runs' results and the other statements responsible."""
    if cex is None:
        return ""
    lines = []
    if cex.results:
        lines.append("results: " + "  |  ".join(f"{run}: {value}" for run, value in cex.results))
    lines += [f"also responsible: {span}" for span in cex.responsible[1:]]
    return "".join("\n" + line for line in lines)


def to_github(results: list[Result], problems: Sequence[Problem] = ()) -> str:
    """Workflow commands: one `::error` annotation per obligation that is not proved (on the
    first statement responsible for its counterexample, else on the operation) and per problem
    with the input (on its line when it has one)."""
    lines = []
    for p in problems:
        where = _github_where(p.span) + "," if p.span is not None else \
            f"file={_escape(p.file, True)}," if p.file is not None else ""
        lines.append(f"::error {where}title={_escape('microverify: ' + p.code, True)}::{_escape(p.message)}")
    for r in results:
        if r.status is Status.PROVED:
            continue
        cex = r.counterexample
        at = cex.responsible[0] if cex is not None and cex.responsible else r.obligation.span
        props = f"{_github_where(at)},title={_escape(r.obligation.id, True)}"
        lines.append(f"::error {props}::{_escape(message(r) + _summary(cex))}")
    for r in results:
        if r.disagreement:
            props = f"{_github_where(r.obligation.span)},title={_escape(CROSS_CHECK + ': ' + r.obligation.id, True)}"
            lines.append(f"::error {props}::{_escape(cross_check_message(r))}")
    return "\n".join(lines)
