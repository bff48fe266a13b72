"""The package type-checks strictly. mypy cannot follow the package-dir mapping, so it runs on a
throw-away tree of symlinks `microverify/<folder> -> <repo>/<folder>` (DESIGN §5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT

api = pytest.importorskip("mypy.api")

FOLDERS = ("dsl", "layers", "oracles", "prover")


def test_mypy_strict_defs(tmp_path: Path) -> None:
    pkg = tmp_path / "microverify"
    pkg.mkdir()
    shutil.copy(ROOT / "package" / "__init__.py", pkg / "__init__.py")
    for folder in FOLDERS:
        (pkg / folder).symlink_to(ROOT / folder, target_is_directory=True)
    out, err, status = api.run(["--ignore-missing-imports", "--disallow-untyped-defs",
                                "--disallow-incomplete-defs", "--no-incremental",
                                "--cache-dir", str(tmp_path / "cache"), str(pkg)])
    assert status == 0, out + err
