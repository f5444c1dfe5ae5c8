"""CloudWatch Logs' StartLiveTail: an event stream of a session's new log events.

The answer is ``application/vnd.amazon.eventstream`` (``api/eventstream.py``'s framing): an
``initial-response`` (JSON 1.1 event streams start with one), a ``sessionStart``, then a
``sessionUpdate`` every second (AWS's cadence) with the events written since, filtered by the
same engine as FilterLogEvents, up to 500 per update (more are left out and the update says
``sampled``, as AWS does). The session ends when the client goes away or after three hours
with ``SessionTimeoutException``, as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, cast

from aiohttp import web

from lambdad import errors
from lambdad.api import eventstream
from lambdad.api.errors import REQUEST_ID
from lambdad.api.lambda_api import scope_of
from lambdad.api.logs_api import LOG_STORE, group_arn, resolve_group
from lambdad.api.logs_requests import StartLiveTailRequest
from lambdad.api.target_front import target
from lambdad.observe.log_filters import InvalidFilterPattern, compile_pattern
from lambdad.observe.logs import GroupKey, LogEvent, LogStore
from lambdad.observe.request_ids import new_request_id

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_UPDATE_SECONDS = 1.0
_SESSION_SECONDS = 3 * 3600.0
_MAX_PER_UPDATE = 500


class Sessions:
    """The server's live tail sessions: ``close()`` (at shutdown) ends them all, so that the
    server does not wait for their clients."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()


SESSIONS = web.AppKey("live_tail_sessions", Sessions)


async def end_sessions(app: web.Application) -> None:
    """``on_shutdown``: every open session ends."""
    app[SESSIONS].close()


def _event(kind: str, document: dict[str, Any], message_type: str = "event") -> bytes:
    headers = (
        eventstream.header(":event-type" if message_type == "event" else ":exception-type", kind)
        + eventstream.header(":content-type", "application/json")
        + eventstream.header(":message-type", message_type)
    )
    return eventstream.message(headers, json.dumps(document, separators=(",", ":")).encode())


def _stream_filter(req: StartLiveTailRequest, keys: list[GroupKey]) -> Any:
    names = set(req.log_stream_names) if req.log_stream_names is not None else None
    prefixes = tuple(req.log_stream_name_prefixes or ())
    if (names is not None or prefixes) and len(keys) != 1:
        raise errors.InvalidParameterException(
            "logStreamNames and logStreamNamePrefixes can only be used with one log group."
        )
    if names is not None and prefixes:
        raise errors.InvalidParameterException(
            "logStreamNames and logStreamNamePrefixes are mutually exclusive parameters."
        )
    if names is not None:
        return lambda stream: stream in names
    if prefixes:
        return lambda stream: stream.startswith(prefixes)
    return lambda _stream: True


@target("Logs_20140328", "logs", "StartLiveTail", StartLiveTailRequest)
async def start_live_tail(request: web.Request, req: StartLiveTailRequest) -> web.Response:
    scope = scope_of(request)
    store = request.app[LOG_STORE]
    keys = [resolve_group(scope, identifier) for identifier in req.log_group_identifiers]
    for key in keys:
        store.group(key)  # ResourceNotFoundException before the stream starts
    wanted = _stream_filter(req, keys)
    try:
        match = compile_pattern(req.log_event_filter_pattern)
    except InvalidFilterPattern:
        raise errors.InvalidParameterException("Invalid filter pattern") from None
    request_id = new_request_id()
    response = web.StreamResponse(
        status=200, headers={"Content-Type": CONTENT_TYPE, REQUEST_ID: request_id}
    )
    start = {
        "requestId": request_id,
        "sessionId": str(uuid.uuid4()),
        "logGroupIdentifiers": list(req.log_group_identifiers),
    }
    if req.log_stream_names is not None:
        start["logStreamNames"] = list(req.log_stream_names)
    if req.log_stream_name_prefixes is not None:
        start["logStreamNamePrefixes"] = list(req.log_stream_name_prefixes)
    if req.log_event_filter_pattern is not None:
        start["logEventFilterPattern"] = req.log_event_filter_pattern
    try:
        await response.prepare(request)
        await response.write(_event("initial-response", {}))
        await response.write(_event("sessionStart", start))
        if await _updates(response, request.app[SESSIONS], store, keys, wanted, match):
            return cast(web.Response, response)  # the server is stopping
        await response.write(
            _event(
                "SessionTimeoutException",
                {"message": "Session timed out after 3 hours."},
                "exception",
            )
        )
    except ConnectionError:
        log.debug("live tail client went away")
    # aiohttp takes any prepared StreamResponse from a handler; target() is typed for Response.
    return cast(web.Response, response)


async def _updates(
    response: web.StreamResponse,
    sessions: Sessions,
    store: LogStore,
    keys: list[GroupKey],
    wanted: Any,
    match: Any,
) -> bool:
    """A ``sessionUpdate`` every second until the session's time is up (False) or the server
    stops (True)."""
    positions = dict.fromkeys(keys, store.position)
    deadline = time.monotonic() + _SESSION_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sessions.closing.wait(), _UPDATE_SECONDS)
        if sessions.closing.is_set():
            return True
        results: list[dict[str, Any]] = []
        sampled = False
        for key in keys:
            events = store.read(key, after=positions[key])
            if events:
                positions[key] = events[-1].seq
            for event in events:
                if not wanted(event.stream) or not match(event.message):
                    continue
                if len(results) >= _MAX_PER_UPDATE:
                    sampled = True
                    break
                results.append(_result(key, event))
        await response.write(
            _event(
                "sessionUpdate",
                {"sessionMetadata": {"sampled": sampled}, "sessionResults": results},
            )
        )
    return False


def _result(key: GroupKey, event: LogEvent) -> dict[str, Any]:
    return {
        "logStreamName": event.stream,
        "logGroupIdentifier": group_arn(key),
        "message": event.message,
        "timestamp": event.timestamp_ms,
        "ingestionTime": event.timestamp_ms,
    }
