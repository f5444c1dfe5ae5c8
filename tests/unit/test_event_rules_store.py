"""Unit tests of the scheduled rules' domain (lambdad.control.rules) on the in-memory Store:
the change subscription a firing engine follows, and the rate anchor."""

from __future__ import annotations

import asyncio

from lambdad.control.arns import Scope
from lambdad.control.rule_requests import (
    PutRuleRequest,
    PutTargetsRequest,
    RemoveTargetsRequest,
    Target,
)
from lambdad.control.rules import EventRules, RuleDeleted, RuleEvent, RulePut
from lambdad.store.memory import MemoryStore

SCOPE = Scope("000000000000", "us-east-1")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def test_listeners_hear_every_write_and_delete_in_order() -> None:
    """A subscriber hears RulePut after each create, state change and target change, and
    RuleDeleted after the delete, each with the rule as stored."""
    now = [1000.0]
    rules = EventRules(MemoryStore(), clock=lambda: now[0])
    heard: list[RuleEvent] = []

    async def listen(event: RuleEvent) -> None:
        heard.append(event)

    async def run() -> None:
        await rules.put_rule(SCOPE, PutRuleRequest(name="r", schedule_expression="rate(1 hour)"))
        await rules.set_state(SCOPE, "r", None, enabled=False)
        await rules.set_state(SCOPE, "r", None, enabled=False)  # no change: nothing heard
        await rules.put_targets(
            SCOPE, PutTargetsRequest(rule="r", targets=[Target(id="t", arn=ARN)])
        )
        await rules.remove_targets(SCOPE, RemoveTargetsRequest(rule="r", ids=["t"]))
        await rules.delete(SCOPE, "r")

    rules.subscribe(listen)
    asyncio.run(run())
    kinds = [(type(e).__name__, e.rule.enabled, len(e.rule.targets)) for e in heard]
    assert kinds == [
        ("RulePut", True, 0),
        ("RulePut", False, 0),
        ("RulePut", False, 1),
        ("RulePut", False, 0),
        ("RuleDeleted", False, 0),
    ]
    assert isinstance(heard[0], RulePut)
    assert isinstance(heard[-1], RuleDeleted)


def test_rate_anchor_moves_only_with_the_expression() -> None:
    """A rule's rate counts from when its expression was put; PutRule with the same
    expression keeps the anchor, a new expression moves it."""
    now = [1000.0]
    rules = EventRules(MemoryStore(), clock=lambda: now[0])

    async def put(expression: str) -> float:
        rule = await rules.put_rule(SCOPE, PutRuleRequest(name="r", schedule_expression=expression))
        return rule.anchor.timestamp()

    async def run() -> list[float]:
        first = await put("rate(5 minutes)")
        now[0] = 2000.0
        same = await put("rate(5 minutes)")
        changed = await put("rate(10 minutes)")
        return [first, same, changed]

    assert asyncio.run(run()) == [1000.0, 1000.0, 2000.0]


def test_a_failing_listener_does_not_undo_the_write() -> None:
    """A listener that raises is logged; the rule stays written and later listeners hear it."""
    rules = EventRules(MemoryStore())
    heard: list[RuleEvent] = []

    async def broken(event: RuleEvent) -> None:
        raise RuntimeError("boom")

    async def listen(event: RuleEvent) -> None:
        heard.append(event)

    rules.subscribe(broken)
    rules.subscribe(listen)

    async def run() -> int:
        await rules.put_rule(SCOPE, PutRuleRequest(name="r", schedule_expression="rate(1 day)"))
        return len(await rules.all())

    assert asyncio.run(run()) == 1
    assert len(heard) == 1
