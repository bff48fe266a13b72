"""Text reports built from result records: per-obligation lines, counterexamples, summary."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import z3

from microverify.dsl import ir
from microverify.dsl.diagnostics import MAX_SHOWN
from microverify.dsl.spans import Span, source_lines
from microverify.layers.encoding import Encoder
from microverify.layers.model import flows_term
from microverify.prover.memory import new_context
from microverify.prover.obligations import KIND_NAMES, Obligation, binds
from microverify.prover.verdict import Options, Result, Status

if TYPE_CHECKING:  # a counterexample comes with its Result: prover/solve.py imported it
    from microverify.prover.counterexample import Counterexample


def source_line(span: Span, sources: dict[str, str], going_on: str = "") -> str:
    """The text of `span` on its first line (to the line's end if it goes on, then followed by
    `going_on`), cut at MAX_SHOWN characters: the statement, not the whole line it is on."""
    text = sources.get(span.file)
    if text is None:
        return ""
    lines = source_lines(text)
    if not 0 < span.line <= len(lines):
        return ""
    line = lines[span.line - 1]
    shown = line[span.column - 1:span.end_column - 1 if span.end_line == span.line else len(line)].strip()
    if len(shown) > MAX_SHOWN:
        return shown[:MAX_SHOWN] + "..."
    return shown + (going_on if span.end_line > span.line else "")


def result_line(r: Result) -> str:
    ob = r.obligation
    line = f"{r.status.value:<8} {ob.id:<48} {r.seconds:6.2f}s  rlimit {r.rlimit_used}"
    if r.cached:
        line += "  (cached)"
    if r.status is not Status.PROVED and r.detail and r.counterexample is None:
        line += f"\n         {r.detail}"
    return line


def slowest(results: list[Result], n: int) -> str:
    """The n obligations that took longest, slowest first (--durations)."""
    ranked = sorted(results, key=lambda r: (-r.seconds, r.obligation.id))[:n]
    lines = [f"slowest {len(ranked)} of {len(results)} obligations:"]
    lines += [f"  {r.seconds:7.2f}s  {r.obligation.id}" + ("  (cached)" if r.cached else "") for r in ranked]
    return "\n".join(lines)


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
    if r.replay is not None:
        out.append(f"  replay:       {r.replay.line()}")
    if cex.operation:
        doms = cex.doms[0] if len(set(cex.doms)) == 1 else " / ".join(
            f"{d} (run {run})" for d, run in zip(cex.doms, ("s", "t")))
        out.append(f"  operation:    {cex.operation}   by {doms}")
    if cex.results:
        out.append("  results:      " + "  |  ".join(f"{run}: {v}" for run, v in cex.results))
    for entry in cex.configuration:
        out.append(f"  config:       {entry}   [both runs]")
    for read in cex.oracle_reads:
        out.append(f"  oracle:       {read}")
    out.extend(_table(cex))
    for span in cex.responsible:
        out.append(f"  {span}: note: responsible statement: {source_line(span, sources, ' ...')}")
    return "\n".join(out)


def _table(cex: Counterexample) -> list[str]:
    lines: list[str] = []
    for title, columns, rows in cex.tables:
        if not rows:
            continue
        if title:
            lines.append(f"  {title}:")
        width = max(len(row.name) for row in rows)
        cols = [max([len(c)] + [len(row.values[i]) for row in rows]) for i, c in enumerate(columns)]
        head = "  " + " " * (width + 2) + "  ".join(c.ljust(w) for c, w in zip(columns, cols))
        lines.append(head.rstrip())
        for row in rows:
            mark = "*" if row.varies else " "
            cells = "  ".join(v.ljust(w) for v, w in zip(row.values, cols))
            lines.append(f"  {mark} {row.name.ljust(width)} {cells}".rstrip())
    if any(len(columns) > 1 and rows for _, columns, rows in cex.tables):
        lines.append("  (* marks an entry that is not the same in every column)")
    return lines


def summary(results: list[Result]) -> str:
    counts = Counter(r.status for r in results)
    total = len(results)
    parts = [f"{counts[s]} {s.value.lower()}" for s in (Status.FAILED, Status.UNKNOWN, Status.VACUOUS, Status.ERROR)
             if counts[s]]
    head = f"{counts[Status.PROVED]} of {total} obligations proved"
    return head + (", " + ", ".join(parts) if parts else "")


def quantified(results: list[Result], options: Options) -> str:
    """Which obligations were solved with quantifiers although the qf encoding was asked for."""
    kept = [r.obligation.id for r in results if r.quantified]
    if options.encoding != "qf" or not kept:
        return ""
    shown = ", ".join(kept[:8]) + (f", and {len(kept) - 8} more" if len(kept) > 8 else "")
    return (f"note: {len(kept)} of {len(results)} obligations keep quantifiers (outside the array "
            f"property fragment and too large to expand; docs/theory.md §9): {shown}")


def _may_halt(stmts: tuple[ir.Stmt, ...]) -> bool:
    for s in stmts:
        if isinstance(s, ir.Halt) or (isinstance(s, ir.Check) and s.on_fail is None):
            return True
        if isinstance(s, ir.If) and (_may_halt(s.then) or _may_halt(s.other)):
            return True
    return False


def stacks(module: ir.Module) -> list[list[ir.Layer]]:
    """Every chain from a bottom layer (refined by none) up to its top layer (refines none)."""
    refined = {layer.refines for layer in module.layers if layer.refines is not None}
    chains = []
    for bottom in module.layers:
        if bottom.name in refined:
            continue
        chain = [bottom]
        while chain[-1].refines is not None:
            chain.append(module.layer(chain[-1].refines))
        chains.append(chain)
    return chains


def theorems(modules: list[ir.Module], results: list[Result], every: list[Obligation]) -> list[str]:
    """For each stack, the theorem that follows for its bottom layer, or what is missing.
    `every` is every obligation of the modules: one not run (filtered or sharded out) is
    missing, so a theorem is never stated from part of its obligations."""
    out = []
    done: set[tuple[str, ...]] = set()
    refined = {(m.layer(layer.refines).span.file, layer.refines)
               for m in modules for layer in m.layers if layer.refines is not None}
    for module in modules:
        for chain in stacks(module):
            names = {(layer.span.file, layer.name) for layer in chain}

            def its(ob: Obligation) -> bool:  # an obligation of this chain as this module builds it
                return (ob.file, ob.layer) in names and (not ob.context or module.file in ob.context)

            needed = {ob for ob in every if its(ob)}
            # a chain built differently by other files of the run (driver.obligations) has a
            # theorem of its own here, even when another file extends it
            context = module.file if any(ob.context for ob in needed) else ""
            if (chain[0].span.file, chain[0].name) in refined and not context:
                continue  # part of a longer stack loaded in this run
            key = (*(f"{layer.span.file}:{layer.name}" for layer in chain), context)
            if key in done:
                continue
            done.add(key)
            mine = [r for r in results if its(r.obligation)]
            if not context and any(ob.by_file and ob.layer == chain[0].name for ob in needed):
                context = chain[0].span.file  # another file of the run declares a layer of its name
            out.append(_theorem(module, chain, mine, needed, context))
    return out


def _blind(module: ir.Module, chain: list[ir.Layer]) -> str:
    """The observers that see nothing of the bottom layer's state (no `observe` block, or an
    empty one): they see it only through outputs (and their oracle counters), which the theorem
    should not leave unsaid, least of all where a layer above gives them a view the bottom layer
    does not restate."""
    def sees(layer: ir.Layer, p: ir.Principal) -> bool:
        view = layer.observation(p.name)
        return view is not None and bool(view.components)

    bottom = chain[0]
    blind = [p for p in module.principals if not sees(bottom, p)]
    if not blind:
        return ""

    def named(p: ir.Principal) -> str:
        above = next((layer.name for layer in chain[1:] if sees(layer, p)), None)
        return p.name + (f" ({above} gives it one)" if above else "")

    counters = " and oracle counters" if module.oracles else ""
    return (f" {', '.join(named(p) for p in blind)} {'sees' if len(blind) == 1 else 'see'} no state of "
            f"{bottom.name} (no `observe` block, or an empty one): for {'it' if len(blind) == 1 else 'them'} "
            f"the theorem covers outputs{counters} alone.")


def _theorem(module: ir.Module, chain: list[ir.Layer], mine: list[Result], needed: set[Obligation],
             context: str = "") -> str:
    bottom, top = chain[0], chain[-1]
    # `Spec [b.mv]`: as b.mv builds it, where the files of the run build it differently, or
    # as b.mv declares it, where other files of the run declare a layer of that name
    name = bottom.name + (f" [{context}]" if context else "")
    via = " ⊑ ".join(layer.name for layer in chain)
    missing = [r.obligation.id for r in mine if r.status is not Status.PROVED]
    unchecked = needed - {r.obligation for r in mine}
    if unchecked:
        return (f"no theorem for {name} (via {via}) from this run: {len(unchecked)} of its "
                f"{len(needed)} obligations were not selected (--only/--shard)"
                + (f", and {len(missing)} obligation(s) are not proved: " + ", ".join(missing[:8])
                   + (" ..." if len(missing) > 8 else "") if missing else ""))
    if missing:
        return (f"no theorem for {name} (via {via}): it does not follow, since "
                f"{len(missing)} obligation(s) are not proved: " + ", ".join(missing[:8])
                + (" ..." if len(missing) > 8 else ""))
    observers = ", ".join(p.name + (f"({p.param})" if p.param else "") for p in module.principals)
    policy = "isolation" if not module.flows else "{" + ", ".join(_flow_text(f) for f in module.flows) + "}"
    # the bottom layer's: by R-STEP an upper operation halts only where the lower one does
    halting = sorted(op.name for op in bottom.ops if _may_halt(op.body))
    kinds = sorted({r.obligation.kind.value for r in mine})
    whom = "the observer" + (" and every principal that can flow to it" if module.flows else "")
    start = (f"from states satisfying `init` that agree for {whom}" if len(chain) == 1 else
             f"from states satisfying `init` whose abstractions in {top.name} agree for {whom}")
    where: dict[str, list[str]] = {}  # oracle -> the operations that bind it, at any layer
    for layer in chain[:-1]:
        for op in layer.ops:
            for b in binds(op):
                where.setdefault(b.oracle, []).append(op.name)
    bound = bool(where)
    premise = ""
    if module.oracles:
        premise = " and receiving the same value at every oracle read"
        if bound:
            others = "the observer" + (" or a principal that can flow to it" if module.flows else "")
            premise += f" and at every oracle index both bind from a source other than {others}"
    defined = f" (with {', '.join(module.defines)})" if module.defines else ""
    configured = (f", for every value of the configuration constants {', '.join(c.name for c in module.configs)} "
                  "(the same in both runs and every layer)" if module.configs else "")
    text = (f"theorem: {name}{defined} is noninterfering for observers {observers} under policy "
            f"{policy}, via {via}{configured}: any two runs of {bottom.name} {start}, doing the same operations "
            f"with the same arguments{premise}, give the observer the same outputs and end in states it "
            "cannot tell apart (termination-insensitive; operations that may halt: "
            f"{', '.join(halting) or 'none'}).")
    if module.oracles:
        text += f" Oracle sources: {_sources(module)}."
    if bound:
        listed = ", ".join(f"{o} ({', '.join(dict.fromkeys(ops))})" for o, ops in where.items())
        text += (f" Bound by the lower layers: {listed}; every bound value is proved to be determined by "
                 "its source's view (R-BIND).")
    text += _blind(module, chain)
    if not _transitive(module):
        text += (" The policy is not transitive: the premise covers every principal that reaches the "
                 "observer through any chain of flows, and the theorem does not say that such a "
                 "principal's data reaches the observer only through the steps of the principals in "
                 "between (the intransitive, ipurge form; docs/theory.md §3).")
    return text + f" It rests on {len(mine)} proved obligations of kinds {', '.join(kinds)}."


def _sources(module: ir.Module) -> str:
    """`alloc, io from KServ; exitval from VM`, in declaration order of the sources."""
    by_source: dict[str, list[str]] = {}
    for o in module.oracles:
        by_source.setdefault(o.source, []).append(o.name)
    return "; ".join(f"{', '.join(names)} from {src}" for src, names in by_source.items())


def _flow_text(f: ir.Flow) -> str:
    return f"{f.source} -> {f.target}" if f.cond is None else f.text


def _transitive(module: ir.Module) -> bool:
    """Whether a ~> b ~> c implies a ~> c for all principals a, b, c (and every configuration),
    by a solver check of the relation the obligations use; `unknown` counts as not transitive,
    which only adds the sentence that the theorem does not cover the intransitive form."""
    if not module.flows:
        return True
    ctx = new_context()
    enc = Encoder(module, ctx)
    a, b, c = (z3.Const(name, enc.principals.sort(ctx)) for name in "abc")
    solver = z3.Solver(ctx=ctx)
    solver.set("rlimit", 1_000_000)
    solver.add([enc.principals.wellformed(x) for x in (a, b, c)])
    solver.add(flows_term(enc, module, a, b), flows_term(enc, module, b, c), z3.Not(flows_term(enc, module, a, c)))
    solver.add(enc.wellformed)
    return solver.check() == z3.unsat
