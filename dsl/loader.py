"""Read, parse and check source files, following `import "file.mv"`."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from pathlib import Path

from microverify.dsl import ast, ir
from microverify.dsl.checker import check
from microverify.dsl.defines import Define, Uses, apply
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError, error
from microverify.dsl.limits import MAX_FILE_BYTES, ensure_recursion_limit
from microverify.dsl.astcache import parse_cached
from microverify.dsl.spans import Span

EXTENSION = ".mv"
# How the text of an imported file is read: read_source, or (the language server) a file's
# text as its editor shows it. Its errors are read_source's: OSError or UnicodeDecodeError.
Reader = Callable[[Path], str]


def load_text(text: str, file: str, sources: dict[str, str] | None = None, read: Reader | None = None) -> ir.Module:
    """Check one self-contained text (imports are resolved relative to `file`, and read with
    `read`, read_source unless given); every text read, this one included, is recorded in
    `sources` if it is given."""
    from microverify.dsl.parser import parse  # on first use, as in dsl/astcache.py

    ensure_recursion_limit()
    sources = {} if sources is None else sources
    sources[file] = text
    return check(_with_imports(parse(text, file), Path(file), sources, read=read or read_source), sources)


def load_file(path: Path, sources: dict[str, str], defines: tuple[Define, ...] = (),
              uses: Uses | None = None, parsed: Path | None = None) -> ir.Module:
    """Load one file and what it imports, with `defines` (`-D`) applied to its declarations; every
    text read is recorded in `sources`, and what the defines did in `uses`. `parsed` is where
    syntax trees are kept between runs (dsl/astcache.py), if anywhere."""
    ensure_recursion_limit()
    text = read_file(path, sources, None)
    here = Uses()
    try:
        tree = parse_cached(text, display_name(path), parsed)
        merged = apply(_with_imports(tree, path, sources, parsed=parsed), defines, here)
    finally:
        if uses is not None:
            uses.applied |= here.applied
            uses.settable |= here.settable
    module = check(merged, sources)
    used = tuple(str(d) for d in defines if d.name in here.applied)
    return dataclasses.replace(module, defines=used) if used else module


def display_name(path: Path) -> str:
    """How a file is named in spans and reports: relative to the working directory when it is
    inside it, else absolute; the same file always gets the same name, however it was reached.
    Bytes of the name that are not UTF-8 are shown as `\\xNN`, so that the name can be printed."""
    resolved = resolve(path)
    try:
        name = str(resolved.relative_to(resolve(Path.cwd())))
    except ValueError:
        name = str(resolved)
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def resolve(path: Path) -> Path:
    """path.resolve(), or the absolute path when it cannot be resolved (a symlink loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def read_source(path: Path) -> str:
    """The text of a source file, without a leading byte-order mark (as some editors save
    UTF-8). Only a regular file of at most MAX_FILE_BYTES is read: a FIFO is never opened, a
    device such as /dev/zero never read; OSError or UnicodeDecodeError (a ValueError) says why
    not."""
    try:
        info = os.stat(path)
    except ValueError as exc:  # a NUL in the name
        raise OSError(f"bad file name: {exc}") from None
    _check_regular(info)
    # O_NONBLOCK: should the file be swapped for a FIFO after the stat, opening does not block
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        _check_regular(os.fstat(fd))
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise too_large()
    return data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is no character of the text


def _check_regular(info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise OSError("it is a directory")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise OSError(f"it is {kind}, not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise too_large()


def too_large() -> OSError:
    """Why a text of more than MAX_FILE_BYTES (in UTF-8) is not read."""
    return OSError(f"it is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit")


def read_file(path: Path, sources: dict[str, str], at: Span | None, read: Reader = read_source) -> str:
    """The text of a file, read with `read` and recorded in `sources`, or an `io` diagnostic
    (at `at`, the import that names it, else at its first line) saying why it cannot be read."""
    name = display_name(path)
    try:
        text = read(path)
    except OSError as exc:
        what = name
        if at is None and os.path.islink(path):  # a file given (or found in a folder) as a link:
            # named as it was given, since its target may not exist or be no file at all
            name = str(path)
            what = f"{name} (a link to {os.readlink(path)})"
        where = at or Span.point(name, 1, 1)
        why = exc.strerror if exc.strerror else str(exc)
        why = why[:1].lower() + why[1:]
        raise DiagnosticError([error("io", where, f"cannot read {what}: {why}")]) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(name, exc, sources) from None
    sources[name] = text
    return text


def _not_utf8(name: str, exc: UnicodeDecodeError, sources: dict[str, str]) -> DiagnosticError:
    """At the first byte that is not UTF-8, shown in its line (as U+FFFD), wherever the file
    was named from."""
    data = exc.object
    before = data[:exc.start].decode("utf-8").removeprefix("\ufeff")  # the text up to the byte is UTF-8
    line_start = before.rfind("\n") + 1
    sources[name] = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return DiagnosticError([error("io", Span.point(name, before.count("\n") + 1, len(before) - line_start + 1),
                                  f"cannot read {name}: it is not UTF-8 text (byte 0x{data[exc.start]:02x}: "
                                  f"{exc.reason})")])


def _with_imports(module: ast.Module, path: Path, sources: dict[str, str],
                  seen: set[Path] | None = None, parsed: Path | None = None, read: Reader = read_source) -> ast.Module:
    """The module with the declarations of everything it imports put first (each file once)."""
    seen = set() if seen is None else seen
    decls: list[ast.Decl] = []
    errors: list[Diagnostic] = []
    _include(module, resolve(path), sources, seen, [resolve(path)], decls, errors, parsed, read)
    if errors:
        raise DiagnosticError(errors)
    return ast.Module(module.file, tuple(decls))


def _include(module: ast.Module, path: Path, sources: dict[str, str], seen: set[Path],
             stack: list[Path], decls: list[ast.Decl], errors: list[Diagnostic], parsed: Path | None,
             read: Reader) -> None:
    for d in module.decls:
        if not isinstance(d, ast.Import):
            decls.append(d)
            continue
        target = resolve(path.parent / d.path)
        if target in stack:
            chain = " -> ".join(p.name for p in stack[stack.index(target):] + [target])
            errors.append(error("import", d.span, f"circular import ({chain})"))
            continue
        if target in seen:
            continue
        seen.add(target)
        try:
            text = read_file(target, sources, d.span, read)
            imported = parse_cached(text, display_name(target), parsed)
        except DiagnosticError as exc:
            errors.extend(exc.diagnostics)
            continue
        _include(imported, target, sources, seen, stack + [target], decls, errors, parsed, read)


def discover(paths: list[Path]) -> list[Path]:
    """Expand directories into their `.mv` files, sorted; files are taken as given (a path that
    is not a regular file is reported when it is read). Symbolic links to directories are
    followed, each directory once: a link loop ends there."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(_walk(p)))
        else:
            found.append(p)
    return found


def _walk(root: Path) -> list[Path]:
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable: as rglob, skipped
        for entry in entries:
            path = folder / entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(path)
            elif entry.name.endswith(EXTENSION):
                out.append(path)
    return out
