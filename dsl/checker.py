"""Declarations, layers and statements: the checked module handed to the lowering."""

from __future__ import annotations

from dataclasses import replace

from microverify.dsl import ast, inherit, ir, refines
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError, error
from microverify.dsl.exprs import BROKEN, BUILTINS, CheckFailed, Context, ExprChecker, Globals
from microverify.dsl.inline import PARAM, Function
from microverify.dsl.limits import MAX_BV_WIDTH, MAX_DEPTH, MAX_TYPE_LEAVES
from microverify.dsl.spans import Span, source_lines
from microverify.dsl.types import (BOOL, PRINCIPAL, BVType, EnumType, MapType, PrincipalType, RecordType,
                                   Type, has_map, is_scalar)

_MAX_BV_WIDTH = MAX_BV_WIDTH


class Checker:
    def __init__(self, module: ast.Module, sources: dict[str, str]) -> None:
        self.module = module
        self.sources = sources
        self.diagnostics: list[Diagnostic] = []
        self.exprs = ExprChecker(self.diagnostics, self.resolve_type)
        self.globals = Globals()
        self.type_decls: dict[str, ast.TypeDecl] = {}
        self.resolved: dict[str, Type] = {}
        self.resolving: list[str] = []
        self.broken_types: set[str] = set()  # reported once, then skipped silently
        self.rejected_fields: dict[str, set[str]] = {}  # per layer, the state fields rejected where declared
        self.left_out = 0  # parts that did not check (each rests on a diagnostic)
        self.alias_shape: dict[str, tuple[int, int]] = {}  # each resolved alias's (depth, leaves)
        self.reported_too_deep = False
        self.global_names: dict[str, Span] = {}
        self.lines: dict[str, list[str]] = {}  # each source's lines, for snippets

    def fail(self, code: str, span: Span, message: str, *notes: str) -> CheckFailed:
        self.diagnostics.append(error(code, span, message, *notes))
        return CheckFailed()

    def declare(self, name: str, span: Span, what: str) -> bool:
        if name in self.global_names or name in BUILTINS:
            first = self.global_names.get(name)
            note = (f"first declared at {first}",) if first else ("it is a built-in function",)
            self.fail("duplicate", span, f"{what} `{name}` is already declared", *note)
            return False
        self.global_names[name] = span
        return True

    # ------------------------------------------------------------------ types
    def too_deep(self, span: Span, message: str) -> CheckFailed:
        """Reported once per module: one chain of aliases would otherwise be reported at every link."""
        if self.reported_too_deep:
            return CheckFailed()
        self.reported_too_deep = True
        return self.fail("too-deep", span, message)

    def resolve_type(self, t: ast.TypeExpr) -> Type:
        resolved, _ = self._resolve(t)
        return resolved

    def _resolve(self, t: ast.TypeExpr) -> tuple[Type, tuple[int, int]]:
        """The type, how deeply it nests maps and records, and how many scalars it is made of
        (aliases expanded): both are limited, since what is built from a type (its text, its
        Z3 terms) is as deep and as large."""
        resolved, shape = self._resolve_parts(t)
        depth, leaves = shape
        if depth > MAX_DEPTH:
            raise self.too_deep(t.span, f"this type nests {depth} maps and records deep (through its "
                                        f"aliases), more than {MAX_DEPTH}, the limit")
        if leaves > MAX_TYPE_LEAVES:
            raise self.fail("bad-type", t.span, f"this type is made of more than {MAX_TYPE_LEAVES} "
                                                "scalars (through its aliases), the limit")
        return resolved, shape

    def _resolve_parts(self, t: ast.TypeExpr) -> tuple[Type, tuple[int, int]]:
        if isinstance(t, ast.TBool):
            return BOOL, (0, 1)
        if isinstance(t, ast.TBV):
            if not 1 <= t.width <= _MAX_BV_WIDTH:
                raise self.fail("bad-type", t.span, f"bit-vector width must be 1..{_MAX_BV_WIDTH}")
            return BVType(t.width), (0, 1)
        if isinstance(t, ast.TPrincipal):
            return PRINCIPAL, (0, 1)
        if isinstance(t, ast.TMap):
            key, (key_depth, _) = self._resolve(t.key)
            if not is_scalar(key):
                raise self.fail("bad-type", t.key.span, f"a map key must be a finite scalar type, not {key}")
            value, (value_depth, leaves) = self._resolve(t.value)
            return MapType(key, value), (1 + max(key_depth, value_depth), leaves)
        if isinstance(t, ast.TRecord):
            seen: set[str] = set()
            fields = []
            depth = leaves = 0
            for name, ftype, span in t.fields:
                if name in seen:
                    raise self.fail("duplicate", span, f"record field `{name}` is declared twice")
                seen.add(name)
                ft, (fd, fl) = self._resolve(ftype)
                fields.append((name, ft))
                depth, leaves = max(depth, fd), leaves + fl
            return RecordType(tuple(fields)), (1 + depth, leaves)
        if isinstance(t, ast.TEnum):
            raise self.fail("bad-type", t.span, "an enum must be declared with `type Name = enum {...}`")
        if isinstance(t, ast.TName):
            resolved = self.resolve_name(t)
            return resolved, self.alias_shape.get(t.name, (0, 1))
        raise AssertionError(f"unhandled type node {type(t).__name__}")

    def resolve_name(self, t: ast.TName) -> Type:
        if t.name in self.resolved:
            return self.resolved[t.name]
        decl = self.type_decls.get(t.name)
        if decl is None:
            raise self.fail("unknown-type", t.span, f"unknown type `{t.name}`",
                            *self.exprs.did_you_mean(t.name, self.type_decls.keys()))
        if t.name in self.broken_types:
            raise CheckFailed()
        if t.name in self.resolving:
            members = self.resolving[self.resolving.index(t.name):]
            self.broken_types.update(members)
            cycle = " -> ".join(members + [t.name])
            raise self.fail("recursive-type", decl.span, f"type `{t.name}` is recursive ({cycle})")
        if len(self.resolving) >= MAX_DEPTH:
            self.broken_types.update(self.resolving)
            raise self.too_deep(decl.span, f"type `{t.name}` is reached through a chain of more than "
                                           f"{MAX_DEPTH} type aliases, the limit")
        self.resolving.append(t.name)
        try:
            if isinstance(decl.type, ast.TEnum):
                resolved: Type = self.enum(t.name, decl.type)
                shape = (0, 1)
            else:
                resolved, shape = self._resolve(decl.type)
        except CheckFailed:
            self.broken_types.add(t.name)  # reported once, not at every use
            raise
        finally:
            self.resolving.pop()
        self.resolved[t.name] = resolved
        self.alias_shape[t.name] = shape
        return resolved

    def enum(self, name: str, t: ast.TEnum) -> EnumType:
        enum = EnumType(name, tuple(m for m, _ in t.members))
        for i, (member, span) in enumerate(t.members):
            if self.declare(member, span, "enum member"):
                self.globals.enum_members[member] = (enum, i)
        return enum

    # ------------------------------------------------------------------ module
    def run(self) -> ir.Module:
        decls = self.module.decls
        for d in decls:
            if isinstance(d, (ast.ConstDecl, ast.DefDecl)):
                self.globals.declared.setdefault(d.name, d.span)
        for d in decls:
            if isinstance(d, ast.TypeDecl) and self.declare(d.name, d.span, "type"):
                self.type_decls[d.name] = d
                self.globals.type_names.add(d.name)
        for d in decls:
            if isinstance(d, ast.TypeDecl):
                self.guard(lambda d=d: self.resolve_name(ast.TName(d.name, d.span)))
        principals = []
        for d in decls:
            if isinstance(d, ast.PrincipalDecl):
                if (p := self.guard(lambda d=d: self.principal(d))) is not None:
                    principals.append(p)
                elif d.name not in self.globals.principals:
                    self.globals.broken.add(d.name)  # reported there: its uses say nothing more
        for d in decls:
            if isinstance(d, (ast.OracleDecl, ast.ConstDecl, ast.DefDecl)):
                check_decl = self.oracle if isinstance(d, ast.OracleDecl) else \
                    self.const if isinstance(d, ast.ConstDecl) else self.function
                if self.guard(lambda d=d, f=check_decl: f(d) or True) is None:
                    self.globals.broken.add(d.name)
        flows = self.policy([d for d in decls if isinstance(d, ast.PolicyDecl)])
        checked = self.layers([d for d in decls if isinstance(d, ast.LayerDecl)])
        layers = [checked[d.name] for d in decls if isinstance(d, ast.LayerDecl) and d.name in checked]
        has_layer = any(isinstance(d, ast.LayerDecl) for d in decls)
        if not has_layer and not self.diagnostics:
            self.fail("no-layer", Span.point(self.module.file, 1, 1), "this file declares no layer")
        if has_layer and not any(isinstance(d, ast.PrincipalDecl) for d in decls):
            self.fail("no-principal", Span.point(self.module.file, 1, 1),
                      "this file declares no principal; declare at least one, e.g. `principal KServ`")
        if self.diagnostics:
            raise DiagnosticError(self.diagnostics)
        # what failed silently (a use of something rejected) rests on a reported error; were
        # there none, a declaration or statement would be missing from what is proved
        assert not self.left_out, f"{self.left_out} part(s) of {self.module.file} left out without a diagnostic"
        return ir.Module(self.module.file, tuple(principals), tuple(flows),
                         tuple(self.globals.oracles.values()), tuple(layers),
                         configs=tuple(self.globals.configs.values()))

    def layers(self, decls: list[ast.LayerDecl]) -> dict[str, ir.Layer]:
        """Every layer checked, upper layers first; an `extends` layer is first written out in full."""
        checked: dict[str, ir.Layer] = {}
        written: dict[str, ast.LayerDecl] = {}  # each layer written out in full (`extends` expanded)
        clean: set[str] = set()  # the layers checked without an error
        for d in refines.order_layers(self, decls):
            upper = checked.get(d.refines) if d.refines is not None else None
            if d.refines is not None and upper is None:
                continue  # the upper layer is broken or missing: already reported
            errors = len(self.diagnostics)
            if d.inherit and upper is not None:
                if upper.name not in clean:
                    continue  # what it would inherit has errors, reported once, in the upper layer
                try:
                    d = inherit.expand(self, d, written[upper.name], upper)
                except inherit.Restate as restate:
                    # reported; L's own text is checked over what does carry over, so that its
                    # errors are not hidden behind this one, and L is left out
                    self.guard(lambda partial=restate.partial, upper=upper: self.layer(partial, upper))
                    self.left_out += 1
                    continue
                except CheckFailed:
                    self.left_out += 1
                    continue  # reported: what it would inherit cannot carry over as written
            layer = self.guard(lambda d=d, upper=upper: self.layer(d, upper))
            if layer is not None:
                checked[d.name] = layer
                written[d.name] = d
                if len(self.diagnostics) == errors:
                    clean.add(d.name)
        return checked

    def guard(self, thunk):  # type: ignore[no-untyped-def]
        try:
            return thunk()
        except CheckFailed:
            self.left_out += 1
            return None

    def principal(self, d: ast.PrincipalDecl) -> ir.Principal | None:
        if not self.declare(d.name, d.span, "principal"):
            return None
        ptype = None
        if d.param_type is not None:
            ptype = self.resolve_type(d.param_type)
            if not is_scalar(ptype) or isinstance(ptype, PrincipalType):
                raise self.fail("bad-type", d.span, f"a principal family is indexed by bool, bv or enum, not {ptype}")
        p = ir.Principal(d.name, d.param, ptype, d.span)
        self.globals.principals[d.name] = p
        return p

    def oracle(self, d: ast.OracleDecl) -> None:
        if not self.declare(d.name, d.span, "oracle"):
            return
        t = self.resolve_type(d.type)
        if has_map(t):
            raise self.fail("bad-type", d.type.span, "an oracle yields a scalar or a record of scalars, not a map")
        if d.source is None:
            raise self.fail("oracle-source", d.span,
                            f"oracle `{d.name}` declares no source: add `from P`, the principal (or "
                            "family) whose choice or data its values carry",
                            "a `bind` of the oracle must prove that its value is determined by what "
                            "the source sees (docs/language.md, section 3.5)")
        if d.source in self.globals.broken:
            raise CheckFailed()
        if d.source not in self.globals.principals:
            raise self.exprs.unknown(d.source, d.source_span or d.span, self.globals.principals,
                                     "principal")
        self.globals.oracles[d.name] = ir.Oracle(d.name, t, d.span, d.source)

    def const(self, d: ast.ConstDecl) -> None:
        if not self.declare(d.name, d.span, "constant"):
            return
        t = self.resolve_type(d.type)
        if d.value is None:
            self.globals.configs[d.name] = ir.Config(d.name, t, d.span)
            return
        ctx = Context(self.globals, {}, {}, in_body=False, what="a constant", pure=True)
        self.globals.consts[d.name] = self.exprs.check(d.value, ctx, t)

    def function(self, d: ast.DefDecl) -> None:
        """A def's body is checked once, over its parameters (no state): it is pure, and a call
        can only name a def declared before it, so there is no recursion."""
        if not self.declare(d.name, d.name_span, "def"):
            return
        params: dict[str, tuple[str, Type]] = {}
        for p in d.params:
            if p.name in params:
                raise self.fail("duplicate", p.span, f"parameter `{p.name}` of `{d.name}` is already declared")
            params[p.name] = (PARAM, self.resolve_type(p.type))
        result = self.resolve_type(d.result)
        ctx = Context(self.globals, {}, params, in_body=False, what=f"the def `{d.name}`", pure=True)
        body = self.exprs.check(d.body, ctx, result)
        self.globals.defs[d.name] = Function(d.name, tuple((n, t) for n, (_, t) in params.items()), result, body,
                                             d.span)

    def policy(self, decls: list[ast.PolicyDecl]) -> list[ir.Flow]:
        for extra in decls[1:]:
            self.fail("duplicate", extra.span, "a module has one policy", f"first at {decls[0].span}")
        if not decls or decls[0].flows is None:
            return []
        return [flow for f in decls[0].flows if (flow := self.guard(lambda f=f: self.flow(f))) is not None]

    def flow(self, f: ast.Flow) -> ir.Flow:
        """`F(x) -> G(y) where e`: x and y name the members' indices in e; an index that is not a
        new name (`VM(0)`) is the condition that the member's index equals it."""
        scope: dict[str, tuple[str, Type]] = {}
        conds: list[ast.Expr] = []
        names: list[str | None] = []
        for name, arg in ((f.source, f.source_arg), (f.target, f.target_arg)):
            p = self.globals.principals.get(name)
            if p is None:
                if name in self.globals.broken:  # a principal rejected where it is declared
                    raise CheckFailed()
                raise self.fail("bad-policy", f.span, f"`{name}` in the policy is not a principal")
            if arg is None:
                names.append(None)
                continue
            if p.param_type is None:
                raise self.fail("arity", arg.span, f"`{name}` is a single principal; write `{name}`")
            var = f"{name}#{len(names)}"  # an index expression: compared with a variable of its own
            g = self.globals
            if isinstance(arg, ast.Name) and arg.name in self.global_names and not (
                    arg.name in g.consts or arg.name in g.configs or arg.name in g.enum_members
                    or arg.name in g.principals):
                raise self.fail("duplicate", arg.span, f"`{arg.name}` is already declared, and is no value: name "
                                                       f"the member's index with a new name, or write an index")
            if isinstance(arg, ast.Name) and arg.name not in self.global_names:
                if arg.name in scope:
                    raise self.fail("duplicate", arg.span, f"`{arg.name}` names both members; write "
                                                           f"`where` with a new name for each")
                var = arg.name
            else:
                conds.append(ast.Binary("==", ast.Name(var, arg.span), arg, arg.span))
            scope[var] = ("bound", p.param_type)
            names.append(var)
        if f.where is not None:
            conds.append(f.where)
        cond = None
        if conds:
            ctx = Context(self.globals, {}, scope, in_body=False, what="the policy", pure=True)
            checked = [self.exprs.check(c, ctx, BOOL) for c in conds]
            cond = checked[0]
            for c in checked[1:]:
                cond = ir.Binary("and", cond, c, BOOL, c.span)
        mentioned = _names_in(f.where)
        for family, arg, bound, way in zip((f.source, f.target), (f.source_arg, f.target_arg), names, ("from", "to")):
            if isinstance(arg, ast.Name) and bound is not None and arg.name == bound and bound not in mentioned:
                # `VM(x) -> KServ` without a `where` that uses x is `VM -> KServ`: every member;
                # most likely a misspelt constant (`VM(ADMN)` for `VM(ADMIN)`)
                raise self.fail("bad-policy", arg.span,
                                f"`{bound}` is a new name for the member's index, and no `where` uses it, so this "
                                f"flow is {way} every member: write `{family}` alone for that, or an index",
                                *self.exprs.did_you_mean(bound, self.global_names))
        return ir.Flow(f.source, f.target, names[0], names[1], cond, self.text(f.span).rstrip(";").strip(), f.span)

    # ------------------------------------------------------------------ layers
    def layer(self, d: ast.LayerDecl, upper: ir.Layer | None) -> ir.Layer:
        if not self.declare(d.name, d.span, "layer"):
            raise CheckFailed()
        fields: dict[str, Type] = {}
        state: list[ir.StateField] = []
        for f in d.state:
            if f.name in fields or f.name in self.global_names:
                self.fail("duplicate", f.span, f"state field `{f.name}` clashes with an earlier name")
                continue
            t = self.guard(lambda f=f: self.resolve_type(f.type))
            if t is not None:
                fields[f.name] = t
                state.append(ir.StateField(f.name, t, f.span))
        # A field whose type is broken, or whose name clashes with a global one, is reported
        # once, there: its uses are skipped silently, not reported again as unknown names or
        # as assignments to something else (for this layer only; field names are not global).
        # A use of a clashing name that means the global (a constant) is skipped too: an error
        # has been reported, and nothing is proved.
        broken = {f.name for f in d.state if f.name not in fields}
        self.rejected_fields[d.name] = set(broken)  # a refining layer's abstraction of them says nothing more
        broken -= self.globals.broken
        self.globals.broken |= broken
        try:
            pctx = Context(self.globals, fields, {}, in_body=False, what="`init`")
            init = [e for p in d.init if (e := self.guard(lambda p=p: self.exprs.check(p, pctx, BOOL)))]
            invariants = []
            ictx = Context(self.globals, fields, {}, in_body=False, what="an invariant")
            named: dict[str, ast.Invariant] = {}
            for n, inv in enumerate(d.invariants):
                if inv.name is not None and named.setdefault(inv.name, inv) is not inv:
                    self.fail("duplicate", inv.span, f"invariant `{inv.name}` is already declared in `{d.name}`",
                              f"first declared at {named[inv.name].span}")
                    continue
                for k, p in enumerate(inv.preds):
                    e = self.guard(lambda p=p: self.exprs.check(p, ictx, BOOL))
                    if e is not None:
                        label = inv.name or f"#{n + 1}"
                        invariants.append(ir.Invariant(label if len(inv.preds) == 1 else f"{label}.{k + 1}",
                                                       e, p.span))
            observations = []
            seen_obs: set[str] = set()
            for o in d.observes:
                obs = self.guard(lambda o=o: self.observe(o, fields))
                if obs is not None:
                    if obs.principal in seen_obs:
                        self.fail("duplicate", o.span, f"a second observation for `{obs.principal}`")
                    seen_obs.add(obs.principal)
                    observations.append(obs)
            ops = []
            seen_ops: set[str] = set()
            for op in d.ops:
                if op.name in seen_ops:
                    self.fail("duplicate", op.name_span, f"operation `{op.name}` is declared twice")
                    continue
                seen_ops.add(op.name)
                checked = self.guard(lambda op=op: OpChecker(self, fields, upper).op(op))
                if checked is not None:
                    ops.append(checked)
            abstraction: tuple[ir.AbsDef, ...] = ()
            if upper is not None:
                abstraction = refines.abstraction(self, d, fields, upper)
                refines.read_or_bind(self, ops)
            elif d.abstraction:
                self.fail("refinement", d.abstraction[0].span, "an abstraction needs `refines Upper`")
            return ir.Layer(d.name, tuple(state), tuple(init), tuple(invariants), tuple(observations),
                            tuple(ops), d.span, d.refines, d.via, abstraction)
        finally:
            self.globals.broken -= broken

    def observe(self, o: ast.Observe, fields: dict[str, Type]) -> ir.Observation:
        p = self.globals.principals.get(o.principal)
        if p is None:
            if o.principal in self.globals.broken:
                raise CheckFailed()
            raise self.exprs.unknown(o.principal, o.span, self.globals.principals, "principal")
        if (p.param_type is None) != (o.param is None):
            want = f"`observe {p.name}({p.param or 'x'})`" if p.param_type else f"`observe {p.name}`"
            raise self.fail("arity", o.span, f"write {want}: `{p.name}` is "
                            + ("a family" if p.param_type else "a single principal"))
        scope: dict[str, tuple[str, Type]] = {}
        if o.param is not None and p.param_type is not None:
            scope[o.param] = ("param", p.param_type)
        ctx = Context(self.globals, fields, scope, in_body=False, observer=(p.name, o.param),
                      what=f"the observation of `{p.name}`")
        components = []
        for c in o.components:
            comp = self.guard(lambda c=c: self.component(c, ctx))
            if comp is not None:
                components.append(comp)
        return ir.Observation(p.name, o.param, tuple(components), o.span)

    def component(self, c: ast.ObsComponent, ctx: Context) -> ir.ObsComponent:
        binders: list[tuple[str, Type]] = []
        extra: dict[str, tuple[str, Type]] = {}
        for b in c.binders:
            if b.name in extra or b.name in ctx.locals:
                raise self.fail("duplicate", b.span, f"`{b.name}` is bound twice")
            t = self.exprs.binder_type(b)
            binders.append((b.name, t))
            extra[b.name] = ("bound", t)
        inner = ctx.with_locals(extra)
        where = self.exprs.check(c.where, inner, BOOL) if c.where is not None else None
        expr = self.exprs.check(c.expr, inner)
        return ir.ObsComponent(tuple(binders), where, expr, self.snippet(c.span), c.span)

    def text(self, span: Span) -> str:
        """The whole text of a span, on one line (its lines joined, runs of blanks as one)."""
        lines = self.source_lines(span.file)[span.line - 1:span.end_line]
        if not lines:
            return ""
        lines[-1] = lines[-1][:span.end_column - 1]
        lines[0] = lines[0][span.column - 1:]
        return " ".join(" ".join(lines).split())

    def source_lines(self, file: str) -> list[str]:
        lines = self.lines.get(file)
        if lines is None:  # split once per file, not once per component (a large file has many)
            lines = self.lines[file] = source_lines(self.sources.get(file, ""))
        return lines

    def snippet(self, span: Span) -> str:
        lines = self.source_lines(span.file)
        if span.line < 1 or span.line > len(lines):
            return ""
        if span.end_line == span.line:
            return lines[span.line - 1][span.column - 1:span.end_column - 1]
        return lines[span.line - 1][span.column - 1:].rstrip() + " ..."


