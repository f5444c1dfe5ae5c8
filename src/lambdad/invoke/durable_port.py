"""The invoke path's one hook for durable functions (docs/durable-functions.md).

Every caller of ``Invoker`` (InvokeAsync, function URLs, InvokeWithResponseStream, event source
mappings, schedules, rules, destinations) reaches a durable function through it: an ``Event``
invocation starts a durable execution, a ``RequestResponse`` one starts it and waits for its
end. The engine that runs executions lives in ``lambdad.events``, which ``invoke`` cannot
import: it implements this protocol and the composition root hands it to the ``Invoker``.
"""

from __future__ import annotations

from typing import Protocol

from lambdad.control.arns import Scope
from lambdad.control.model import FunctionConfig
from lambdad.observe.platform import Report
from lambdad.runtime.invocation import Outcome


class DurableStarter(Protocol):
    """Starts durable executions of durable functions."""

    async def start_execution(
        self, scope: Scope, config: FunctionConfig, payload: bytes, name: str | None
    ) -> str:
        """Start the execution ``name`` (None: a new name) of ``config`` with ``payload``, or
        find it (the same name and payload); its ARN."""
        ...

    async def run_execution(
        self, scope: Scope, config: FunctionConfig, payload: bytes
    ) -> tuple[str, bytes, bool]:
        """Start an execution and wait for its end (within the synchronous limit): its ARN,
        its answer (the result, or ``{"errorType", "errorMessage"}``) and whether it failed."""
        ...


def durable_outcome(request_id: str, config: FunctionConfig, body: bytes, failed: bool) -> Outcome:
    """A synchronous durable invocation's outcome: the execution's answer (its invocations
    are measured and logged on their own, so the report is empty)."""
    return Outcome(
        payload=body,
        content_type="application/json",
        function_error=failed,
        log="",
        report=Report(request_id, 0.0, config.memory_size, 0),
        executed_version=config.version,
    )
