"""Clients of the AWS-compatible services lambdad reaches: destinations' SQS, SNS and
EventBridge (``lambdad.invoke.destinations``), and the SQS queues, Kinesis streams and
DynamoDB streams event source pollers read (``lambdad.events.pollers``).

``AwsClients.client(service, region)`` gives an aiobotocore client signed with the configured
credentials (dummy ones when none are set), reaching the service's own endpoint
(``endpoints[service]``, from ``aws_endpoint_url_<service>``) or the shared one (``default``,
``aws_endpoint_url``). Clients are opened on first use (importing botocore and loading a model
take 0.1-0.3 s, paid in a thread, never at start: most lambdads never send a record) and kept;
``close`` closes them all. With no endpoint, ``client`` raises ``NoEndpoint``: lambdad never
reaches the internet on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import threading
from collections.abc import Mapping
from typing import Any

DUMMY_KEY = "lambdad"


@dataclasses.dataclass(frozen=True, slots=True)
class AwsEndpoint:
    """One endpoint and its credentials, for a client holder of its own (an event source
    poller's: its long polls must not wait behind destinations' sends, nor theirs behind it)."""

    url: str = ""
    access_key: str = ""
    secret_key: str = ""
    #: How long one request may wait for its answer (a long poll waits up to 20 s).
    read_timeout: float = 60.0
    #: Connections a client keeps open at most.
    connections: int = 10


#: One aiobotocore session for the whole process: its loader keeps every model and endpoint
#: file it parsed, so a second holder of clients (each event source poller has its own) does
#: not parse them again. Parsing holds the GIL for tens of milliseconds, which the event loop
#: would feel each time.
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def _shared_session(service: str) -> Any:
    """The process's aiobotocore session, with ``service``'s model and endpoint files loaded
    (call in a worker thread)."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            from aiobotocore.session import get_session

            _SESSION = get_session()
        _SESSION.warm_up_loader_caches(service)
        return _SESSION


class NoEndpoint(Exception):
    """No endpoint is configured for the service."""

    def __init__(self, service: str) -> None:
        super().__init__(f"no AWS endpoint is configured for {service} (setting aws_endpoint_url)")
        self.service = service


class ClientsState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class AwsClients:
    """aiobotocore clients per (service, region), each reaching ``endpoints[service]``."""

    def __init__(
        self,
        endpoints: Mapping[str, str] | None = None,
        *,
        default: str = "",
        access_key: str = "",
        secret_key: str = "",
        read_timeout: float = 60.0,
        connections: int = 10,
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._read_timeout = read_timeout
        self._connections = connections
        self._default = default
        self._access_key = access_key or DUMMY_KEY
        self._secret_key = secret_key or DUMMY_KEY
        self._clients: dict[tuple[str, str], Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()
        self._session: Any = None
        self.state = ClientsState.OPEN

    @classmethod
    def of(cls, endpoint: AwsEndpoint) -> AwsClients:
        """Clients of every service at one endpoint."""
        return cls(
            default=endpoint.url,
            access_key=endpoint.access_key,
            secret_key=endpoint.secret_key,
            read_timeout=endpoint.read_timeout,
            connections=endpoint.connections,
        )

    def endpoint_settings(self, service: str) -> AwsEndpoint:
        """The endpoint of ``service`` and these clients' credentials, for a client holder of
        its own."""
        return AwsEndpoint(
            url=self.endpoint(service),
            access_key=self._access_key,
            secret_key=self._secret_key,
            read_timeout=self._read_timeout,
            connections=self._connections,
        )

    def endpoint(self, service: str) -> str:
        """The endpoint of ``service`` ("" when none is configured)."""
        return self._endpoints.get(service) or self._default

    async def client(self, service: str, region: str) -> Any:
        """The client of ``service`` in ``region``, opened on first use and kept."""
        if not self.endpoint(service):
            raise NoEndpoint(service)
        key = (service, region)
        async with self._opening:
            if self.state is ClientsState.CLOSED:
                raise RuntimeError("the AWS clients are closed")
            if key not in self._clients:
                factory = await asyncio.to_thread(self._factory, service, region)
                self._clients[key] = await self._stack.enter_async_context(factory)
        return self._clients[key]

    def _factory(self, service: str, region: str) -> Any:
        """aiobotocore's client context for ``service`` in ``region``, its model loaded (run in
        a thread: imports and model loading). aiobotocore is imported here, on first use."""
        from botocore.config import Config

        self._session = _shared_session(service)
        return self._session.create_client(
            service,
            region_name=region,
            endpoint_url=self.endpoint(service),
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            # Long polls (SQS's 20 s wait) must fit in the read timeout.
            config=Config(
                retries={"total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=self._read_timeout,
                max_pool_connections=self._connections,
            ),
        )

    async def close(self) -> None:
        """Close every client opened. Idempotent."""
        if self.state is ClientsState.CLOSED:
            return
        async with self._opening:
            self.state = ClientsState.CLOSED
            self._clients.clear()
            await self._stack.aclose()
