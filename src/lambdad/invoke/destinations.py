"""Sending records to destinations and events to dead-letter queues.

A Lambda function destination is an asynchronous invocation of it (through the durable queue,
the record as its event). SQS queues, SNS topics and EventBridge buses are reached through the
AWS-compatible endpoint of the settings (``aws_endpoint_url``) with aiobotocore
(``lambdad.invoke.aws_clients``), signed with the configured credentials or dummy ones; with no
endpoint set they are not reached at all, since lambdad never calls out to the internet on its
own. A delivery is tried a few times; one that
still fails is logged and dropped: it never fails the event it reports on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lambdad.control.arns import Scope
from lambdad.invoke.aws_clients import AwsClients
from lambdad.invoke.records import Record
from lambdad.invoke.service import InvocationType, Invoker, InvokeRequest

log = logging.getLogger(__name__)

DETAIL_TYPE = "Lambda Function Invocation Result - {}"


def _arn_parts(arn: str) -> tuple[str, str, str, str]:
    """``(service, region, account, resource)`` of ``arn``; ValueError if it is not one."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn}")
    return parts[2], parts[3], parts[4], parts[5]


async def tried(
    what: str, send: Callable[[], Awaitable[None]], *, attempts: int, retry_delay: float
) -> bool:
    """Run ``send`` up to ``attempts`` times, ``retry_delay`` doubling between tries; a failure
    that outlasts them is logged, never raised (cancellation is). True when it got through."""
    for attempt in range(1, attempts + 1):
        try:
            await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the target or its client: tried again
            if attempt == attempts:
                log.error("%s not delivered after %d attempts: %s", what, attempt, exc)
                return False
            log.warning("%s failed (attempt %d): %s", what, attempt, exc)
            await asyncio.sleep(retry_delay * 2 ** (attempt - 1))
        else:
            log.debug("%s delivered", what)
            return True
    return False


class MessageSender:
    """Sends a text message to an SQS queue or SNS topic by its ARN through ``clients`` (queue
    URLs asked once and kept). Async destinations, dead letters and the on-failure records of
    stream event sources all leave through one."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients
        self._queue_urls: dict[str, str] = {}

    async def send(
        self, target_arn: str, body: str, attributes: dict[str, Any] | None = None
    ) -> None:
        """Send ``body`` (with message ``attributes``); ValueError for a target that is not an
        SQS queue or SNS topic, the client's error when the service refuses."""
        service, region, _, _ = _arn_parts(target_arn)
        extra = {"MessageAttributes": attributes} if attributes else {}
        if service == "sqs":
            client = await self._clients.client("sqs", region)
            url = await self._queue_url(client, target_arn)
            await client.send_message(QueueUrl=url, MessageBody=body, **extra)
        elif service == "sns":
            client = await self._clients.client("sns", region)
            await client.publish(TopicArn=target_arn, Message=body, **extra)
        else:
            raise ValueError(f"unsupported destination service {service!r}")

    async def _queue_url(self, client: Any, target_arn: str) -> str:
        if target_arn not in self._queue_urls:
            _, _, account, name = _arn_parts(target_arn)
            found = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._queue_urls[target_arn] = str(found["QueueUrl"])
        return self._queue_urls[target_arn]


class Destinations:
    """Delivers records and dead letters; owns the AWS clients it opened (``close`` them)."""

    def __init__(
        self,
        invoker: Invoker,
        *,
        endpoint_url: str = "",
        access_key: str = "",
        secret_key: str = "",
        retry_delay: float = 1.0,
        attempts: int = 3,
    ) -> None:
        self._invoker = invoker
        self._retry_delay = retry_delay
        self._attempts = attempts
        self._clients = AwsClients(
            default=endpoint_url, access_key=access_key, secret_key=secret_key
        )
        self._sender = MessageSender(self._clients)

    async def send_record(
        self,
        target_arn: str,
        record: Record,
        *,
        success: bool,
        function_arn: str,
        trace_id: str | None = None,
    ) -> bool:
        """Send ``record`` to the destination ``target_arn``; failures are logged (False).

        ``trace_id``: the invocation's trace header, carried to a function destination so a
        loop through destinations is counted like any other (``lineage.py``)."""
        what = f"record of {record.request_id} to {target_arn}"

        async def send() -> None:
            service, region, account, _ = _arn_parts(target_arn)
            if service == "lambda":
                await self._invoke(Scope(account, region), target_arn, record.body, trace_id)
                return
            # The AWS clients take text: a record over their message size (256 KB or 1 MB) is
            # refused by the service, so this decode is small for any record that arrives.
            body = record.body.decode("utf-8")
            if service == "events":
                outcome = "Success" if success else "Failure"
                await self._put_event(target_arn, region, body, outcome, function_arn)
            else:
                await self._sender.send(target_arn, body)

        return await self._tried(what, send)

    async def send_dead_letter(
        self, target_arn: str, body: str, attributes: dict[str, Any], *, label: str | None = None
    ) -> bool:
        """Send the event ``body`` as-is, with ``attributes``, to an SQS queue or SNS topic
        (False: not delivered, logged; ``label`` names it in the log: Lambda's ``RequestID``
        attribute by default)."""
        name = label or attributes["RequestID"]["StringValue"]
        what = f"dead letter {name} to {target_arn}"

        async def send() -> None:
            await self._sender.send(target_arn, body, attributes)

        return await self._tried(what, send)

    async def _tried(self, what: str, send: Callable[[], Awaitable[None]]) -> bool:
        return await tried(what, send, attempts=self._attempts, retry_delay=self._retry_delay)

    async def _invoke(
        self, scope: Scope, target_arn: str, payload: bytes, trace_id: str | None
    ) -> None:
        request = InvokeRequest(
            function_name=target_arn,
            qualifier=None,
            payload=payload,
            invocation_type=InvocationType.EVENT,
            trace_id=trace_id,
        )
        await self._invoker.invoke(scope, request)

    async def _put_event(
        self, bus_arn: str, region: str, body: str, outcome: str, function_arn: str
    ) -> None:
        client = await self._client("events", region)
        entry = {
            "Source": "lambda",
            "DetailType": DETAIL_TYPE.format(outcome),
            "Detail": body,
            "Resources": [function_arn, bus_arn],
            "EventBusName": bus_arn,
        }
        answer = await client.put_events(Entries=[entry])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the entry: {answer['Entries']}")

    async def _client(self, service: str, region: str) -> Any:
        """The client of ``service`` in ``region``, opened on first use and kept."""
        return await self._clients.client(service, region)

    async def close(self) -> None:
        """Close every client opened. Idempotent."""
        await self._clients.close()
