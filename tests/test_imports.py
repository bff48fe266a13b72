"""A file imported by several others is proved once per meaning, not once per name: the layers of
lib.mv use type aliases their importers declare, so a.mv and b.mv give them different types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LIB = """layer Lib {
  state { secret : map[vmid] -> word
          pub : word }
  observe KServ { pub }
  observe VM(v) { secret[v] }
  // with 4-bit words this is always 0; with 8-bit words it is the secret's high nibble
  op copy(v: vmid) by KServ { pub := secret[v] >> 4 }
}
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "base.mv").write_text("principal KServ\nprincipal VM(v: bv[1])\n")
    (tmp_path / "lib.mv").write_text(LIB)
    a, b = tmp_path / "a.mv", tmp_path / "b.mv"
    for path, width in ((a, 4), (b, 8)):
        path.write_text(f'import "base.mv"\ntype vmid = bv[1]\ntype word = bv[{width}]\nimport "lib.mv"\n')
    return a, b


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_an_imported_layer_is_proved_under_each_importers_types(tmp_path: Path, order: str) -> None:
    a, b = _files(tmp_path)
    paths = [a, b] if order == "ab" else [b, a]
    r = subprocess.run([sys.executable, "-m", "microverify", "-q", "-j1", "--no-cache", *map(str, paths)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED   Lib/WSC/copy/KServ" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "23 of 24 obligations proved, 1 failed"
