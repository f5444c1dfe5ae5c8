"""Unit tests of the setting of the cluster's event queue (docs/cluster.md)."""

from __future__ import annotations

import pytest

from lambdad.config import load_settings


def test_the_ack_wait_is_30_s_unless_set() -> None:
    """``LAMBDAD_QUEUE_ACK_WAIT`` sets how long a silent node's events wait (30 s by default)."""
    assert load_settings(environ={}).queue_ack_wait == 30.0
    assert load_settings(environ={"LAMBDAD_QUEUE_ACK_WAIT": "2.5"}).queue_ack_wait == 2.5


@pytest.mark.parametrize("value", ["0", "-1"])
def test_an_ack_wait_that_is_not_positive_is_refused_at_start(value: str) -> None:
    """An ack wait of zero or less would hand every running event to another node: refused."""
    with pytest.raises(ValueError, match="queue_ack_wait must be positive"):
        load_settings(environ={"LAMBDAD_QUEUE_ACK_WAIT": value})
