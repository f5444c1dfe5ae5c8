"""Durable executions: their records, checkpoint tokens, operations and history
(docs/durable-functions.md).

One record per execution in ``Table.DURABLE_EXECUTIONS`` under
``(account, region, function, execution name)`` (its state: a header of a few hundred bytes),
one row per operation in ``Table.DURABLE_OPERATIONS`` under that key and the operation's
position (its order of creation), and one row per history event in ``Table.DURABLE_EVENTS``
under that key and the event's id. Every change of one execution is made under its lock (one
lambdad process owns its executions), then written: the record, the operations it changed and
the new events, in one transaction, so a checkpoint's write does not grow with the execution.
While an invocation of an execution is under way its document is also kept in memory, written
through: the changes of that invocation (its checkpoints, its end) read it from there, not
from the store.

A checkpoint token names the execution's invocation and a sequence number: each invocation the
engine starts and each accepted checkpoint advance it, so a token of an earlier invocation or
of a superseded checkpoint is refused ("Invalid checkpoint token"), except that a checkpoint
retried with the same client token and checkpoint token gets the answer it got the first time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, TypeVar

from lambdad import errors
from lambdad.control import (
    durable_callbacks,
    durable_chained,
    durable_checks,
    durable_ops,
    durable_pause,
)
from lambdad.control.arns import Scope
from lambdad.control.model import FunctionConfig
from lambdad.store.base import Key, Store, StoreChange, StoreConflict, Table, Write

Doc = dict[str, Any]
T = TypeVar("T")
#: How many times a change of an execution is made again when another node wrote the
#: execution between its read and its save (``DurableExecutions._changing``).
CONFLICT_ATTEMPTS = 20
#: A change made to an execution from outside its handler (``DurableExecutions.settle``).
Settle = Callable[[Doc, dict[str, Any], float], list[durable_callbacks.Event]]

_ARN = re.compile(
    r"arn:([a-zA-Z0-9-]+):lambda:([a-zA-Z0-9-]+):(\d{12}):function:([a-zA-Z0-9_-]+):"
    r"(\$LATEST(?:\.PUBLISHED)?|[0-9]+)/durable-execution/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)"
)
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")
INVALID_TOKEN = "Invalid checkpoint token"
#: The SDK local runner's words for an execution that does not exist.
NOT_FOUND = "Durable Execution does not exist"


def token_of(doc: Doc) -> str:
    """The execution's current checkpoint token."""
    return base64.b64encode(f"{doc['invocation_id']}:{doc['seq']}".encode()).decode()


def _seq_of(doc: Doc, token: str) -> int | None:
    """The sequence number ``token`` carries, if it is a token of this execution."""
    try:
        text = base64.b64decode(token, validate=True).decode()
    except ValueError:
        return None
    owner, _, seq = text.rpartition(":")
    if owner != doc["invocation_id"] or not seq.isdigit():
        return None
    return int(seq)


