#!/usr/bin/env python3
"""Check (and optionally refresh) the examples of a markdown doc against the real `prove`.

Directives, as HTML comments right before a fenced block:
  <!-- check: exit=N [code=X] [fails=ID ...] [vacuous=ID] [proved=ID] [wrap=T] [save=F] -->
        the next ```mv block is a file (wrapped by template T); prove -q --no-cache must exit N,
        the output must contain `[X]`, `FAILED   ID`, ...; saved as F in the work dir
  <!-- console -->
        the next ```console block: `$ cmd` lines are run in the work dir; the output
        that follows each must match (timings normalised); with --update it is rewritten
  <!-- shell: CMD -->  run CMD in the work dir (hidden setup step); $REPO is the repository
Usage: python tests/doccheck.py DOC.md WORKDIR [--update]   (tests/test_docs.py runs it)
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# The `prove` console script the package installs beside this interpreter: the docs show what a
# user who typed `prove` gets, through the same entry point.
_SCRIPT = Path(sys.executable).parent / "prove"
if not _SCRIPT.is_file():
    raise SystemExit(f"doccheck: no `prove` console script beside {sys.executable}: install the package first")
PROVE = shlex.quote(str(_SCRIPT))
ENV = {**os.environ, "REPO": str(Path(__file__).resolve().parent.parent)}

PRELUDE = """type vmid = bv[2]
type pfn  = bv[4]
type word = bv[8]
principal KServ
principal VM(v: vmid)
policy isolation
oracle donated : word from KServ
"""
STATE = """  state {
    owner   : map[pfn] -> principal
    pending : map[pfn] -> bool
    mem     : map[pfn] -> word
  }
"""
TEMPLATES = {
    "top": "{frag}\nlayer Empty {{ }}\n",
    "kserv-top": "principal KServ\n{frag}\nlayer Empty {{ }}\n",
    "prelude-top": PRELUDE + "{frag}\nlayer Empty {{ }}\n",
    "layer": PRELUDE + "{frag}\n",
    "members": PRELUDE + "layer L {{\n" + STATE + "{frag}\n}}\n",
}

DIRECTIVE = re.compile(r"<!--\s*(check|console|shell|snippet):?\s*(.*?)\s*-->", re.S)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def norm(text: str) -> str:
    text = re.sub(r"\d+\.\d\ds  rlimit", "0.00s  rlimit", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip()


def run_cmd(cmd: str, work: Path) -> tuple[str, int]:
    real = re.sub(r"^prove\b", PROVE, cmd)
    p = subprocess.run(real + " 2>&1; echo \"[exit $?]\"", shell=True, cwd=work,
                       capture_output=True, text=True, env=ENV)
    out = p.stdout
    # drop the marker, keep it as a separate line the doc may show as `$ echo $?`
    m = re.search(r"\[exit (\d+)\]\n?$", out)
    code = int(m.group(1)) if m else -1
    out = out[: m.start()] if m else out
    return out, code


def main(argv: list[str]) -> int:
    doc = Path(argv[0])
    work = Path(argv[1])
    update = "--update" in argv
    last_code = 0
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    text = doc.read_text()
    pos = 0
    out_text = []
    failures = 0
    checked = 0
    nblock = 0
    # every ```mv block must be preceded by a check directive
    for m in FENCE.finditer(text):
        if m.group(1) == "mv":
            before = text[: m.start()].rstrip()
            if not before.endswith("-->"):
                line = text[: m.start()].count("\n") + 1
                print(f"{doc}:{line}: mv block without a check directive")
                failures += 1
    while True:
        d = DIRECTIVE.search(text, pos)
        if d is None:
            out_text.append(text[pos:])
            break
        kind, args = d.group(1), d.group(2)
        line = text[: d.start()].count("\n") + 1
        if kind == "shell":
            out_text.append(text[pos: d.end()])
            pos = d.end()
            subprocess.run(args, shell=True, cwd=work, check=True, env=ENV)
            continue
        f = FENCE.search(text, d.end())
        assert f is not None and text[d.end(): f.start()].strip() == "", f"{doc}:{line}: no block after directive"
        body = f.group(2)
        if kind == "snippet":
            target = (work / args).read_text()
            checked += 1
            if body not in target:
                failures += 1
                print(f"--- {doc}:{line}: snippet not found verbatim in {args}:\n{body}")
            out_text.append(text[pos: f.end()])
            pos = f.end()
            continue
        if kind == "check":
            nblock += 1
            opts = {}
            multi: dict[str, list[str]] = {}
            for tok in shlex.split(args):
                k, _, v = tok.partition("=")
                opts[k] = v
                multi.setdefault(k, []).append(v)
            src = body
            if "wrap" in opts:
                src = TEMPLATES[opts["wrap"]].format(frag=body)
            name = opts.get("save", f"block{nblock:02d}.mv")
            (work / name).write_text(src)
            out, code = run_cmd(f"prove -q --no-cache {name}", work)  # hidden: leaves no cache behind
            ok = True
            if "exit" in opts and code != int(opts["exit"]):
                ok = False
            for c in multi.get("code", []):
                if f"[{c}]" not in out:
                    ok = False
            for k in ("fails", "vacuous", "proved", "unknown"):
                for ident in multi.get(k, []):
                    status = {"fails": "FAILED", "vacuous": "VACUOUS", "proved": "PROVED",
                              "unknown": "UNKNOWN"}[k]
                    if not re.search(rf"^{status}\s+{re.escape(ident)}\s", out, re.M):
                        ok = False
            if "only" in opts:
                listed = set(sum((multi.get(k, []) for k in ("fails", "vacuous", "unknown")), []))
                for mm in re.finditer(r"^(FAILED|UNKNOWN|VACUOUS)\s+(\S+)", out, re.M):
                    if mm.group(2) not in listed:
                        ok = False
            if "nofail" in opts and re.search(r"^(FAILED|UNKNOWN|VACUOUS)", out, re.M):
                ok = False
            checked += 1
            if not ok:
                failures += 1
                print(f"--- {doc}:{line}: block {name} expected {args!r}, got exit {code}:\n{out}")
            out_text.append(text[pos: f.end()])
            pos = f.end()
        else:  # console
            lines = body.splitlines()
            new = []
            expected_chunks = []
            i = 0
            while i < len(lines):
                if lines[i].startswith("$ "):
                    cmd = lines[i][2:]
                    j = i + 1
                    while j < len(lines) and not lines[j].startswith("$ "):
                        j += 1
                    expected = "\n".join(lines[i + 1: j])
                    if cmd.strip() == "echo $?":
                        got = str(last_code)
                    else:
                        got, last_code = run_cmd(cmd, work)
                    checked += 1
                    if norm(got) != norm(expected):
                        if not update:
                            failures += 1
                            print(f"--- {doc}:{line}: output of `{cmd}` differs:\n--- doc\n{expected}\n--- real\n{got}")
                    new.append(lines[i])
                    new.extend(got.rstrip("\n").splitlines() if update else lines[i + 1: j])
                    i = j
                else:
                    new.append(lines[i])
                    i += 1
            out_text.append(text[pos: f.start()])
            out_text.append(f"```{f.group(1)}\n" + "\n".join(new) + "\n```\n")
            pos = f.end()
    if update:
        doc.write_text("".join(out_text))
    print(f"{doc}: {checked} checks, {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
