"""Fixtures of the storage contract suites that need servers of their own."""

from __future__ import annotations

from collections.abc import Iterator

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
