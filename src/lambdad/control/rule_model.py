"""EventBridge scheduled rules as stored values: a rule, its targets, its tags.

A rule lives on the ``default`` event bus of its account and region (the only bus lambdad
has) and is one document of ``Table.EVENT_RULES`` keyed ``(account, region, name)``, targets
and tags included, so every change to it is one atomic write.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

from lambdad.control.arns import Scope

DEFAULT_BUS = "default"
#: How many targets a rule may have (AWS's quota).
MAX_TARGETS = 5


class RuleState(enum.StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    #: Only meaningful for event patterns on AWS; a schedule rule in it fires as ENABLED.
    ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"


@dataclasses.dataclass(frozen=True, slots=True)
class RuleTarget:
    """A Lambda function a rule invokes, with what it sends (``input`` or ``input_path``)."""

    id: str
    arn: str
    input: str | None = None
    input_path: str | None = None
    role_arn: str | None = None
    #: The SQS queue ARN undeliverable events go to (stored; see docs/schedules.md).
    dead_letter_arn: str | None = None
    maximum_retry_attempts: int | None = None
    maximum_event_age_in_seconds: int | None = None

    def to_doc(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RuleTarget:
        return cls(**doc)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    account_id: str
    region: str
    name: str
    schedule_expression: str
    state: RuleState = RuleState.ENABLED
    description: str | None = None
    role_arn: str | None = None
    #: When the schedule was last put (Unix seconds): a rate's occurrences count from here.
    scheduled_at: float = 0.0
    #: When its schedule or state last changed (Unix seconds of the schedulers' clock): no
    #: missed occurrence before it is owed (events/triggers.py, ``_catch_up``).
    changed_at: float = 0.0
    targets: tuple[RuleTarget, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def scope(self) -> Scope:
        return Scope(self.account_id, self.region)

    @property
    def arn(self) -> str:
        return rule_arn(self.scope, self.name)

    @property
    def enabled(self) -> bool:
        return self.state is not RuleState.DISABLED

    @property
    def anchor(self) -> datetime.datetime:
        """Where a ``rate()`` rule's occurrences are counted from."""
        return datetime.datetime.fromtimestamp(self.scheduled_at, datetime.UTC)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "account_id": self.account_id,
            "region": self.region,
            "name": self.name,
            "schedule_expression": self.schedule_expression,
            "state": self.state.value,
            "scheduled_at": self.scheduled_at,
            "changed_at": self.changed_at,
            "targets": [t.to_doc() for t in self.targets],
            "tags": [list(tag) for tag in self.tags],
        }
        if self.description is not None:
            doc["description"] = self.description
        if self.role_arn is not None:
            doc["role_arn"] = self.role_arn
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Rule:
        return cls(
            account_id=doc["account_id"],
            region=doc["region"],
            name=doc["name"],
            schedule_expression=doc["schedule_expression"],
            state=RuleState(doc["state"]),
            description=doc.get("description"),
            role_arn=doc.get("role_arn"),
            scheduled_at=float(doc.get("scheduled_at", 0.0)),
            changed_at=float(doc.get("changed_at", 0.0)),
            targets=tuple(RuleTarget.from_doc(t) for t in doc.get("targets", [])),
            tags=tuple((str(k), str(v)) for k, v in doc.get("tags", [])),
        )


def rule_arn(scope: Scope, name: str) -> str:
    return f"arn:aws:events:{scope.region}:{scope.account_id}:rule/{name}"
