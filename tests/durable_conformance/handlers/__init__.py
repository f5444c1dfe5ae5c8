"""The durable handlers of AWS's conformance requirements, one per requirement id, written
with the official ``aws-durable-execution-sdk-python``. This package is shipped as
``conformance/`` in one function's zip (tests/durable_conformance/test_conformance.py); its
``handler`` picks the requirement's handler from the execution's name
(``<requirement>-<suffix>``). The tests never import it (the SDK is not installed beside them).

The event every handler gets is the requirements' ``{"Input": ...}``.
"""

from . import batches, callbacks, conditions, contexts, invokes, plugins, steps
from .common import HANDLERS, handler

__all__ = [
    "HANDLERS",
    "batches",
    "callbacks",
    "conditions",
    "contexts",
    "handler",
    "invokes",
    "plugins",
    "steps",
]