class OpChecker:
    """Checks one operation: parameters, dom, body statements, returns."""

    def __init__(self, checker: Checker, fields: dict[str, Type], upper: ir.Layer | None) -> None:
        self.c = checker
        self.fields = fields
        self.upper = upper
        self.result: Type | None = None
        self.failed = False  # a statement of the body did not check

    def op(self, d: ast.OpDecl) -> ir.Op:
        params: list[tuple[str, Type]] = []
        scope: dict[str, tuple[str, Type]] = {}
        for p in d.params:
            if p.name in scope or p.name in self.fields:
                raise self.c.fail("duplicate", p.span, f"parameter `{p.name}` clashes with an earlier name")
            t = self.c.resolve_type(p.type)
            if has_map(t):
                raise self.c.fail("bad-type", p.span, "an operation parameter cannot be or contain a map")
            params.append((p.name, t))
            scope[p.name] = ("arg", t)
        dctx = Context(self.c.globals, self.fields, dict(scope), in_body=False, what="`by`")
        dom = self.c.exprs.check(d.dom, dctx, PRINCIPAL)
        self.result = self.c.resolve_type(d.result) if d.result is not None else None
        if self.result is not None and has_map(self.result):
            assert d.result is not None
            raise self.c.fail("bad-type", d.result.span, "an operation cannot return a map")
        self.failed = False
        body = self.block(d.body, scope)
        # a statement left out (reported, or using something reported) may be the return
        if self.result is not None and not self.failed and not _always_exits(body):
            raise self.c.fail("missing-return", d.name_span,
                              f"operation `{d.name}` returns {self.result} but can end without `return`")
        op = ir.Op(d.name, tuple(params), dom, self.result, tuple(body), d.span)
        if self.upper is not None:
            return replace(op, implements=refines.implements(self.c, d, op, self.upper, self.fields))
        if d.implements is not None:
            raise self.c.fail("refinement", d.implements.span, "`implements` needs `refines Upper`")
        return op

    def ctx(self, scope: dict[str, tuple[str, Type]]) -> Context:
        return Context(self.c.globals, self.fields, dict(scope), in_body=True, what="an operation")

    def block(self, stmts: tuple[ast.Stmt, ...], outer: dict[str, tuple[str, Type]]) -> list[ir.Stmt]:
        scope = dict(outer)
        out = []
        for s in stmts:
            checked = self.c.guard(lambda s=s: self.stmt(s, scope))
            if checked is not None:
                out.append(checked)
            else:
                self.failed = True
        return out

    def rhs(self, e: ast.Expr, scope: dict[str, tuple[str, Type]], want: Type | None) -> ir.Expr:
        if isinstance(e, ast.ReadOracle):
            return self.c.exprs.check_read(e, self.ctx(scope), want)
        return self.c.exprs.check(e, self.ctx(scope), want)

    def stmt(self, s: ast.Stmt, scope: dict[str, tuple[str, Type]]) -> ir.Stmt:
        exprs = self.c.exprs
        if isinstance(s, ast.Let):
            if s.name in scope or s.name in self.fields or s.name in self.c.global_names:
                raise self.c.fail("duplicate", s.span, f"`{s.name}` is already declared; lets may not shadow")
            want = self.c.resolve_type(s.type) if s.type is not None else None
            try:
                value = self.rhs(s.value, scope, want)
            except CheckFailed:
                scope[s.name] = (BROKEN, BOOL)  # reported here: its uses say nothing more
                raise
            scope[s.name] = ("local", value.type)
            return ir.Let(s.name, value, s.span)
        if isinstance(s, ast.Assign):
            return self.assign(s, scope)
        if isinstance(s, ast.Check):
            cond = exprs.check(s.cond, self.ctx(scope), BOOL)
            on_fail = None
            if s.on_fail is not None:
                if self.result is None:
                    raise self.c.fail("return-in-unit-op", s.span,
                                      "this operation has no result type; use `else halt` or add `-> T`")
                on_fail = exprs.check(s.on_fail, self.ctx(scope), self.result)
            return ir.Check(cond, on_fail, s.span)
        if isinstance(s, ast.If):
            cond = exprs.check(s.cond, self.ctx(scope), BOOL)
            return ir.If(cond, tuple(self.block(s.then, scope)), tuple(self.block(s.other, scope)), s.span)
        if isinstance(s, ast.Return):
            if self.result is None:
                raise self.c.fail("return-in-unit-op", s.span, "this operation has no result type")
            return ir.Return(exprs.check(s.value, self.ctx(scope), self.result), s.span)
        if isinstance(s, ast.Halt):
            return ir.Halt(s.span)
        if isinstance(s, ast.Bind):
            return refines.bind(self.c, s, self.ctx(scope), self.upper is not None)
        raise AssertionError(f"unhandled statement {type(s).__name__}")

    def assign(self, s: ast.Assign, scope: dict[str, tuple[str, Type]]) -> ir.Assign:
        if s.root not in self.fields:
            if s.root in scope:
                kind = {"arg": "a parameter", "local": "a `let` binding"}.get(scope[s.root][0], "local")
                raise self.c.fail("assign-not-state", s.root_span,
                                  f"cannot assign to `{s.root}`: it is {kind}, not a state field")
            if s.root in self.c.globals.broken:  # its type or name is broken: reported there
                raise CheckFailed()
            if s.root in self.c.global_names:
                raise self.c.fail("assign-not-state", s.root_span,
                                  f"cannot assign to `{s.root}`: it is not a state field")
            raise self.c.exprs.unknown(s.root, s.root_span, self.fields, "state field")
        t = self.fields[s.root]
        path: list[ir.Expr | str] = []
        for step in s.path:
            if isinstance(step, ast.LvIndex):
                if not isinstance(t, MapType):
                    raise self.c.fail("type-mismatch", step.span, f"indexing a value of type {t}")
                path.append(self.c.exprs.check(step.index, self.ctx(scope), t.key))
                t = t.value
            else:
                ftype = t.field(step.name) if isinstance(t, RecordType) else None
                if ftype is None:
                    raise self.c.fail("type-mismatch", step.span, f"{t} has no field `{step.name}`")
                path.append(step.name)
                t = ftype
        value = self.rhs(s.value, scope, t)
        return ir.Assign(s.root, tuple(path), value, s.span)


def _always_exits(stmts: list[ir.Stmt] | tuple[ir.Stmt, ...]) -> bool:
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, (ir.Return, ir.Halt)):
        return True
    if isinstance(last, ir.If):
        return _always_exits(last.then) and _always_exits(last.other)
    return False


def check(module: ast.Module, sources: dict[str, str]) -> ir.Module:
    """Resolve names and types; raise DiagnosticError listing every error found."""
    return Checker(module, sources).run()


def _names_in(e: object) -> set[str]:
    """The names an expression of the syntax tree mentions (None: none)."""
    found: set[str] = set()
    stack = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            found.add(node.name)
        elif isinstance(node, tuple):
            stack.extend(node)
        elif hasattr(node, "__dataclass_fields__"):
            stack.extend(getattr(node, name) for name in node.__dataclass_fields__ if name != "span")
    return found
