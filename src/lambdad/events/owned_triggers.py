"""The time triggers of a cluster on the one node that holds their claim.

Scheduler's schedules, EventBridge's scheduled rules and their durable retries run together
under one claim, ``triggers`` (events/owners.py): the node holding it makes a
:class:`TimeTriggers` and a :class:`TriggerRetries` (``make``) and starts them; when it loses the
claim it closes them, and the next holder starts its own from the store's records. One claim
for every trigger, not shards: the holder only records and queues occurrences (a fraction of
a millisecond each, in group commits); the invokes themselves run wherever the queue hands them.
Schedules and rules written through other nodes reach the holder through the store's change feed
(``heard_stored``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lambdad.events import rule_triggers, schedules
from lambdad.events.owners import Owners
from lambdad.events.trigger_retries import TriggerRetries
from lambdad.events.triggers import TimeTriggers
from lambdad.store.base import StoreChange, Table

log = logging.getLogger(__name__)

#: The claim of the cluster's time triggers.
KEY = "triggers"


class OwnedTriggers:
    """Starts the time triggers while this node holds ``KEY``, and stops them when it does not."""

    def __init__(
        self, owners: Owners, make: Callable[[], tuple[TimeTriggers, TriggerRetries]]
    ) -> None:
        self._owners = owners
        self._make = make
        self._running: tuple[TimeTriggers, TriggerRetries] | None = None

    async def start(self) -> None:
        """Want the claim (the owners' next turn takes it, or not)."""
        self._owners.want(KEY, self)

    async def close(self) -> None:
        """Stop the triggers if they run here. Idempotent."""
        self._owners.unwant(KEY)
        await self.lost(KEY)

    def running(self) -> bool:
        return self._running is not None

    def scheduled(self) -> int:
        """How many triggers have an occurrence planned here (0 on a node not holding them)."""
        return self._running[0].scheduled() if self._running is not None else 0

    async def gained(self, key: str) -> None:
        if self._running is not None:
            return
        triggers, retries = self._make()
        self._running = (triggers, retries)
        try:
            await triggers.start()
            await retries.start()
        except BaseException:  # the store failed: give the claim up (Owners drops it)
            await self.lost(key)
            raise
        log.info("this node runs the time triggers (%d planned)", triggers.scheduled())

    async def lost(self, key: str) -> None:
        running, self._running = self._running, None
        if running is not None:
            triggers, retries = running
            await triggers.close()
            await retries.close()
            log.info("this node no longer runs the time triggers")

    def heard_stored(self, change: StoreChange) -> None:
        """A change another node made: plan the schedules and rules it names again."""
        if self._running is None:
            return
        triggers = self._running[0]
        if change.table is None or (
            change.prefix and change.table in (Table.SCHEDULES, Table.EVENT_RULES)
        ):
            triggers.reload()
        elif change.table == Table.SCHEDULES and len(change.key) == 4:
            account, region, group, name = change.key
            triggers.changed(schedules.KIND, (account, region, schedules.KIND, group, name))
        elif change.table == Table.EVENT_RULES and len(change.key) == 3:
            account, region, name = change.key
            triggers.changed(rule_triggers.KIND, (account, region, rule_triggers.KIND, name))
