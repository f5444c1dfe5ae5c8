"""Fixtures of the storage contract suites that need servers of their own."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from tests.nats_server import NatsServer
from tests.nats_server import unavailable_reason as nats_unavailable


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One real NATS server with JetStream for the session (tests/nats_server.py); tests that
    need empty streams delete them first. Skips where none can run."""
    reason = nats_unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def server() -> Iterator[NatsServer]:
    """A NATS server of the test's own (the tests that take it kill and restart it)."""
    reason = nats_unavailable()
    if reason is not None:
        pytest.skip(reason)
    nats = NatsServer()
    nats.start()
    yield nats
    nats.close()


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run on a loop of its own."""

    @functools.wraps(test)
    def sync(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return sync
