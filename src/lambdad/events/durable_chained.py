"""Runs durable executions' chained invokes (``context.invoke`` of the SDK;
docs/durable-functions.md): the target is invoked, its result or error ends the CHAINED_INVOKE
operation, and the calling execution is woken to see it.

A plain target is invoked synchronously through ``Invoker.run`` (its concurrency, logs and
metrics as any invoke's); a durable target starts a child execution whose name is derived from
the operation (``durable_chained.child_name``), and its end is the invoke's end. One task per
open chained invoke; at start the engine starts one again for every chained invoke that had not
ended, so a restart loses none (a plain target cut off mid-invocation is invoked again).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import TYPE_CHECKING, Any

from lambdad import errors
from lambdad.control import durable_chained
from lambdad.control.arns import Scope
from lambdad.control.durable import Doc
from lambdad.invoke.service import InvocationType, InvokeRequest
from lambdad.observe.request_ids import new_request_id
from lambdad.store.base import Key

if TYPE_CHECKING:
    from lambdad.events.durable import DurableEngine

log = logging.getLogger(__name__)

#: How long a chained invoke waits for its durable child before it looks again.
CHILD_WAIT = 3600.0


class ChainedInvokes:
    """The chained invokes under way, one task each."""

    def __init__(self, engine: DurableEngine) -> None:
        self._engine = engine
        self._tasks: dict[tuple[Key, str], asyncio.Task[None]] = {}
        self._closed = False

    async def resolve(
        self, scope: Scope, arn: str, updates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``updates`` with each CHAINED_INVOKE START's target resolved (its version; a durable
        target's child execution created, not yet run) for ``ChainedInvokeStarted``. A target
        that does not resolve is left as it is: its invoke fails when it is launched."""
        resolved = []
        for update in updates:
            if update["Type"] == "CHAINED_INVOKE" and update["Action"] == "START":
                update = await self._resolved(scope, arn, update)
            resolved.append(update)
        return resolved

    async def _resolved(self, scope: Scope, arn: str, update: dict[str, Any]) -> dict[str, Any]:
        name = (update.get("ChainedInvokeOptions") or {}).get("FunctionName")
        if not name:
            return update
        try:
            config = await self._engine.functions.resolve(scope, name, None)
        except errors.LambdaError:
            return update
        target: dict[str, Any] = {"ExecutedVersion": config.version}
        if config.durable:
            payload = update.get("Payload")
            child, _ = await self._engine.executions.start(
                scope,
                config,
                durable_chained.child_name(arn, update["Id"]),
                payload.encode() if payload is not None else b"",
            )
            target["DurableExecutionArn"] = child["arn"]
        return {**update, durable_chained.RESOLVED: target}

    def launch(self, key: Key, doc: Doc) -> None:
        """Start a task for every open chained invoke of the execution ``doc`` that has none."""
        if self._closed or doc["status"] != "RUNNING":
            return
        for op_id, target in durable_chained.open_invokes(doc).items():
            if (key, op_id) in self._tasks:
                continue
            task = asyncio.create_task(
                self._run(key, doc, op_id, target), name=f"chained-{key[-1]}-{op_id[:12]}"
            )
            self._tasks[(key, op_id)] = task
            task.add_done_callback(functools.partial(self._done, (key, op_id)))

    def _done(self, task_key: tuple[Key, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(task_key) is task:
            del self._tasks[task_key]
        if not task.cancelled() and task.exception() is not None:
            log.error("chained invoke %s failed", task_key, exc_info=task.exception())

    async def close(self) -> None:
        """Cancel the tasks (their invokes start again at the next start). Idempotent."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, key: Key, doc: Doc, op_id: str, target: dict[str, Any]) -> None:
        status, result, error = await self._outcome(Scope(key[0], key[1]), doc, op_id, target)
        if result is not None and len(result.encode()) > durable_chained.MAX_RESULT_BYTES:
            status, result = "FAILED", None
            error = {"ErrorMessage": durable_chained.RESULT_TOO_LARGE}
        change = durable_chained.end(status, result, error, op_id)
        # The end is recorded once the invocation that started the invoke has ended, as AWS's
        # histories show it (InvocationCompleted, then ChainedInvoke*): a fast target would
        # otherwise end inside it.
        await self._engine.until_idle(key)
        try:
            await self._engine.settle(key, change)
        except errors.ResourceNotFoundException:
            log.info("chained invoke %s of %s: its execution is gone", op_id, key)

    async def _outcome(
        self, scope: Scope, doc: Doc, op_id: str, target: dict[str, Any]
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        """How the invoke ended; a throttled target is tried again until it runs."""
        while True:
            try:
                return await self._invoke(scope, doc, op_id, target)
            except errors.TooManyRequestsException:
                await asyncio.sleep(self._engine.retry_delay)  # it did not run: try again
            except errors.LambdaError as exc:
                return "FAILED", None, _error(exc.code, exc.message)

    async def _invoke(
        self, scope: Scope, doc: Doc, op_id: str, target: dict[str, Any]
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        """Invoke the target once: (status, result, error)."""
        engine = self._engine
        config = await engine.functions.resolve(scope, target["function"], None)
        payload = str(target["payload"]).encode()
        if config.durable:
            name = durable_chained.child_name(doc["arn"], op_id)
            child = await engine.begin(scope, config, name, payload)
            while child["status"] == "RUNNING":
                child = await engine.wait_end(scope, child, CHILD_WAIT)
            if child["status"] == "SUCCEEDED":
                return "SUCCEEDED", child["result"], None
            return child["status"], None, child["error"] or _error(child["status"], "")
        request = InvokeRequest(
            function_name=config.name,
            qualifier=config.version,
            payload=payload,
            invocation_type=InvocationType.REQUEST_RESPONSE,
            tenant_id=target.get("tenant"),
        )
        outcome = await engine.invoker.run(scope, config, request, new_request_id())
        text = outcome.payload.decode("utf-8", "replace")
        if not outcome.function_error:
            return "SUCCEEDED", text, None
        return "FAILED", None, _function_error(text, outcome.error_type)


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"ErrorType": kind, "ErrorMessage": message}


def _function_error(text: str, error_type: str | None) -> dict[str, Any]:
    """A function error's payload (``errorType``, ``errorMessage``, ``stackTrace``) as an
    ``ErrorObject``."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _error(error_type or "Unhandled", text)
    error = _error(
        str(body.get("errorType") or error_type or "Unhandled"),
        str(body.get("errorMessage") or ""),
    )
    trace = body.get("stackTrace")
    if isinstance(trace, list) and all(isinstance(line, str) for line in trace):
        error["StackTrace"] = trace
    return error