class DurableExecutions:
    """The durable executions of every account, and what CheckpointDurableExecution,
    GetDurableExecutionState and the engine do to them."""

    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, *, conditional: bool = True
    ) -> None:
        self._store = store
        self._clock = clock
        #: Whether saves are conditional on the revision read (``_save``): needed where other
        #: processes write the same store (a cluster's PostgreSQL); one process alone on its
        #: SQLite file changes an execution only under its lock, and the condition would cost
        #: a transaction per checkpoint (docs/durable-functions.md).
        self._conditional = conditional
        self._locks: dict[Key, asyncio.Lock] = {}
        #: The documents of the executions with an invocation under way on this lambdad, as
        #: last written (write-through): a checkpoint reads none from the store.
        self._live: dict[Key, Doc] = {}

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _editing(self, key: Key) -> AsyncIterator[None]:
        """Hold the execution's lock for a change; a change that fails part-way (a refused
        update, a store error) drops the kept document, so the next one reads the store."""
        async with self._lock(key):
            try:
                yield
            except BaseException:
                self._live.pop(key, None)
                raise

    async def _changing(self, key: Key, edit: Callable[[], Awaitable[T]]) -> T:
        """Run ``edit`` (a read, a change and its ``_save``) under the execution's lock. A save
        refused because another node wrote the execution since it was read (``StoreConflict``:
        its revision moved on) drops the kept document and runs ``edit`` again on the store's,
        so the other node's change is never overwritten: a checkpoint after a stop finds the
        execution stopped, a stop after a checkpoint still stops. Whatever else fails drops the
        kept document too (``_editing``)."""
        async with self._lock(key):
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await edit()
                except StoreConflict:
                    self._live.pop(key, None)
                    if attempt == CONFLICT_ATTEMPTS:
                        raise errors.ResourceConflictException(
                            "The durable execution was changed concurrently; try again."
                        ) from None
                except BaseException:
                    self._live.pop(key, None)
                    raise
        raise AssertionError("unreachable")

    async def _read(self, key: Key) -> Doc | None:
        """The execution, from memory while an invocation of it is under way here."""
        live = self._live.get(key)
        if live is not None:
            return live
        return await self._stored(key)

    async def _stored(self, key: Key, *, history: bool = True) -> Doc | None:
        """The execution as stored: its record, its operations from their rows and (with
        ``history``) its history from its rows (a document written before operations or
        events had rows of their own keeps them inside)."""
        doc = await self._store.get(Table.DURABLE_EXECUTIONS, key)
        if doc is None:
            return None
        if "ops" in doc:
            doc[_OP_ROWS] = 0  # its next change writes every operation as a row
        else:
            rows = await self._store.scan(Table.DURABLE_OPERATIONS, key)
            doc["ops"] = [op for _, op in rows]
            doc[_OP_ROWS] = len(rows)
        if "input" not in doc:
            doc["input"] = _input_of(doc["ops"][0] if doc["ops"] else {})
        if not history:
            return doc
        if "history" in doc:
            doc[_EVENT_ROWS] = 0
        else:
            rows = await self._store.scan(Table.DURABLE_EVENTS, key)
            doc["history"] = [event for _, event in rows]
            doc[_EVENT_ROWS] = len(rows)
        return doc

    async def _load(self, key: Key, arn: str | None = None) -> Doc:
        """The execution at ``key`` (ResourceNotFoundException without one, or when ``arn``,
        the ARN a caller gave, is not its ARN: an old execution's id after a name was used
        again, or an id never issued)."""
        doc = await self._read(key)
        if doc is None or (arn is not None and doc["arn"] != arn):
            raise errors.ResourceNotFoundException(NOT_FOUND)
        return doc

    async def _save(
        self, key: Key, doc: Doc, changed: Collection[str] | None = None, *, create: bool = False
    ) -> None:
        """Write the execution (durable before anything answers): its record, the operations
        new or ``changed`` (their ids; None: every one) and the events not yet stored, in one
        transaction; keep it in memory while an invocation of it is under way.

        The record's ``rev`` goes up by one at every save, and (``conditional``) the save
        expects the revision it read (``create``: that there is none): StoreConflict when
        another node wrote the execution meanwhile (``_changing`` then reads it again)."""
        history = doc["history"]
        stored = doc.get(_EVENT_ROWS, 0)
        read = doc.get("rev")  # None: new, or stored before records had revisions
        record = {k: v for k, v in doc.items() if k not in _NOT_IN_RECORD}
        record["rev"] = (read or 0) + 1
        if not self._conditional:
            writes = [Write(Table.DURABLE_EXECUTIONS, key, record)]
        elif create:
            writes = [Write(Table.DURABLE_EXECUTIONS, key, record, create=True)]
        else:
            writes = [Write(Table.DURABLE_EXECUTIONS, key, record, expect=("rev", read))]
        ops = doc["ops"]
        writes += [
            Write(Table.DURABLE_OPERATIONS, (*key, _position_key(at)), ops[at])
            for at in _rows_to_write(doc, changed)
        ]
        writes += [
            Write(Table.DURABLE_EVENTS, (*key, _event_key(event["EventId"])), event)
            for event in history[stored:]
        ]
        await self._store.write(writes)
        doc["rev"] = record["rev"]
        doc[_EVENT_ROWS] = len(history)
        doc[_OP_ROWS] = len(ops)
        if doc["invoking"] and doc["status"] == "RUNNING":
            self._live[key] = doc
        else:
            self._live.pop(key, None)

    def forget(self, prefix: Key) -> None:
        """Drop the kept documents under ``prefix`` (their rows were deleted or changed
        elsewhere: the next change reads the store)."""
        for key in [k for k in self._live if k[: len(prefix)] == prefix]:
            del self._live[key]

    def forget_stored(self, change: StoreChange) -> None:
        """Drop the kept documents another node's write (``Store.subscribe``) may have made
        stale."""
        if change.table in (None, Table.DURABLE_EXECUTIONS):
            for key in [k for k in self._live if change.covers(Table.DURABLE_EXECUTIONS, k)]:
                del self._live[key]

    def key_of(self, scope: Scope, arn: str) -> Key:
        """The store key of the execution ``arn`` names (ResourceNotFoundException when it
        names none of this scope)."""
        found = _ARN.fullmatch(arn)
        if found is None or (found[2], found[3]) != (scope.region, scope.account_id):
            raise errors.ResourceNotFoundException(NOT_FOUND)
        return scope.key(found[4], found[6])

    # ------------------------------------------------------------------ start and read

    async def start(
        self, scope: Scope, config: FunctionConfig, name: str | None, payload: bytes
    ) -> tuple[Doc, bool]:
        """The execution ``name`` of the function (a new one, or, for a name already used with
        the same payload, the existing one: ``(doc, False)``).
        DurableExecutionAlreadyStartedException for a used name with another payload."""
        name = name or str(uuid.uuid4())
        key = scope.key(config.name, name)
        text = payload.decode("utf-8", "replace") if payload else "{}"

        async def edit() -> tuple[Doc, bool]:
            old = await self._read(key)
            if old is not None:
                if old["input"] != text:
                    raise errors.DurableExecutionAlreadyStartedException(
                        f"Durable execution with name {name} already exists with a different "
                        "payload."
                    )
                return old, False
            doc = self._new(scope, config, name, text)
            await self._save(key, doc, create=True)
            return doc, True

        return await self._changing(key, edit)

    def _new(self, scope: Scope, config: FunctionConfig, name: str, text: str) -> Doc:
        now = self._clock()
        invocation_id = uuid.uuid4().hex
        arn = (
            f"{scope.function_arn(config.name, config.version)}/durable-execution/"
            f"{name}/{invocation_id}"
        )
        execution_op = {
            "Id": invocation_id,
            "Type": "EXECUTION",
            "StartTimestamp": now,
            "Status": "STARTED",
            "ExecutionDetails": {"InputPayload": text},
        }
        timeout = config.durable_execution_timeout or 86400
        doc: Doc = {
            "arn": arn,
            "name": name,
            "function": config.name,
            "function_arn": scope.function_arn(config.name, config.version),
            "version": config.version,
            "invocation_id": invocation_id,
            "input": text,
            "status": "RUNNING",
            "start": now,
            "end": None,
            "result": None,
            "error": None,
            "seq": 0,
            "invocation_seq": 0,
            "invoking": False,
            "ops": [execution_op],
            "history": [],
            "timeout": timeout,
            "deadline": now + timeout,
            "retention_days": config.durable_retention_days,
            "last_checkpoint": None,
            #: Open callbacks' timers (durable_callbacks).
            "callbacks": {},
            #: Something the handler has not seen ended (a callback, a chained invoke): invoke
            #: it again even when nothing is timed. Cleared when an invocation begins.
            "woken": False,
        }
        details = {"Input": durable_ops.data(text), "ExecutionTimeout": timeout}
        _record(doc, "ExecutionStarted", execution_op, now, details)
        return doc

    async def get(self, scope: Scope, arn: str) -> Doc:
        """The execution as stored (never a change not yet durable)."""
        doc = await self._stored(self.key_of(scope, arn))
        if doc is None or doc["arn"] != arn:
            raise errors.ResourceNotFoundException(NOT_FOUND)
        if expired(doc, self._clock()):
            raise errors.ResourceNotFoundException(NOT_FOUND)
        return doc

    async def describe(self, scope: Scope, arn: str) -> Doc:
        """The execution's stored record and its input, without its operations or history
        (GetDurableExecution)."""
        key = self.key_of(scope, arn)
        doc = await self._header(key, arn)
        if "input" not in doc:
            first = await self._store.get(Table.DURABLE_OPERATIONS, (*key, _position_key(0)))
            doc["input"] = _input_of(first or {})
        return doc

    async def _header(self, key: Key, arn: str) -> Doc:
        """The execution's stored record alone (ResourceNotFoundException as ``get``)."""
        doc = await self._store.get(Table.DURABLE_EXECUTIONS, key)
        if doc is None or doc["arn"] != arn or expired(doc, self._clock()):
            raise errors.ResourceNotFoundException(NOT_FOUND)
        return doc

    async def get_key(self, key: Key) -> Doc | None:
        """The execution as stored: its record and operations (without its history)."""
        return await self._stored(key, history=False)

    async def record(self, key: Key) -> Doc | None:
        """The execution's stored record alone: its state, without operations or history."""
        return await self._store.get(Table.DURABLE_EXECUTIONS, key)

    async def of_function(self, scope: Scope, function: str) -> list[Doc]:
        """The function's executions, oldest first (their records, without history)."""
        rows = await self._store.scan(Table.DURABLE_EXECUTIONS, scope.key(function))
        now = self._clock()
        kept = (doc for _, doc in rows if not expired(doc, now))
        return sorted(kept, key=lambda d: (d["start"], d["name"]))

    async def expire(self) -> int:
        """Delete every execution that ended more than its ``RetentionPeriodInDays`` ago (AWS:
        it is gone then); how many were deleted."""
        now = self._clock()
        gone = 0
        for key, doc in await self._store.scan(Table.DURABLE_EXECUTIONS):
            if expired(doc, now):
                async with self._editing(key):
                    await self._delete(key)
                self._locks.pop(key, None)
                gone += 1
        return gone

    async def running(self) -> list[tuple[Key, Doc]]:
        """Every execution of every account that has not ended (what the engine resumes; their
        records, without history)."""
        rows = await self._store.scan(Table.DURABLE_EXECUTIONS)
        return [(key, doc) for key, doc in rows if doc["status"] == "RUNNING"]

    # ------------------------------------------------------------------ the engine's side

    async def begin_invocation(self, key: Key) -> Doc | None:
        """Ready the execution for its next invocation: end what is due, and issue the
        invocation's checkpoint token. None when it has ended (or is gone) or is paused."""

        async def edit() -> Doc | None:
            doc = await self._read(key)
            if doc is None or doc["status"] != "RUNNING" or durable_pause.held(doc):
                return None
            changed = _end_due(doc, self._clock())
            doc["woken"] = False
            doc["seq"] += 1
            doc["invocation_seq"] = doc["seq"]
            doc["invoking"] = True
            await self._save(key, doc, changed)
            return doc

        return await self._changing(key, edit)

    async def end_invocation(
        self, key: Key, started: float, request_id: str, error: Any = None, *, record: bool = True
    ) -> Doc | None:
        """The invocation ended (``InvocationCompleted``, unless not ``record``: one that never
        ran): its tokens stop working. Returns the execution as it is."""

        async def edit() -> Doc | None:
            doc = await self._read(key)
            if doc is None:
                return None
            doc["invoking"] = False
            doc["seq"] += 1
            #: The handler ran and answered (its PENDING waits on its operations); one that
            #: crashed or never ran (throttled) is invoked again.
            doc["answered"] = record and error is None
            details: Doc = {
                "StartTimestamp": started,
                "EndTimestamp": self._clock(),
                "RequestId": request_id,
                "Error": durable_ops.data(error),
            }
            execution = _ops(doc)[doc["invocation_id"]]
            if record:
                _record(doc, "InvocationCompleted", execution, details["EndTimestamp"], details)
            if durable_pause.pausing(doc):  # paused at the invocation's end
                now = details["EndTimestamp"]
                for op, event_type, shown in durable_pause.reach(
                    doc, execution, now, interrupted=True
                ):
                    _record(doc, event_type, op, now, shown)
            await self._save(key, doc, ())  # its events change no operation
            return doc

        return await self._changing(key, edit)

    async def finish(
        self, key: Key, status: str, result: str | None = None, error: Any = None
    ) -> Doc | None:
        """End the execution with ``status`` (a no-op once it has ended)."""

        async def edit() -> Doc | None:
            doc = await self._read(key)
            if doc is None or doc["status"] != "RUNNING":
                return doc
            _end(doc, status, result, error, self._clock())
            await self._save(key, doc, (doc["invocation_id"],))
            return doc

        return await self._changing(key, edit)

    async def settle(self, key: Key, change: Settle) -> Doc:
        """Apply ``change`` to the execution under its lock (an operation that ended outside
        the handler: a callback, a chained invoke), record the events it returns and mark the
        execution ``woken`` when there are any. ResourceNotFoundException when it is gone;
        whatever ``change`` raises leaves it as it was."""

        async def edit() -> Doc:
            doc = await self._load(key)
            now = self._clock()
            ops = _ops(doc)
            events = change(doc, ops, now)
            for op, event_type, details in events:
                _record(doc, event_type, op, now, details)
            _synced(doc, ops)
            if events:
                doc["woken"] = True
            await self._save(key, doc)
            return doc

        return await self._changing(key, edit)

    async def stop(self, scope: Scope, arn: str, error: Any) -> Doc:
        """StopDurableExecution: a running execution ends ``STOPPED``; an ended one is
        InvalidParameterValueException (AWS refuses to stop what has ended)."""
        key = self.key_of(scope, arn)

        async def edit() -> Doc:
            doc = await self._load(key, arn)
            if doc["status"] != "RUNNING":
                raise errors.InvalidParameterValueException(
                    f"Durable execution {arn} has already ended: {doc['status']}"
                )
            _end(doc, "STOPPED", None, error, self._clock())
            await self._save(key, doc, (doc["invocation_id"],))
            return doc

        return await self._changing(key, edit)

    async def pause(
        self,
        scope: Scope,
        arn: str,
        reason: str | None,
        timeout_paused: bool | None,
        client_token: str | None,
    ) -> Doc:
        """PauseDurableExecution (``durable_pause.request``)."""
        key = self.key_of(scope, arn)

        async def edit() -> Doc:
            doc = await self._load(key, arn)
            now = self._clock()
            execution = _ops(doc)[doc["invocation_id"]]
            asked = (reason, timeout_paused, client_token)
            for op, event_type, details in durable_pause.request(doc, execution, *asked, now):
                _record(doc, event_type, op, now, details)
            await self._save(key, doc)
            return doc

        return await self._changing(key, edit)

    async def resume(
        self, scope: Scope, arn: str, reason: str | None, client_token: str | None
    ) -> Doc:
        """ResumeDurableExecution (``durable_pause.resume``)."""
        key = self.key_of(scope, arn)

        async def edit() -> Doc:
            doc = await self._load(key, arn)
            now = self._clock()
            execution = _ops(doc)[doc["invocation_id"]]
            for op, event_type, details in durable_pause.resume(
                doc, execution, reason, client_token, now
            ):
                _record(doc, event_type, op, now, details)
            await self._save(key, doc)
            return doc

        return await self._changing(key, edit)

    async def hold(self, key: Key) -> Doc | None:
        """What a paused execution does while no invocation of it runs: end its waits, step
        retries and callback timeouts that are due (``woken`` when any did, so the resume
        invokes the handler), and pause one still ``PAUSING`` whose invocation was cut off by
        a restart. The execution as it is (None when gone)."""

        async def edit() -> Doc | None:
            doc = await self._read(key)
            if doc is None or not durable_pause.held(doc):
                return doc
            now = self._clock()
            changed = durable_pause.pausing(doc)
            if changed:
                execution = _ops(doc)[doc["invocation_id"]]
                doc["invoking"] = False
                doc["seq"] += 1  # the cut-off invocation's tokens stop working
                for op, event_type, details in durable_pause.reach(
                    doc, execution, now, interrupted=True
                ):
                    _record(doc, event_type, op, now, details)
            if _end_due(doc, now):
                doc["woken"] = changed = True
            if changed:
                await self._save(key, doc)
            return doc

        return await self._changing(key, edit)

    async def delete(self, scope: Scope, arn: str) -> float:
        """DeleteDurableExecution: an execution that has ended is deleted with its history
        (when it was asked). ResourceConflictException for one that has not ended."""
        key = self.key_of(scope, arn)
        async with self._editing(key):
            doc = await self._load(key, arn)
            if doc["status"] == "RUNNING":
                raise errors.ResourceConflictException(
                    f"Cannot delete durable execution {arn} in status "
                    f"{durable_pause.status(doc)}: only an execution that has ended can be "
                    "deleted."
                )
            now = self._clock()
            await self._delete(key)
        self._locks.pop(key, None)
        return now

    async def _delete(self, key: Key) -> None:
        """Delete the execution's record, operations and history (under its lock)."""
        await self._store.delete(Table.DURABLE_EXECUTIONS, key)
        await self._store.delete_prefix(Table.DURABLE_OPERATIONS, key)
        await self._store.delete_prefix(Table.DURABLE_EVENTS, key)
        self._live.pop(key, None)

    # ------------------------------------------------------------------ the SDK's side

    async def checkpoint(
        self,
        scope: Scope,
        arn: str,
        token: str,
        updates: list[dict[str, Any]],
        client_token: str | None,
    ) -> dict[str, Any]:
        """CheckpointDurableExecution: apply ``updates`` under the current token; the answer
        carries the next token and the operations the updates changed."""
        key = self.key_of(scope, arn)

        async def edit() -> dict[str, Any]:
            doc = await self._load(key, arn)
            early = _screen(doc, token, updates, client_token)
            if early is not None:
                return early
            answer = self._apply(doc, updates)
            if durable_pause.pausing(doc):
                # Paused at this checkpoint: its updates are kept, and the answer without a
                # token tells the SDK to end the invocation (PENDING).
                now = self._clock()
                execution = _ops(doc)[doc["invocation_id"]]
                for op, event_type, details in durable_pause.reach(
                    doc, execution, now, interrupted=True
                ):
                    _record(doc, event_type, op, now, details)
                del answer["CheckpointToken"]
            doc["last_checkpoint"] = {
                "client_token": client_token,
                "token": token,
                "answer": answer,
            }
            changed = [op["Id"] for op in answer["NewExecutionState"]["Operations"]]
            if doc["status"] != "RUNNING":
                changed.append(doc["invocation_id"])
            await self._save(key, doc, changed)
            return answer

        return await self._changing(key, edit)

    async def check(
        self,
        scope: Scope,
        arn: str,
        token: str,
        updates: list[dict[str, Any]],
        client_token: str | None,
    ) -> dict[str, Any] | None:
        """What ``checkpoint`` would refuse, refused now, changing nothing (the token, the batch
        rules); the first answer again for a checkpoint retried with its client token, else
        None. The engine asks before it creates a chained invoke's child execution."""
        key = self.key_of(scope, arn)
        async with self._lock(key):
            return _screen(await self._load(key, arn), token, updates, client_token)

    def _apply(self, doc: Doc, updates: list[dict[str, Any]]) -> dict[str, Any]:
        now = self._clock()
        ops = _ops(doc)
        changed: dict[str, Any] = {}
        for update in updates:
            if update["Type"] == "EXECUTION":
                update = {**update, "Id": doc["invocation_id"]}
            op = durable_ops.apply(ops, update, now)
            changed[op["Id"]] = op
            event = durable_ops.event_of(update, op)
            if update["Type"] == "CALLBACK":
                event = durable_callbacks.start(doc, op, update, now)[1:]
            elif update["Type"] == "CHAINED_INVOKE":
                event = durable_chained.start(doc, op, update, now)[1:]
            if event is not None:
                _record(doc, event[0], op, now, event[1])
        _synced(doc, ops)
        execution = ops[doc["invocation_id"]]
        if execution["Status"] != "STARTED":
            status = execution["Status"]
            result = next((u.get("Payload") for u in updates if u["Type"] == "EXECUTION"), None)
            error = next((u.get("Error") for u in updates if u["Type"] == "EXECUTION"), None)
            _end(doc, status, result, error, now)
        doc["seq"] += 1
        return {
            "CheckpointToken": token_of(doc),
            "NewExecutionState": {"Operations": list(changed.values())},
        }

    async def state(
        self, scope: Scope, arn: str, token: str, marker: str | None, max_items: int | None
    ) -> dict[str, Any]:
        """GetDurableExecutionState: a page of the operations, for a token of the invocation
        under way (read from their rows: only that page)."""
        key = self.key_of(scope, arn)
        doc = await self._header(key, arn)
        seq = _seq_of(doc, token)
        if not doc["invoking"] or seq is None or not doc["invocation_seq"] <= seq <= doc["seq"]:
            raise errors.InvalidParameterValueException(INVALID_TOKEN)
        if "ops" in doc:  # stored before operations had rows of their own
            return page(doc["ops"], "Operations", marker, max_items)
        return await self._page(Table.DURABLE_OPERATIONS, key, "Operations", marker, max_items)

    async def history(
        self, scope: Scope, arn: str, marker: str | None, max_items: int | None, reverse: bool
    ) -> Doc:
        """GetDurableExecutionHistory's page of events (read from their rows: only that page
        in order; every row in reverse order)."""
        key = self.key_of(scope, arn)
        doc = await self._header(key, arn)
        if "history" in doc or reverse:
            events = doc.get("history")
            if events is None:
                events = [event for _, event in await self._store.scan(Table.DURABLE_EVENTS, key)]
            return page(events[::-1] if reverse else events, "Events", marker, max_items)
        return await self._page(Table.DURABLE_EVENTS, key, "Events", marker, max_items)

    async def _page(
        self, table: Table, key: Key, member: str, marker: str | None, max_items: int | None
    ) -> Doc:
        """``page`` of the rows of ``table`` under ``key``, reading only that page's rows."""
        start, size = _span(marker, max_items)
        rows = await self._store.scan_page(table, key, start, size + 1)
        body: Doc = {member: [item for _, item in rows[:size]]}
        if len(rows) > size:
            body["NextMarker"] = str(start + size)
        return body


