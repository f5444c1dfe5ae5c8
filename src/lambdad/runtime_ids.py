"""The runtime ids lambdad runs, listed once (docs/runtimes.md).

``control.validation`` accepts these ids for CreateFunction and UpdateFunctionConfiguration and
lists them, in this order, in the enum message of an unknown one; ``runtime.runtimes`` starts
each on its interpreter. Control and runtime never import each other, so the list lives in the
bottom layer (beside ``errors`` and ``config``) and imports nothing of the project.
"""

from __future__ import annotations

#: ``python3.<minor>`` -> the interpreter version it asks for.
PYTHON_RUNTIMES: dict[str, tuple[int, int]] = {
    f"python3.{minor}": (3, minor) for minor in range(9, 16)
}
#: ``nodejs<major>.x`` -> the Node.js major it asks for.
NODE_RUNTIMES: dict[str, int] = {f"nodejs{major}.x": major for major in (18, 20, 22, 24, 26)}
#: Run the zip's (or a layer's) own ``bootstrap``.
PROVIDED_RUNTIMES: tuple[str, ...] = ("provided", "provided.al2", "provided.al2023")
#: Listed by the current Lambda model ahead of general availability; run like the others.
PREVIEW_RUNTIMES: frozenset[str] = frozenset({"python3.15", "nodejs26.x"})
#: Every id, in the order AWS's enum message lists them.
RUNTIME_IDS: tuple[str, ...] = (*PYTHON_RUNTIMES, *NODE_RUNTIMES, *PROVIDED_RUNTIMES)
