"""The legacy Logs API (``PUT /2020-08-15/logs``): subscriptions and its event schema.

AWS keeps it "fully functional" beside the Telemetry API that superseded it, and older
monitoring extensions subscribe through it. Its subscriptions are the Telemetry API's
(``telemetry.py``: buffering, HTTP or TCP delivery from inside the environment's network,
dropping and ``platform.logsDropped``), seen through ``LogsDialect``: ``function`` and
``extension`` records are the line as printed (a string ending in a newline, never parsed),
``platform.start`` / ``platform.end`` / ``platform.report`` / ``platform.extension`` /
``platform.logsSubscription`` / ``platform.fault`` carry the Logs API's record shapes, and
``platform.runtimeDone`` goes only to subscribers of schema ``2021-03-18``. The init events of
the Telemetry API (``platform.initStart`` ...) do not exist here.

An extension subscribes through one of the two APIs: subscribing through the other one
afterwards is refused, as AWS documents.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lambdad.runtime.replies import RuntimeApiError
from lambdad.runtime.telemetry import Event, Telemetry, make_event, parse_subscription

#: The original schema (the default) and the one that adds ``platform.runtimeDone``.
ORIGINAL = "2020-08-15"
RUNTIME_DONE = "2021-03-18"
SCHEMA_VERSIONS = (ORIGINAL, RUNTIME_DONE)
ERROR_TYPE = "Logs.ValidationError"
DROP_REASON = "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."
#: The Logs API's ``platform.runtimeDone`` statuses (the Telemetry API's ``error`` is a
#: ``failure`` here).
_STATUS = {"success": "success", "timeout": "timeout"}


def _pick(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: record[key] for key in keys if key in record}


@dataclasses.dataclass(frozen=True, slots=True)
class LogsDialect:
    """The Logs API's events, for one schema version."""

    schema: str
    api: ClassVar[str] = "logs"
    drop_reason: ClassVar[str] = DROP_REASON

    def event(self, kind: str, record: Any, at: float) -> Event | None:
        shaped = self._record(kind, record)
        return None if shaped is None else make_event(kind, shaped, at)

    def _record(self, kind: str, record: Any) -> Any:
        if kind in ("function", "extension"):
            return f"{record}\n"
        if kind == "platform.start":
            return _pick(record, "requestId", "version")
        if kind == "platform.report":
            return _pick(record, "requestId", "metrics", "tracing")
        if kind == "platform.runtimeDone":
            if self.schema != RUNTIME_DONE:
                return None
            return {
                "requestId": record["requestId"],
                "status": _STATUS.get(record["status"], "failure"),
            }
        if kind == "platform.extension":
            return _pick(record, "name", "state", "events")
        if kind in ("platform.end", "platform.fault", "platform.logsSubscription"):
            return record
        return None


def subscribe(telemetry: Telemetry, name: str, body: bytes) -> None:
    """``PUT /2020-08-15/logs`` by extension ``name``; refusals are ``RuntimeApiError``."""
    if not telemetry.open:
        raise RuntimeApiError(403, "Logs.SubscriptionClosed", "Logs API subscription is closed")
    request = parse_subscription(body, SCHEMA_VERSIONS, ORIGINAL, ERROR_TYPE, methods=True)
    if telemetry.subscribed_through(name) not in (None, LogsDialect.api):
        raise RuntimeApiError(
            400, ERROR_TYPE, f"{name} is already subscribed through the Telemetry API"
        )
    telemetry.add(name, request, LogsDialect(request.schema), "platform.logsSubscription")
