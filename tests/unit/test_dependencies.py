"""A plain ``pip install`` of the package brings everything the product imports:
every third-party module that hanode/ and smb/ import (``hanode demo``'s
client included) comes from a distribution in [project.dependencies], not
from the test extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_top_levels() -> dict[str, str]:
    """Top-level module name -> one file importing it, over hanode/ and smb/."""
    found: dict[str, str] = {}
    for pkg in ("hanode", "smb"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_normal(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0])
               for d in project["dependencies"]}
    dists = packages_distributions()
    missing = []
    for top, where in sorted(_imported_top_levels().items()):
        if top in sys.stdlib_module_names or top in ("hanode", "smb"):
            continue
        owners = {_normal(d) for d in dists.get(top, [])}
        if not owners:
            missing.append(f"{top} (imported by {where}) is installed by no distribution")
        elif not owners & runtime:
            missing.append(f"{top} (imported by {where}) comes from {sorted(owners)}, "
                           "not a [project.dependencies] entry")
    assert not missing, "\n".join(missing)