def _screen(
    doc: Doc, token: str, updates: list[dict[str, Any]], client_token: str | None
) -> dict[str, Any] | None:
    """A checkpoint's checks before anything is applied: its first answer again when it is
    retried with its client token; no token when its invocation's execution was stopped under
    it; InvalidParameterValueException for a token not current, or a batch the rules refuse
    (``durable_checks``). None: apply it."""
    last = doc["last_checkpoint"]
    if (
        client_token is not None
        and last is not None
        and (last["client_token"], last["token"]) == (client_token, token)
    ):
        return dict(last["answer"])
    if _ended_under(doc, token):
        return _ended_answer()
    if not doc["invoking"] or _seq_of(doc, token) != doc["seq"]:
        raise errors.InvalidParameterValueException(INVALID_TOKEN)
    durable_checks.check_batch(updates, _ops(doc))
    return None


def _ended_answer() -> dict[str, Any]:
    """The answer to a checkpoint of the invocation under way when its execution was stopped:
    no token, nothing applied (the SDK stops checkpointing and ends the invocation PENDING, as
    it does when AWS ends an execution under an invocation)."""
    return {"NewExecutionState": {"Operations": []}}


def _ended_under(doc: Doc, token: str) -> bool:
    """Whether the execution ended (stopped) while the invocation ``token`` belongs to was
    under way: that invocation's end has not advanced the sequence yet."""
    return bool(doc["status"] != "RUNNING" and _seq_of(doc, token) == doc["seq"])


