"""The durable execution engine: invokes a durable function's handler with the durable input,
reads its ``SUCCEEDED`` / ``FAILED`` / ``PENDING`` answer, and re-invokes a ``PENDING``
execution when its next wait ends, step retry or callback timeout is due, or when a callback
or chained invoke ends (``wake``; docs/durable-functions.md).

Each running execution has one driver task. Its timer is the execution's own record (the
operations' ``ScheduledEndTimestamp`` / ``NextAttemptTimestamp``), so nothing else needs
keeping: at start every ``RUNNING`` execution of the store gets a driver again, which sleeps
until its next due time (or invokes at once, replaying from the checkpoints, when it was cut
off mid-invocation). Waits and step retry delays are wall-clock: ``LAMBDAD_TIME_SCALE`` never
changes them; it scales only the delay before an invocation that failed is retried.

In a cluster (``gate`` set, events/owned_durable.py) an execution is driven only by the node
that holds its shard's claim: ``start`` resumes nothing, the claim's holder ``resume``s the
shard's running executions and ``halt``s them when it loses it, and a change another node made
to an execution (it began it, a callback settled, a stop) reaches the holder through the
store's change feed (``heard_stored``), which wakes its driver there, and every node's
``wait_end`` on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from lambdad import errors
from lambdad.control import durable_chained, durable_pause
from lambdad.control.arns import Scope
from lambdad.control.changes import Change, FunctionDeleted
from lambdad.control.durable import Doc, DurableExecutions, Settle, next_due, token_of
from lambdad.control.functions import Functions
from lambdad.control.model import FunctionConfig
from lambdad.events.durable_chained import ChainedInvokes
from lambdad.invoke.service import InvocationType, Invoker, InvokeRequest
from lambdad.observe.request_ids import new_request_id
from lambdad.store.base import Key, StoreChange, Table

log = logging.getLogger(__name__)

#: How many times an invocation that crashed or could not run is tried before the execution
#: fails (AWS retries such invocations too; its count is not documented).
MAX_ATTEMPTS = 3
#: Seconds a hand-over to another node (``halt``) waits for invocations under way here.
HALT_WAIT = 10.0
#: The operations handed in the invocation's input; the SDK pages for the rest.
INPUT_OPERATIONS = 1000


#: How often ``until_idle`` looks at the execution again (an invocation's end also wakes it).
IDLE_CHECK = 30.0
#: How long a synchronous invocation waits for its execution (Lambda's 15 minutes).
SYNC_LIMIT = 900.0


def answer_of(doc: Doc) -> tuple[bytes, bool]:
    """What a synchronous invoke of an execution answers: its result, or (failed, stopped,
    timed out, or still running past the synchronous limit) the error as a function error's
    ``{"errorType", "errorMessage"}``; and whether it is an error."""
    if doc["status"] == "SUCCEEDED":
        return (doc["result"] or "null").encode(), False
    error = doc["error"] or {
        "ErrorType": doc["status"],
        "ErrorMessage": f"Execution {doc['status']}",
    }
    body = {"errorType": error.get("ErrorType"), "errorMessage": error.get("ErrorMessage")}
    return json.dumps(body).encode(), True


class Ran(enum.Enum):
    """How one invocation of an execution went."""

    DONE = "done"  # the handler answered SUCCEEDED, FAILED or PENDING
    FAILED = "failed"  # it crashed, timed out, answered nonsense, or could not run
    THROTTLED = "throttled"  # no concurrency was left: it did not run (tried again, uncounted)


class EngineState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class DurableEngine:
    """Drives every running durable execution of this lambdad to its end."""

    def __init__(
        self,
        executions: DurableExecutions,
        functions: Functions,
        invoker: Invoker,
        retry_delay: float = 1.0,
        sweep_interval: float = 3600.0,
    ) -> None:
        self.executions = executions
        self._functions = functions
        self._invoker = invoker
        self._retry_delay = retry_delay
        #: How often executions past their retention are deleted.
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        self._drivers: dict[Key, asyncio.Task[None]] = {}
        self._ended: dict[Key, asyncio.Event] = {}
        #: Set when something of a sleeping execution changed (a stop): its driver looks again.
        self._changed: dict[Key, asyncio.Event] = {}
        #: Executions woken while their driver was busy: it looks again before it stops.
        self._poked: set[Key] = set()
        #: Set when an invocation of the execution ends (``until_idle``).
        self._idle: dict[Key, asyncio.Event] = {}
        #: The chained invokes under way (events/durable_chained.py).
        self.chained = ChainedInvokes(self)
        #: In a cluster: whether this node drives an execution (holds its shard's claim).
        self.gate: Callable[[Key], bool] | None = None
        self._feed: set[asyncio.Task[None]] = set()
        #: Executions whose handler this node is invoking now.
        self._invoking: set[Key] = set()
        self.state = EngineState.NEW
        functions.changes.subscribe(self._function_changed)

    @property
    def functions(self) -> Functions:
        return self._functions

    @property
    def invoker(self) -> Invoker:
        return self._invoker

    @property
    def retry_delay(self) -> float:
        """Seconds before an invocation that failed or was throttled is tried again."""
        return self._retry_delay

    async def _function_changed(self, change: Change) -> None:
        """A deleted function's executions are gone from the store: forget their kept
        documents, so no checkpoint of a running one writes it back."""
        if isinstance(change, FunctionDeleted) and change.qualifier is None:
            self.executions.forget(change.scope.key(change.name))

    async def start(self) -> None:
        """Resume every execution that had not ended when lambdad last stopped (in a cluster:
        none; the shards' holders ``resume`` theirs)."""
        self.state = EngineState.RUNNING
        if self.gate is None:
            await self.drive(lambda key: True)
        self._sweeper = asyncio.create_task(self._sweep(), name="durable-retention")

    async def drive(self, which: Callable[[Key], bool]) -> None:
        """Drive the running executions ``which`` selects (their chained invokes too)."""
        for key, _ in await self.executions.running():
            if which(key):
                self._drive(key)
                doc = await self.executions.get_key(key)
                if doc is not None:
                    self.chained.launch(key, doc)

    async def halt(self, which: Callable[[Key], bool]) -> None:
        """Stop driving the executions ``which`` selects (another node drives them next; the
        gate says no more for them): a driver between invocations stops at once, one whose
        handler runs stops when it returns (within ``HALT_WAIT`` seconds), so the next node
        does not replay an invocation still under way here."""
        chosen = [(key, task) for key, task in list(self._drivers.items()) if which(key)]
        running = [task for key, task in chosen if key in self._invoking]
        for key, task in chosen:
            if key not in self._invoking:
                task.cancel()
        if running:
            await asyncio.wait(running, timeout=HALT_WAIT)
        for _, task in chosen:
            task.cancel()
        await asyncio.gather(*(task for _, task in chosen), return_exceptions=True)

    def heard_stored(self, change: StoreChange) -> None:
        """A change another node made: the executions it names are looked at again here (the
        driver, if this node drives them; whoever waits for their end)."""
        if self.state is not EngineState.RUNNING or self.gate is None:
            return
        if change.table not in (None, Table.DURABLE_EXECUTIONS):
            return
        task = asyncio.get_running_loop().create_task(self._heard_stored(change))
        self._feed.add(task)
        task.add_done_callback(self._feed.discard)

    async def _heard_stored(self, change: StoreChange) -> None:
        gate = self.gate
        if gate is None:
            return
        if change.table is None or change.prefix:
            keys = [key for key, _ in await self.executions.running()]
            keys += [key for key in self._ended if key not in keys]
        else:
            keys = [tuple(change.key)]
        for key in keys:
            if gate(key):
                self.wake(key)
            ended = self._ended.get(key)
            if ended is not None:
                doc = await self.executions.record(key)
                if doc is None or doc["status"] != "RUNNING":
                    # Forgotten once set: an execution of the same name begun later (its
                    # function deleted and made again) is waited for afresh.
                    if self._ended.get(key) is ended:
                        del self._ended[key]
                    ended.set()

    async def close(self) -> None:
        """Stop the drivers (their executions resume at the next start). Idempotent."""
        self.state = EngineState.CLOSED
        for task in list(self._feed):
            task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.chained.close()
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        self._drivers.clear()

    async def _sweep(self) -> None:
        """Delete the executions past their retention now and every ``sweep_interval``."""
        while True:
            try:
                gone = await self.executions.expire()
            except Exception:  # a store hiccup: try again at the next sweep
                log.exception("durable executions: retention sweep failed")
            else:
                if gone:
                    log.info("durable executions: %d past their retention deleted", gone)
            await asyncio.sleep(self._sweep_interval)

    async def begin(
        self, scope: Scope, config: FunctionConfig, name: str | None, payload: bytes
    ) -> Doc:
        """Start the execution ``name`` of ``config`` (or find it: the same name and payload)."""
        doc, created = await self.executions.start(scope, config, name, payload)
        key = scope.key(config.name, doc["name"])
        if created:
            log.info("durable execution %s started", doc["arn"])
        if doc["status"] == "RUNNING":
            self._drive(key)
        return doc

    async def start_execution(
        self, scope: Scope, config: FunctionConfig, payload: bytes, name: str | None
    ) -> str:
        """``DurableStarter``: an execution started by another invoker (InvokeAsync, a
        mapping, a schedule, a URL); its ARN."""
        doc = await self.begin(scope, config, name, payload)
        return str(doc["arn"])

    async def run_execution(
        self, scope: Scope, config: FunctionConfig, payload: bytes
    ) -> tuple[str, bytes, bool]:
        """``DurableStarter``: start an execution and answer its end (within ``SYNC_LIMIT``)."""
        doc = await self.begin(scope, config, None, payload)
        doc = await self.wait_end(scope, doc, SYNC_LIMIT)
        body, failed = answer_of(doc)
        return str(doc["arn"]), body, failed

    async def wait_end(self, scope: Scope, doc: Doc, timeout: float) -> Doc:
        """The execution once it has ended, or as it is after ``timeout`` seconds."""
        key = scope.key(doc["function"], doc["name"])
        ended = self._ended.setdefault(key, asyncio.Event())
        current = await self.executions.record(key)
        if current is not None and current["status"] != "RUNNING":
            return current
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), timeout)
        return await self.executions.record(key) or doc

    async def stop(self, scope: Scope, arn: str, error: Any) -> Doc:
        """StopDurableExecution: the execution ends ``STOPPED``, its driver stops sleeping, and
        the durable child executions its open chained invokes started are stopped with it
        ("any in-progress operations are terminated"; the caller's history ends with
        ``ExecutionStopped``, no ``ChainedInvokeStopped`` after it)."""
        doc = await self.executions.stop(scope, arn, error)
        self.wake(scope.key(doc["function"], doc["name"]))
        ended = (errors.InvalidParameterValueException, errors.ResourceNotFoundException)
        for child in durable_chained.open_children(doc):
            with contextlib.suppress(*ended):  # the child has ended or is gone already
                await self.stop(scope, child, error)
        return doc

    async def pause(
        self,
        scope: Scope,
        arn: str,
        reason: str | None,
        timeout_paused: bool | None,
        client_token: str | None,
    ) -> Doc:
        """PauseDurableExecution: the execution is held (``durable_pause``); its driver looks
        at it again."""
        doc = await self.executions.pause(scope, arn, reason, timeout_paused, client_token)
        self.wake(scope.key(doc["function"], doc["name"]))
        return doc

    async def resume(
        self, scope: Scope, arn: str, reason: str | None, client_token: str | None
    ) -> Doc:
        """ResumeDurableExecution: the execution runs again; its driver invokes the handler
        when the pause cut an invocation short or something ended meanwhile, else waits on."""
        doc = await self.executions.resume(scope, arn, reason, client_token)
        self.wake(scope.key(doc["function"], doc["name"]))
        return doc

    async def checkpoint(
        self,
        scope: Scope,
        arn: str,
        token: str,
        updates: list[dict[str, Any]],
        client_token: str | None,
    ) -> dict[str, Any]:
        """CheckpointDurableExecution (``DurableExecutions.checkpoint``); a chained invoke it
        starts is launched. A durable target's child execution is created only once the
        checkpoint's token and batch have passed their checks."""
        chained = any(update["Type"] == "CHAINED_INVOKE" for update in updates)
        if chained:
            first = await self.executions.check(scope, arn, token, updates, client_token)
            if first is not None:  # retried with its client token: answered already
                return first
            updates = await self.chained.resolve(scope, arn, updates)
        answer = await self.executions.checkpoint(scope, arn, token, updates, client_token)
        if chained:
            key = self.executions.key_of(scope, arn)
            doc = await self.executions.get_key(key)
            if doc is not None:
                self.chained.launch(key, doc)
        return answer

    async def settle(self, key: Key, change: Settle) -> Doc:
        """Apply ``change`` to the execution (a callback or a chained invoke ended) and wake
        its driver: the handler is invoked again to see it."""
        doc = await self.executions.settle(key, change)
        if doc.get("woken"):
            self.wake(key)
        return doc

    async def until_idle(self, key: Key) -> None:
        """Return once no invocation of the execution is under way (at once when none is)."""
        while True:
            idle = self._idle.setdefault(key, asyncio.Event())
            doc = await self.executions.record(key)
            if doc is None or not doc["invoking"] or self.state is not EngineState.RUNNING:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle.wait(), IDLE_CHECK)

    def _ended_invocation(self, key: Key) -> None:
        idle = self._idle.pop(key, None)
        if idle is not None:
            idle.set()

    def wake(self, key: Key) -> None:
        """Something of the execution changed: its driver looks at it now."""
        self._poked.add(key)
        changed = self._changed.get(key)
        if changed is not None:
            changed.set()
        self._drive(key)

    def _drive(self, key: Key) -> None:
        if self.state is not EngineState.RUNNING:
            return
        if self.gate is not None and not self.gate(key):
            return  # another node drives it: it hears of the change through the feed
        task = self._drivers.get(key)
        if task is not None and not task.done():
            return
        task = asyncio.create_task(self._run(key), name=f"durable-{key[-1]}")
        self._drivers[key] = task
        task.add_done_callback(lambda t: self._done(key, t))

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        if self._drivers.get(key) is task:
            del self._drivers[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("durable execution driver %s failed", key, exc_info=task.exception())

    async def _run(self, key: Key) -> None:
        """Drive the execution until it ends: invoke its handler, sleep until its next timer
        (or, waiting for nothing timed, a callback or a chained invoke, until its execution
        timeout; ``wake`` cuts a sleep short)."""
        failures = 0
        handed_over = False
        while True:
            if self.gate is not None and not self.gate(key):
                handed_over = True  # another node drives it now: its end is not this driver's
                break
            self._poked.discard(key)  # what the document read next shows
            doc = await self.executions.get_key(key)
            if doc is not None and durable_pause.held(doc):
                doc = await self.executions.hold(key)
            if doc is None or doc["status"] != "RUNNING":
                break
            now = time.time()
            deadline = durable_pause.deadline(doc)
            if now >= deadline:
                await self.executions.finish(key, "TIMED_OUT")
                break
            due = next_due(doc)
            if durable_pause.held(doc):  # paused: nothing is invoked until it is resumed
                await self._sleep(key, min(due or deadline, deadline) - now)
                continue
            idle = doc["seq"] > 0 and not doc["invoking"] and not doc.get("woken")
            if idle and due is not None and due > now:
                await self._sleep(key, min(due, deadline) - now)
                continue
            if idle and doc.get("answered") and _stalled(doc) and key not in self._poked:
                # Its handler answered PENDING and nothing has ended since: a callback or a
                # chained invoke wakes it; its timeout ends it.
                await self._sleep(key, deadline - now)
                continue
            self._invoking.add(key)
            try:
                ran = await self._invoke_once(key)
            finally:
                self._invoking.discard(key)
            if ran is Ran.THROTTLED:
                await self._sleep(key, self._retry_delay)  # not a failure: it never ran
            elif ran is Ran.FAILED:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    error = {
                        "ErrorType": "Lambda.InvocationFailed",
                        "ErrorMessage": f"{MAX_ATTEMPTS} invocations of the handler failed",
                    }
                    await self.executions.finish(key, "FAILED", error=error)
                    break
                await self._sleep(key, self._retry_delay)
            else:
                failures = 0
        self._poked.discard(key)
        self._ended_invocation(key)
        if not handed_over:
            event = self._ended.pop(key, None)
            if event is not None:
                event.set()

    async def _sleep(self, key: Key, seconds: float) -> None:
        """Sleep ``seconds``, or less when the execution is woken (``wake``; not at all when it
        was woken since the driver last read it)."""
        if key in self._poked:
            return
        changed = self._changed.setdefault(key, asyncio.Event())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), seconds)
        finally:
            self._changed.pop(key, None)

    async def _invoke_once(self, key: Key) -> Ran:
        """One invocation of the execution's handler."""
        doc = await self.executions.begin_invocation(key)
        if doc is None:
            return Ran.DONE
        scope = Scope(key[0], key[1])
        started, request_id = time.time(), new_request_id()
        try:
            config = await self._functions.resolve(scope, doc["function"], doc["version"])
            outcome = await self._invoker.run(scope, config, _request(doc), request_id)
        except errors.TooManyRequestsException:
            await self.executions.end_invocation(key, started, request_id, record=False)
            self._ended_invocation(key)
            return Ran.THROTTLED
        except errors.LambdaError as exc:
            log.warning("durable execution %s: invocation not run: %s", doc["arn"], exc)
            error = {"ErrorType": exc.code, "ErrorMessage": exc.message}
            await self.executions.end_invocation(key, started, request_id, error)
            self._ended_invocation(key)
            return Ran.FAILED
        answer = _answer(outcome.payload) if not outcome.function_error else None
        failure: dict[str, str] | None = None
        if answer is None:
            log.warning("durable execution %s: invocation %s failed", doc["arn"], request_id)
            failure = _failure(outcome.payload, outcome.error_type)
        await self.executions.end_invocation(key, started, request_id, failure)
        self._ended_invocation(key)
        if answer is None:
            return Ran.FAILED
        status = answer.get("Status")
        if status == "SUCCEEDED":
            await self.executions.finish(key, "SUCCEEDED", result=answer.get("Result"))
        elif status == "FAILED":
            await self.executions.finish(key, "FAILED", error=answer.get("Error"))
        return Ran.DONE


