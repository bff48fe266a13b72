"""Parser: structure, precedence, spans, and syntax diagnostics."""

from __future__ import annotations

from pathlib import Path

import pytest

from microverify.dsl import ast, syntaxhints
from microverify.dsl.diagnostics import Diagnostic, DiagnosticError
from microverify.dsl.loader import load_file
from microverify.dsl.parser import _grammar_cache, parse


def expr(text: str) -> ast.Expr:
    module = parse(f"principal K\nlayer L {{ invariant {{ {text} }} }}", "t.mv")
    layer = module.decls[-1]
    assert isinstance(layer, ast.LayerDecl)
    return layer.invariants[0].preds[0]


def shape(e: ast.Expr) -> object:
    if isinstance(e, ast.Binary):
        return (e.op, shape(e.left), shape(e.right))
    if isinstance(e, ast.Unary):
        return (e.op, shape(e.operand))
    if isinstance(e, ast.Name):
        return e.name
    if isinstance(e, ast.IntLit):
        return e.value
    return type(e).__name__


@pytest.mark.parametrize("text,want", [
    ("a + b * c", ("+", "a", ("*", "b", "c"))),
    ("a - b - c", ("-", ("-", "a", "b"), "c")),
    ("a && b || c", ("||", ("&&", "a", "b"), "c")),
    ("a ==> b ==> c", ("==>", "a", ("==>", "b", "c"))),
    ("a == b && c < d", ("&&", ("==", "a", "b"), ("<", "c", "d"))),
    ("a | b ^ c & d", ("|", "a", ("^", "b", ("&", "c", "d")))),
    ("a << 1 + 2", ("<<", "a", ("+", 1, 2))),
    ("!a && -b == ~c", ("&&", ("!", "a"), ("==", ("-", "b"), ("~", "c")))),
    ("0x1f == 31", ("==", 31, 31)),
    ("a <==> b || c", ("<==>", "a", ("||", "b", "c"))),
], ids=lambda v: str(v) if isinstance(v, str) else "")
def test_precedence(text: str, want: object) -> None:
    assert shape(expr(text)) == want


def test_spans_point_at_the_source() -> None:
    e = expr("owner[p] == KServ")
    assert isinstance(e, ast.Binary)
    assert (e.span.line, e.span.column, e.span.end_column) == (2, 23, 40)
    assert isinstance(e.left, ast.Index) and e.left.span.column == 23


def test_comments_and_quantifiers() -> None:
    text = """
    // a line comment
    /* a block
       comment */
    principal K
    layer L { invariant q { forall p: bv[2], b: bool. exists x: bv[2]. x == p } }
    """
    module = parse(text, "t.mv")
    layer = module.decls[-1]
    assert isinstance(layer, ast.LayerDecl)
    q = layer.invariants[0].preds[0]
    assert isinstance(q, ast.Quant) and q.kind == "forall" and [b.name for b in q.binders] == ["p", "b"]
    assert isinstance(q.body, ast.Quant) and q.body.kind == "exists"


def test_statements() -> None:
    module = parse("""principal K
    layer L { op f(a: bv[8]) by K -> bool {
        let x = read o for K
        m[a].pc := x
        check a != 0 else return false
        if a == 1 { halt } else if a == 2 { return true } else { }
        return false
    } }""", "t.mv")
    layer = module.decls[-1]
    assert isinstance(layer, ast.LayerDecl)
    body = layer.ops[0].body
    assert [type(s).__name__ for s in body] == ["Let", "Assign", "Check", "If", "Return"]
    assign = body[1]
    assert isinstance(assign, ast.Assign)
    assert [type(p).__name__ for p in assign.path] == ["LvIndex", "LvField"]
    nested = body[3]
    assert isinstance(nested, ast.If) and isinstance(nested.other[0], ast.If)


def test_several_syntax_errors_in_one_run() -> None:
    text = "principal K\nlayer L {\n  op f() by K { x := x + + }\n  op g() by K { x :== 1 }\n}\n"
    with pytest.raises(DiagnosticError) as info:
        parse(text, "t.mv")
    assert [(d.code, d.span.line) for d in info.value.diagnostics] == [("syntax", 3), ("syntax", 4)]


def test_unexpected_end_of_file() -> None:
    with pytest.raises(DiagnosticError) as info:
        parse("principal K\nlayer L {", "t.mv")
    assert "end of file" in info.value.diagnostics[0].message


def test_a_file_two_roots_import_is_parsed_once(tmp_path: Path) -> None:
    shared = tmp_path / "shared.mv"
    shared.write_text("principal KServ\ntype pfn = bv[4]\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.mv").write_text(f'import "shared.mv"\nlayer {name.upper()} {{\n  state {{ x : pfn }}\n}}\n')
    before = parse.cache_info()
    for name in ("a", "b"):
        load_file(tmp_path / f"{name}.mv", {})
    after = parse.cache_info()
    assert after.misses - before.misses == 3  # a.mv, b.mv and shared.mv: not shared.mv twice