#: How many of a document's history events are stored as rows (kept in memory only).
_EVENT_ROWS = "_event_rows"
#: How many of a document's operations are stored as rows, and each one's position by id
#: (kept in memory only).
_OP_ROWS = "_op_rows"
_OP_POSITIONS = "_op_positions"
#: The operations by id (kept in memory only: ``_ops``).
_OP_INDEX = "_op_index"
#: What of a document is not in the execution's record: rows of their own (operations, events;
#: the input is the execution operation's), or memory only.
_NOT_IN_RECORD = frozenset(
    {"history", "ops", "input", _EVENT_ROWS, _OP_ROWS, _OP_POSITIONS, _OP_INDEX}
)


def _position_key(position: int) -> str:
    """An operation's row key: its position, zero-padded so that rows sort in order."""
    return f"{position:09d}"


def _rows_to_write(doc: Doc, changed: Collection[str] | None) -> list[int]:
    """The positions of the operations a save writes: those not stored yet and those
    ``changed`` (every one when None). Operations are only ever appended, never reordered."""
    ops = doc["ops"]
    stored = doc.get(_OP_ROWS, 0)
    if changed is None:
        return list(range(len(ops)))
    positions: dict[str, int] = doc.setdefault(_OP_POSITIONS, {})
    for at in range(len(positions), len(ops)):
        positions[ops[at]["Id"]] = at
    found = {positions[op_id] for op_id in changed if positions.get(op_id, stored) < stored}
    return sorted(found) + list(range(stored, len(ops)))


