"""The code base keeps its own rules: lint, types, and imports that point down the layers."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "lambdad"

#: The layers, top to bottom (docs/layers.md); a module may import its own layer or lower ones.
LAYERS = [
    {"cli"},
    {"app"},
    {"api"},
    {"events"},
    {"invoke"},
    {"control"},
    {"runtime"},
    {"store", "observe"},
    {"errors", "config", "runtime_ids"},
]
#: Pairs that must not import each other in either direction although the ranks would allow it.
PEERS_APART = [("control", "runtime"), ("store", "observe")]


def _rank(package: str) -> int:
    for index, row in enumerate(LAYERS):
        if package in row:
            return index
    raise AssertionError(f"package {package} is in no layer")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "lambdad" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def test_imports_point_down_the_layers() -> None:
    """No module imports a layer above its own (ARCHITECTURE.md), nor a peer it must not."""
    wrong = []
    for path in SRC.rglob("*.py"):
        if "bootstraps" in path.parts or (path.name == "__init__.py" and path.parent == SRC):
            continue
        own = _package_of(path)
        if own in ("__main__",):
            continue
        for target in _imports(path):
            if target == own:
                continue
            if _rank(target) < _rank(own):
                wrong.append(f"{path.relative_to(REPO)} imports lambdad.{target}")
            if (own, target) in PEERS_APART or (target, own) in PEERS_APART:
                wrong.append(f"{path.relative_to(REPO)} imports its peer lambdad.{target}")
    assert not wrong, "\n".join(wrong)


def test_only_config_reads_the_environment() -> None:
    """``os.environ`` is read in lambdad.config alone; everything else is given Settings."""
    offenders = [
        str(path.relative_to(REPO))
        for path in SRC.rglob("*.py")
        # Bootstraps and the cell helper are programs of their own, run outside lambdad.
        if "bootstraps" not in path.parts
        and path.name != "cellinit.py"
        and path.name != "config.py"
        and "os.environ" in path.read_text()
    ]
    assert not offenders, offenders


def _tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed")
    return [exe]


def test_ruff_lint_and_format() -> None:
    """ruff finds nothing to lint or reformat."""
    lint = subprocess.run(
        [*_tool("ruff"), "check", "src", "tests", "bench"], cwd=REPO, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [*_tool("ruff"), "format", "--check", "src", "tests", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    """mypy --strict (configured in pyproject.toml) is clean on the package."""
    result = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