def test_the_grammar_cache_is_a_directory_only_its_user_may_write(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    where = _grammar_cache()
    assert isinstance(where, str) and Path(where).parent == tmp_path / "microverify"
    assert (tmp_path / "microverify").stat().st_mode & 0o777 == 0o700
    (tmp_path / "microverify").chmod(0o777)  # anyone may plant a pickle there: not used
    assert _grammar_cache() is False
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    (tmp_path / "file").write_text("")  # no directory can be made there: not used
    assert _grammar_cache() is False


TYPO = """principal KServ
principal VM(v: vmid)
type vmid = bv[1]
layer L {
  state { secret : map[vmid] -> bv[8] }
  observe VM(v) { secret[v] }
  op write(v: vmid, x: bv[8]) by VM(v) {
    chek secret[v] == 0 else halt
    secret[v] := x
  }
  op wipe(v: vmid) by KServ { secret[v] := 0 }
}
"""


def syntax_errors(text: str) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        parse(text, "t.mv")
    return info.value.diagnostics


def test_a_misspelt_keyword_is_one_error_with_the_keyword_and_no_cascade() -> None:
    (d,) = syntax_errors(TYPO)
    assert (d.code, d.span.line, d.span.column, d.span.end_column) == ("syntax", 8, 5, 9)
    assert d.message == "unknown keyword `chek`" and d.notes == ("did you mean `check`?",)
    # an error with another cause is still reported, at its own place
    both = syntax_errors(TYPO.replace("secret[v] := 0 }", "secret[v] := := 0 }"))
    assert [(x.span.line, x.message.split(" (")[0]) for x in both] == \
        [(8, "unknown keyword `chek`"), (11, "unexpected ':='")]
    # a line that starts with a name used as a name is not taken for a keyword
    assert syntax_errors(TYPO.replace("chek", "check").replace("secret[v] := x", "stat := := x"))[0].notes == ()


def test_a_missing_closing_brace_is_pointed_at_where_it_is_missing() -> None:
    (d,) = syntax_errors(TYPO.replace("chek", "check").replace("    secret[v] := x\n  }\n", "    secret[v] := x\n"))
    assert d.span.line == 10  # `op wipe`, where `write` should have been closed
    assert d.notes == ("the `{` at t.mv:7:40 is never closed: is a closing bracket missing?",)
    (end,) = syntax_errors("principal KServ\nlayer L {\n  state { x : bv[8] }\n  op f() by KServ {\n    x := 1\n")
    assert end.message == "unexpected end of file"
    assert [n.split(" is never")[0] for n in end.notes] == ["the `{` at t.mv:2:9", "the `{` at t.mv:4:19"]


def test_brackets_in_comments_and_strings_are_not_counted() -> None:
    text = 'import "a{.mv"\nlayer L { // {\n  state { x : bv[8] }\n}\n'
    assert syntaxhints.unclosed(text) == []
    assert [(u.line, u.column, u.by) for u in syntaxhints.unclosed("layer L {\n  op f {\n  }\n")] == [(1, 9, 0)]


def test_a_name_that_only_looks_like_a_misspelt_keyword_is_not_reported_as_one() -> None:
    """`stat` continues a `check` over two lines: `state` would not fit there, so with an error
    elsewhere in the file it is not taken for a misspelt `state`, and no error quotes a word
    that is not in the text."""
    text = TYPO.replace("chek secret[v] == 0 else halt", "check secret[v] == 0 &&\n      stat else halt").replace(
        "  state { secret : map[vmid] -> bv[8] }", "  state { secret : map[vmid] -> bv[8]  stat : bool }").replace(
        "secret[v] := 0 }", "secret[v] := := 0 }")
    errors = syntax_errors(text)
    assert [(d.span.line, d.message.split(" (")[0]) for d in errors] == [(12, "unexpected ':='")]
    assert not any("state" in d.message or "keyword" in d.message for d in errors)


UNIT_OP = """principal KServ
layer L {
  state { mem : map[bv[2]] -> bv[4]; ok : map[bv[2]] -> bool; n : bv[4] }
  op write(p: bv[2], x: bv[4]) by KServ {
    check ok[p] else STOP
    mem[p] ASSIGN x
    n := n + 1
  }
}
"""


def _syntax(text: str) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        parse(text, "s.mv")
    return info.value.diagnostics


def test_equals_for_assignment_is_one_error_with_a_note() -> None:
    """`mem[p] = x` was an error there and a second one on the next line (a new user's report)."""
    [d] = _syntax(UNIT_OP.replace("STOP", "halt").replace("ASSIGN", "="))
    assert (d.span.line, d.message) == (6, "unexpected '=' (expected '.', ':=', '[')")
    assert d.notes == ("to assign, write `:=`; `=` is for declarations, `let` and `bind`",)


def test_a_return_without_a_value_says_why_the_next_line_fails() -> None:
    """`check c else return` in an operation without a result: the parse takes the next line as
    the value, and the error was only `unexpected ':='` there (a new user's report)."""
    [d] = _syntax(UNIT_OP.replace("STOP", "return  // nothing to return").replace("ASSIGN", ":="))
    assert (d.span.line, d.message) == (6, "unexpected ':='")
    assert d.notes and d.notes[0].startswith("the `return` at line 5 takes this line as its value")
    assert "`check c else halt`" in d.notes[0]
