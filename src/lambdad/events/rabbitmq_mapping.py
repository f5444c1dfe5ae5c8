"""An Amazon MQ for RabbitMQ event source mapping's poller: the mapping's settings, the broker's
AMQP URL (``LAMBDAD_MQ_BROKERS``) and its BASIC_AUTH secret (``LAMBDAD_SECRETS``) turned into a
``RabbitSource`` and a ``RabbitPoller`` running it (``lambdad.events.rabbitmq``), registered
with ``Pollers`` for the ``mq`` kind.

A broker or secret lambdad does not know (the settings changed since the mapping was created,
or the secret was never given) consumes nothing: the mapping's ``LastProcessingResult`` says
why, as AWS reports a secret it cannot read. Each result is stored when it changes.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.mapping_model import (
    BASIC_AUTH,
    VIRTUAL_HOST,
    EventSourceMapping,
    access_value,
)
from lambdad.events.filters import compile_criteria
from lambdad.events.pollers import PollerContext, ResultWriter
from lambdad.events.rabbitmq import DEFAULT_WINDOW, RabbitPoller, RabbitSource, for_mq

log = logging.getLogger(__name__)


def no_broker(arn: str) -> str:
    return f"PROBLEM: the broker {arn} is not configured (LAMBDAD_MQ_BROKERS)"


def no_secret(arn: str | None) -> str:
    return (
        f"PROBLEM: Lambda failed to authenticate the event source: the secret {arn} "
        "is not configured (LAMBDAD_SECRETS) or lacks username and password"
    )


class MappingPollerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class RabbitMappingPoller:
    """Consumes one MQ mapping's queue for as long as it runs."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        ctx: PollerContext,
        *,
        brokers: Mapping[str, str],
        secrets: Mapping[str, Mapping[str, str]],
        time_scale: float = 1.0,
    ) -> None:
        self.mapping = mapping
        self._ctx = ctx
        self._brokers = brokers
        self._secrets = secrets
        self._scale = time_scale
        self._poller: RabbitPoller | None = None
        self._result = ResultWriter(ctx)
        self.state = MappingPollerState.NEW

    def source(self) -> RabbitSource | str:
        """The mapping as the poller needs it, or the problem that stops it."""
        mapping = self.mapping
        url = self._brokers.get(mapping.source_arn)
        if url is None:
            return no_broker(mapping.source_arn)
        secret_arn = access_value(mapping, BASIC_AUTH)
        secret = self._secrets.get(secret_arn or "", {})
        if "username" not in secret or "password" not in secret:
            return no_secret(secret_arn)
        window = DEFAULT_WINDOW if mapping.default_window else float(mapping.batching_window)
        return RabbitSource(
            scope=Scope(mapping.account_id, mapping.region),
            function_name=mapping.function_name,
            qualifier=mapping.qualifier,
            broker_arn=mapping.source_arn,
            url=url,
            queue=(mapping.queues or [""])[0],
            username=secret["username"],
            password=secret["password"],
            virtual_host=access_value(mapping, VIRTUAL_HOST) or "/",
            batch_size=mapping.batch_size,
            batching_window=window,
            record_filter=_record_filter(mapping.filters),
        )

    async def start(self) -> None:
        if self.state is not MappingPollerState.NEW:
            raise RuntimeError(f"MQ mapping poller is {self.state.value}")
        self.state = MappingPollerState.RUNNING
        source = self.source()
        if isinstance(source, str):
            self._result(source)
            return
        self._poller = RabbitPoller(source, self._ctx.invoker, self._result, time_scale=self._scale)
        await self._poller.start()

    async def close(self) -> None:
        """Stop consuming (unacknowledged messages go back to the queue). Idempotent."""
        if self.state is MappingPollerState.CLOSED:
            return
        self.state = MappingPollerState.CLOSED
        self._result.stop()
        poller, self._poller = self._poller, None
        if poller is not None:
            await poller.close()
        await self._result.drain()


def _record_filter(patterns: list[str] | None) -> Callable[[dict[str, Any]], bool] | None:
    if not patterns:
        return None
    criteria = compile_criteria(patterns)
    return lambda record: criteria.matches(for_mq(record))


def mq_factory(
    brokers: Mapping[str, str], secrets: Mapping[str, Mapping[str, str]], time_scale: float
) -> Callable[[EventSourceMapping, PollerContext], Any]:
    """The ``Pollers`` factory of the ``mq`` kind."""

    def make(mapping: EventSourceMapping, ctx: PollerContext) -> RabbitMappingPoller:
        return RabbitMappingPoller(
            mapping, ctx, brokers=brokers, secrets=secrets, time_scale=time_scale
        )

    return make
