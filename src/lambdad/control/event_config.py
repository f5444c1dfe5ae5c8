"""How a function's asynchronous invocations are handled: retries, event age, destinations,
and what happens to a recursive loop.

``EventInvokeConfigs`` holds the per-qualifier ``FunctionEventInvokeConfig`` documents
(Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s)) and the per-function recursion
setting (Get/PutFunctionRecursionConfig). The dispatcher asks it for the ``AsyncPolicy`` of the
qualifier an event was sent to.

SEAM (issue 5): the API side is being built; until then every policy is the default.
"""

from __future__ import annotations

import dataclasses
import enum

from lambdad.control.arns import Scope

#: Lambda's defaults for asynchronous invocation.
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600


class RecursiveLoop(enum.StrEnum):
    TERMINATE = "Terminate"
    ALLOW = "Allow"


@dataclasses.dataclass(frozen=True, slots=True)
class AsyncPolicy:
    """The effective event invoke config of one qualifier (the defaults where none is set)."""

    max_retry_attempts: int = DEFAULT_RETRIES
    max_event_age: int = DEFAULT_MAX_AGE
    #: Destination ARNs (lambda function, SQS queue, SNS topic, EventBridge bus) or None.
    on_success: str | None = None
    on_failure: str | None = None


class EventInvokeConfigs:
    """Event invoke configs and recursion settings (stub: defaults only)."""

    async def policy(self, scope: Scope, function_name: str, qualifier: str | None) -> AsyncPolicy:
        """The policy for events sent to ``function_name`` at ``qualifier`` (None: $LATEST)."""
        return AsyncPolicy()

    async def recursion(self, scope: Scope, function_name: str) -> RecursiveLoop:
        return RecursiveLoop.TERMINATE
