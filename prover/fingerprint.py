"""What an obligation is built from, and the digest that names it in the result cache.

`slice_module(module, ob)` is the module with only what the obligation can read: the principals,
the policy and the oracles; the obligation's layer with only its operation; and, for an
obligation that relates a layer to the one it refines (R-*, and OC and DC of a stutter step),
that upper layer with only the operation this one implements. Every formula is built from this
slice (prover/solve.py), never from the whole module, so a formula is a function of its slice,
of the options and of microverify's own code. `obligation_key`
hashes exactly those (and the Z3 version): two runs that agree on the key build the same
formula up to the labels that spans and file names give terms, and labels never change whether
a formula is valid. A stale key is therefore impossible by construction (docs/theory.md §5).

The digest of IR is a SHA-256 over a canonical serialisation of the frozen dataclasses without
their spans, computed once per node object and per non-empty tuple (the object is kept alive with
its digest, so its id cannot be reused by another object while the memo holds it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Callable
from enum import Enum
from functools import cache
from typing import TypeVar, cast
from pathlib import Path

import z3

from microverify.dsl import ir
from microverify.dsl.spans import span_fields
from microverify.prover.obligations import Kind, Obligation

FORMAT = 3  # of the key; bumped when what goes into it changes
_PACKAGES = ("microverify", "microverify.dsl", "microverify.layers", "microverify.oracles", "microverify.prover")

_READS_UPPER = frozenset(k for k in Kind if k.value.startswith("R-")) | {Kind.OC, Kind.DC}
_MEMO_LIMIT = 200_000  # digests remembered, at most (then forgotten: only a speed-up)
_memo: dict[int, tuple[object, bytes]] = {}
_Fields = tuple[bytes, tuple[tuple[str, bytes], ...]]  # see _dataclass_fields
_fields: dict[type, _Fields | None] = {}


# Slices and digests without operations, each with the module it is of (kept alive with it).
# A run makes a few thousand; the language server makes more with every save, and each entry
# keeps a whole module, so at most this many are remembered (then forgotten: only a speed-up).
_MODULES_LIMIT = 8192
_slices: dict[tuple[object, ...], tuple[ir.Module, ir.Module]] = {}
_without_ops: dict[tuple[object, ...], tuple[ir.Module, bytes]] = {}
_T = TypeVar("_T")
# expression leaves (and a principal with its argument): a third of the nodes, each small, so
# inside another node they stand as their serialisation, not its digest (no hash, no memo)
_LEAVES: frozenset[type] = frozenset({ir.Lit, ir.Ref, ir.EnumVal, ir.PrincipalVal})


def per_module(memo: dict[tuple[object, ...], tuple[ir.Module, _T]], module: ir.Module, key: tuple[object, ...],
                make: Callable[[], _T]) -> _T:
    """make(), remembered in `memo` under the module's id and `key`, with the module kept alive
    beside it (so that no other module gets its id while the entry stands); at most
    _MODULES_LIMIT entries (then forgotten: only a speed-up)."""
    full = (id(module), *key)
    found = memo.get(full)
    if found is not None and found[0] is module:
        return found[1]
    if len(memo) >= _MODULES_LIMIT:
        memo.clear()
    made = make()
    memo[full] = (module, made)
    return made


def slice_module(module: ir.Module, ob: Obligation) -> ir.Module:
    """The obligation's slice of the module: one object for every obligation that reads the same
    parts (INV, OC, WSC, ... of one operation), so that its digest is computed once (the memo
    of `digest` is by object)."""
    reads_upper = module.layer(ob.layer).refines is not None and ob.kind in _READS_UPPER
    return per_module(_slices, module, (ob.layer, ob.op, reads_upper), lambda: _slice(module, ob))


def _slice(module: ir.Module, ob: Obligation) -> ir.Module:
    layer = module.layer(ob.layer)
    op = layer.op(ob.op) if ob.op is not None else None
    layers = [dataclasses.replace(layer, ops=(op,) if op is not None else ())]
    if layer.refines is not None and ob.kind in _READS_UPPER:
        upper = module.layer(layer.refines)
        implemented = upper.op(op.implements.op) if op is not None and op.implements is not None else None
        layers.append(dataclasses.replace(upper, ops=(implemented,) if implemented is not None else ()))
    return dataclasses.replace(module, file="", defines=(), layers=tuple(layers))


def digest_without_ops(module: ir.Module) -> bytes:
    """The digest of the module with every layer's operations left out: what a layer's states,
    `init`, invariants and observations are lowered from (types, sizes, configuration,
    principals, policy), and nothing an operation adds."""
    return per_module(_without_ops, module, (), lambda: digest(dataclasses.replace(
        module, layers=tuple(dataclasses.replace(x, ops=()) for x in module.layers))))


def digest(node: object) -> bytes:
    """SHA-256 of IR (or of anything built of dataclasses, tuples, strings, numbers, enums and
    None), without spans."""
    remembered = _memo.get(id(node))
    if remembered is not None and remembered[0] is node:
        return remembered[1]
    out = hashlib.sha256(_encoded(node)).digest()
    if isinstance(node, tuple) and node or _dataclass_fields(type(node)) is not None:  # immutable, and shared
        if len(_memo) >= _MEMO_LIMIT:
            _memo.clear()
        _memo[id(node)] = (node, out)
    return out


def _encoded(node: object) -> bytes:
    """The canonical serialisation `digest` hashes. Each part delimits itself (a length or a
    terminator, or 32 bytes of a digest), so two different values never give the same bytes:
    a dataclass is its type's name, then each field's name and value but its span; a tuple
    its length and items; a dataclass or non-empty tuple inside another stands as its digest,
    but for an expression leaf (_LEAVES), which stands as its own serialisation (its type's
    fields are fixed, so it delimits itself as well; its head tells it from a digest's "H")."""
    fields = _dataclass_fields(type(node))
    if fields is not None:
        head, names = fields
        return head + b"".join([name + _part(getattr(node, attr)) for attr, name in names])
    if isinstance(node, (tuple, list)):
        return b"T%d;" % len(node) + b"".join(map(_part, node))
    return _part(node)


def _part(value: object) -> bytes:
    kind = type(value)  # the usual cases first, by exact type (a subclass of str or int is no str or int here)
    if kind is str:
        data = cast(str, value).encode("utf-8", "surrogateescape")
        return b"S%d:" % len(data) + data
    if kind in _LEAVES:
        return _encoded(value)
    if kind is tuple:
        return b"H" + digest(value) if value else b"T0;"
    if value is None:
        return b"N"
    if kind is bool:  # a bool is an int too
        return b"B1" if value else b"B0"
    if kind is int:
        return b"I%d;" % cast(int, value)
    if isinstance(value, Enum):  # an IntEnum is an int, a StrEnum a str, but not by exact type
        return b"E" + kind.__qualname__.encode() + b"." + value.name.encode() + b";"
    if isinstance(value, (tuple, list)):
        return b"H" + digest(value) if value else b"T0;"
    if _dataclass_fields(kind) is not None:
        return b"H" + digest(value)
    raise TypeError(f"cannot digest a {kind.__name__}")


def _dataclass_fields(kind: type) -> _Fields | None:
    """A dataclass type's serialised name and its fields but those declared as spans (attribute,
    serialised name), or None for any other type; remembered per type."""
    if kind not in _fields:
        if not dataclasses.is_dataclass(kind):
            _fields[kind] = None
        else:
            spans = span_fields(kind)
            _fields[kind] = (b"D" + kind.__qualname__.encode() + b";",
                             tuple((f.name, f.name.encode() + b"=") for f in dataclasses.fields(kind)
                                   if f.name not in spans))
    return _fields[kind]


@cache
def tool_digest() -> str:
    """SHA-256 of microverify's own source files: any change to the code re-proves everything."""
    h = hashlib.sha256()
    for name in _PACKAGES:
        for folder in importlib.import_module(name).__path__:
            for path in sorted(Path(folder).iterdir()):
                if path.suffix in (".py", ".lark") and path.is_file():
                    h.update(f"{name}/{path.name}\0".encode() + path.read_bytes() + b"\0")
    return h.hexdigest()


def obligation_key(sliced: ir.Module, ob: Obligation, options: str) -> str:
    """The cache key of an obligation built from `sliced` (see the module's docstring)."""
    h = hashlib.sha256()
    for part in (f"format {FORMAT}", tool_digest(), z3.get_version_string(), options,
                 f"{ob.kind.value}\0{ob.layer}\0{ob.op}\0{ob.observer}"):
        h.update(part.encode() + b"\0")
    h.update(digest(sliced))
    return h.hexdigest()
