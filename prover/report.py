"""Text reports built from result records: per-obligation lines, counterexamples, summary."""

from __future__ import annotations

from collections import Counter

from microverify.dsl import ir
from microverify.dsl.spans import Span
from microverify.prover.counterexample import Counterexample
from microverify.prover.obligations import KIND_NAMES
from microverify.prover.solve import Result, Status


def source_line(span: Span, sources: dict[str, str]) -> str:
    text = sources.get(span.file)
    if text is None:
        return ""
    lines = text.splitlines()
    return lines[span.line - 1].strip() if 0 < span.line <= len(lines) else ""


def result_line(r: Result) -> str:
    ob = r.obligation
    line = f"{r.status.value:<8} {ob.id:<48} {r.seconds:6.2f}s  rlimit {r.rlimit_used}"
    if r.status is not Status.PROVED and r.detail and r.counterexample is None:
        line += f"\n         {r.detail}"
    return line


def render_counterexample(r: Result, sources: dict[str, str]) -> str:
    cex = r.counterexample
    assert cex is not None
    ob = r.obligation
    out = [f"{ob.span}: error: {ob.kind.value} ({KIND_NAMES[ob.kind]}) fails for "
           + (f"`{ob.op}`" if ob.op else f"layer {ob.layer}")
           + (f", observer {cex.observer}" if cex.observer else "")]
    out.append(f"  {source_line(ob.span, sources)}")
    for f in cex.failing:
        out.append(f"  why:          {f}")
    if cex.operation:
        doms = cex.doms[0] if len(set(cex.doms)) == 1 else " / ".join(
            f"{d} (run {run})" for d, run in zip(cex.doms, ("s", "t")))
        out.append(f"  operation:    {cex.operation}   by {doms}")
    if any(cex.results):
        out.append("  results:      " + "  |  ".join(f"{c}: {v}" for c, v in zip(("s", "t"), cex.results) if v))
    for read in cex.oracle_reads:
        out.append(f"  oracle:       {read}")
    out.extend(_table(cex))
    for span in cex.responsible:
        out.append(f"  {span}: note: responsible statement: {source_line(span, sources)}")
    return "\n".join(out)


def _table(cex: Counterexample) -> list[str]:
    if not cex.rows:
        return []
    width = max(len(row.name) for row in cex.rows)
    cols = [max([len(c)] + [len(row.values[i]) for row in cex.rows]) for i, c in enumerate(cex.columns)]
    head = "  " + " " * (width + 2) + "  ".join(c.ljust(w) for c, w in zip(cex.columns, cols))
    lines = [head.rstrip()]
    for row in cex.rows:
        mark = "*" if row.varies else " "
        cells = "  ".join(v.ljust(w) for v, w in zip(row.values, cols))
        lines.append(f"  {mark} {row.name.ljust(width)} {cells}".rstrip())
    if len(cex.columns) > 1:
        lines.append("  (* marks an entry that is not the same in every column)")
    return lines


def summary(results: list[Result]) -> str:
    counts = Counter(r.status for r in results)
    total = len(results)
    parts = [f"{counts[s]} {s.value.lower()}" for s in (Status.FAILED, Status.UNKNOWN, Status.VACUOUS)
             if counts[s]]
    head = f"{counts[Status.PROVED]} of {total} obligations proved"
    return head + (", " + ", ".join(parts) if parts else "")


def _may_halt(stmts: tuple[ir.Stmt, ...]) -> bool:
    for s in stmts:
        if isinstance(s, ir.Halt) or (isinstance(s, ir.Check) and s.on_fail is None):
            return True
        if isinstance(s, ir.If) and (_may_halt(s.then) or _may_halt(s.other)):
            return True
    return False


def theorems(modules: list[ir.Module], results: list[Result]) -> list[str]:
    """What follows for each layer: the noninterference theorem, or why it does not follow."""
    out = []
    for module in modules:
        for layer in module.layers:
            mine = [r for r in results if r.obligation.file == module.file and r.obligation.layer == layer.name]
            missing = [r.obligation.id for r in mine if r.status is not Status.PROVED]
            if missing:
                out.append(f"no theorem for layer {layer.name} ({module.file}): "
                           f"{len(missing)} obligation(s) not proved: " + ", ".join(missing[:8])
                           + (" ..." if len(missing) > 8 else ""))
                continue
            observers = ", ".join(p.name + (f"({p.param})" if p.param else "") for p in module.principals)
            policy = "isolation" if not module.flows else "{" + ", ".join(f"{a} -> {b}" for a, b in module.flows) + "}"
            halting = [op.name for op in layer.ops if _may_halt(op.body)]
            out.append(
                f"theorem: layer {layer.name} ({module.file}) is noninterfering for observers {observers} "
                f"under policy {policy}: from any two states that satisfy `init` and that "
                + ("the observer cannot tell apart" if not module.flows else
                   "agree for the observer and every principal that can flow to it (transitively)")
                + ", every sequence of operations gives the observer "
                "the same outputs and the same view in both runs (termination-insensitive; operations "
                "that may halt: " + (", ".join(halting) or "none") + f"). It rests on {len(mine)} "
                "proved obligations: INIT, INV, VAC, OC, WSC, LR, DC, DR.")
    return out