def _stalled(doc: Doc) -> bool:
    """A PENDING execution with nothing timed to wait for."""
    return (
        not doc["invoking"]
        and not doc.get("woken")
        and next_due(doc) is None
        and not any(op["Status"] == "READY" for op in doc["ops"])
    )


def _request(doc: Doc) -> InvokeRequest:
    ops = doc["ops"]
    state: dict[str, Any] = {"Operations": ops[:INPUT_OPERATIONS]}
    if len(ops) > INPUT_OPERATIONS:
        state["NextMarker"] = str(INPUT_OPERATIONS)
    payload = {
        "DurableExecutionArn": doc["arn"],
        "CheckpointToken": token_of(doc),
        "InitialExecutionState": state,
    }
    return InvokeRequest(
        function_name=doc["function"],
        qualifier=doc["version"],
        payload=json.dumps(payload).encode(),
        invocation_type=InvocationType.REQUEST_RESPONSE,
    )


def _failure(payload: bytes, error_type: str | None) -> dict[str, str]:
    """The error of an invocation that did not answer: the runtime's own error object
    (``{"errorType", "errorMessage"}``) when it sent one, else the answer's text."""
    text = payload.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errorMessage"), str):
        kind = body.get("errorType")
        return {
            "ErrorType": kind if isinstance(kind, str) else error_type or "Runtime.Unknown",
            "ErrorMessage": body["errorMessage"][:1024],
        }
    return {"ErrorType": error_type or "Runtime.InvalidResponse", "ErrorMessage": text[:1024]}


def _answer(payload: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("Status") not in (
        "SUCCEEDED",
        "FAILED",
        "PENDING",
    ):
        return None
    return answer
