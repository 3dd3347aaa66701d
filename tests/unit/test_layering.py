"""The code's structure, checked: the import contracts of pyproject.toml
(import-linter), strict types of the wire code and the pure decisions (mypy),
and the lint rules (ruff).  Each tool runs on the tree as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> None:
    done = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}"


def test_import_contracts_are_kept():
    _run("lint-imports", "--no-cache")


def test_wire_code_and_decisions_are_strictly_typed():
    _run("mypy")


def test_ruff_finds_nothing():
    _run("ruff", "check", "--no-cache", ".")