def _input_of(execution: dict[str, Any]) -> str:
    """The execution's input: its EXECUTION operation's ``InputPayload``."""
    return str(execution.get("ExecutionDetails", {}).get("InputPayload", "{}"))


def _event_key(event_id: int) -> str:
    """An event's row key: its id, zero-padded so that rows sort in order."""
    return f"{event_id:09d}"


#: AWS's retention when a function's DurableConfig names none.
RETENTION_DAYS = 30


def expired(doc: Doc, now: float) -> bool:
    """Whether the execution ended more than its retention period ago."""
    days = doc.get("retention_days") or RETENTION_DAYS
    return doc["end"] is not None and doc["end"] + days * 86400 <= now


def next_due(doc: Doc) -> float | None:
    """When the execution's next timer is due: a wait's end, a step's retry, a callback's
    timeout (None: nothing is timed)."""
    times = [
        t
        for t in (durable_ops.next_due(_ops(doc)), durable_callbacks.next_due(doc))
        if t is not None
    ]
    return min(times) if times else None


def _span(marker: str | None, max_items: int | None) -> tuple[int, int]:
    """Where a page starts (``marker``, an index) and its size (1000 when 0 or absent)."""
    return (int(marker) if marker and marker.isdigit() else 0), (max_items or 1000)


