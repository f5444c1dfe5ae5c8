"""Directories that appear whole or not at all."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_dir(dest: Path, build: Callable[[Path], None]) -> None:
    """Run ``build`` on a sibling staging directory, then rename it to ``dest`` in one step.

    If another builder won the race, its ``dest`` is kept and this one's work is discarded; a
    crash leaves only a hidden staging directory, never a half-built ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        build(staging)
        staging.chmod(0o755)
        try:
            staging.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
