"""Clients of the AWS-compatible endpoint lambdad reaches (AWS itself, or an emulator).

One ``AwsClients`` opens aiobotocore clients per ``(service, region)`` on first use and keeps
them until ``close``. Destinations send records through it (SQS, SNS, EventBridge) and the
event-source pollers read queues through it (SQS ``ReceiveMessage``, ``DeleteMessageBatch``,
``ChangeMessageVisibilityBatch``): aiobotocore serves every operation of a service's model, so
nothing more than this is needed to reach one. With no endpoint configured nothing is reached:
lambdad never calls out to the internet on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
from typing import Any

DUMMY_KEY = "lambdad"


@dataclasses.dataclass(frozen=True, slots=True)
class AwsEndpoint:
    """Where AWS services are reached and with which credentials (dummy ones when empty)."""

    url: str = ""
    access_key: str = ""
    secret_key: str = ""
    #: How long one request may wait for its answer (a long poll waits up to 20 s).
    read_timeout: float = 30.0
    #: Connections a client keeps open at most (a long poll holds one for up to 20 s).
    connections: int = 64


class AwsClientsState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class AwsClients:
    """aiobotocore clients of ``endpoint``, one per service and region (``close`` them)."""

    def __init__(self, endpoint: AwsEndpoint) -> None:
        self.endpoint = endpoint
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._opening = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self.state = AwsClientsState.OPEN

    async def client(self, service: str, region: str) -> Any:
        """The client of ``service`` in ``region``, opened on first use and kept.

        RuntimeError when no endpoint is configured or the clients are closed."""
        if not self.endpoint.url:
            raise RuntimeError("no AWS endpoint is configured (setting aws_endpoint_url)")
        key = (service, region)
        async with self._opening:
            if self.state is AwsClientsState.CLOSED:
                raise RuntimeError("AWS clients are closed")
            if key not in self._clients:
                # Importing aiobotocore and loading the service's model take 0.1-0.3 s.
                factory = await asyncio.to_thread(self._factory, service, region)
                self._clients[key] = await self._stack.enter_async_context(factory)
        return self._clients[key]

    def _factory(self, service: str, region: str) -> Any:
        """aiobotocore's client context for ``service`` in ``region``, its model loaded (run in
        a thread). aiobotocore is imported here, on first use: botocore takes about 0.3 s to
        import, which every lambdad start would pay, and most never reach AWS."""
        from aiobotocore.session import get_session
        from botocore.config import Config

        if self._session is None:
            self._session = get_session()
        self._session.warm_up_loader_caches(service)
        return self._session.create_client(
            service,
            region_name=region,
            endpoint_url=self.endpoint.url,
            aws_access_key_id=self.endpoint.access_key or DUMMY_KEY,
            aws_secret_access_key=self.endpoint.secret_key or DUMMY_KEY,
            config=Config(
                retries={"total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=self.endpoint.read_timeout,
                max_pool_connections=self.endpoint.connections,
            ),
        )

    async def close(self) -> None:
        """Close every client opened. Idempotent."""
        if self.state is AwsClientsState.CLOSED:
            return
        async with self._opening:
            self.state = AwsClientsState.CLOSED
            self._clients.clear()
            await self._stack.aclose()