def page(items: list[Any], member: str, marker: str | None, max_items: int | None) -> Doc:
    """``items`` from ``marker`` (an index), at most ``max_items`` (1000 when 0 or absent)."""
    start, size = _span(marker, max_items)
    body: Doc = {member: items[start : start + size]}
    if start + size < len(items):
        body["NextMarker"] = str(start + size)
    return body


def _ops(doc: Doc) -> dict[str, Any]:
    """The execution's operations by id: an index kept with the document (in memory only),
    so a checkpoint of a long execution does not rebuild it; a change that adds operations
    to it hands it to ``_synced``."""
    listed = doc["ops"]
    index: dict[str, Any] | None = doc.get(_OP_INDEX)
    if index is None or len(index) != len(listed):
        index = {op["Id"]: op for op in listed}
        doc[_OP_INDEX] = index
    return index


def _synced(doc: Doc, ops: dict[str, Any]) -> None:
    """Bring the document's list of operations in step with ``ops`` (``_ops``'s index, new
    operations added at its end: they are only ever appended)."""
    listed = doc["ops"]
    if len(ops) != len(listed):
        listed.extend(itertools.islice(ops.values(), len(listed), None))


def _end_due(doc: Doc, now: float) -> set[str]:
    """End the execution's waits, step retries and callback timeouts that are due (recording
    their events); the ids of the operations that changed (none: nothing was due)."""
    ops = _ops(doc)
    changed = durable_ops.due(ops, now)
    for op in changed:
        if op["Type"] == "WAIT":
            _record(doc, "WaitSucceeded", op, now, {"Duration": _waited(op)})
    ids = {op["Id"] for op in changed}
    for op, event_type, details in durable_callbacks.due(doc, ops, now):
        _record(doc, event_type, op, now, details)
        ids.add(op["Id"])
    _synced(doc, ops)
    return ids


def _waited(op: dict[str, Any]) -> int:
    seconds: float = op["WaitDetails"]["ScheduledEndTimestamp"] - op["StartTimestamp"]
    return round(seconds)


def _end(doc: Doc, status: str, result: str | None, error: Any, now: float) -> None:
    doc["status"] = status
    doc["end"] = now
    doc["invoking"] = False
    doc.pop("pause", None)
    if result is not None:
        doc["result"] = result
    if error is not None:
        doc["error"] = error
    ops = _ops(doc)
    execution = ops[doc["invocation_id"]]
    if execution["Status"] == "STARTED":
        execution["Status"] = status
    execution["EndTimestamp"] = now
    _synced(doc, ops)
    details: Doc = {}
    if status == "SUCCEEDED":
        details = {"Result": durable_ops.data(doc["result"] or "")}
    else:
        details = {"Error": durable_ops.data(doc["error"])}
    name = {"TIMED_OUT": "ExecutionTimedOut"}.get(status, f"Execution{status.title()}")
    _record(doc, name, execution, now, details)


def _record(doc: Doc, event_type: str, op: dict[str, Any], now: float, details: Doc) -> None:
    """Append a history event of ``op``."""
    event: Doc = {
        "EventType": event_type,
        "EventId": len(doc["history"]) + 1,
        "Id": op["Id"],
        "EventTimestamp": now,
    }
    for member in ("SubType", "Name", "ParentId"):
        if op.get(member) is not None:
            event[member] = op[member]
    event[f"{event_type}Details"] = details
    doc["history"].append(event)
