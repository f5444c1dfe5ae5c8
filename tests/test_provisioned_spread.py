"""How a version's provisioned environments are shared out among the nodes of a cluster
(invoke/provisioned_spread.py): every node's share, summed, is the config; shares differ by
at most one; different versions start their odd environment on different nodes; a node of
role api takes none."""

from __future__ import annotations

import asyncio
from typing import Any

from lambdad.invoke.provisioned_spread import Spread


def _spread(me: str, members: list[tuple[str, str, str]], role: str = "all") -> Spread:
    rows: list[dict[str, Any]] = [{"Id": i, "Role": r, "Health": h} for i, r, h in members]

    async def nodes() -> list[dict[str, Any]]:
        return rows

    spread = Spread(nodes, lambda: me, role)
    asyncio.run(spread.refresh())
    return spread


def test_shares_sum_to_the_config_on_every_node() -> None:
    """Three live nodes (a worker, two of role all), one gone and one api node: every
    count from 0 to 10 is shared among the three, summing to it, each share within one of the
    others."""
    members = [
        ("a", "worker", "up"),
        ("b", "all", "up"),
        ("c", "all", "up"),
        ("x", "worker", "gone"),
        ("y", "api", "up"),
    ]
    spreads = [_spread(me, members) for me in ("a", "b", "c")]
    assert spreads[0].members == ("a", "b", "c")
    for count in range(11):
        shares = [s.share("000000000000/us-east-1/fn/1", count) for s in spreads]
        assert sum(shares) == count
        assert max(shares) - min(shares) <= 1


def test_versions_start_their_odd_environment_on_different_nodes() -> None:
    """One environment each for many versions lands on every node, not always the first."""
    spreads = [_spread(me, [("a", "all", "up"), ("b", "all", "up")]) for me in ("a", "b")]
    firsts = {next(s.me for s in spreads if s.share(f"acct/r/fn/{v}", 1) == 1) for v in range(20)}
    assert firsts == {"a", "b"}


def test_an_api_node_provisions_nothing() -> None:
    """A node of role api is no member: its share is 0 and the workers share everything."""
    members = [("a", "worker", "up"), ("api", "api", "up")]
    api = _spread("api", members, role="api")
    worker = _spread("a", members, role="worker")
    assert api.share("k", 5) == 0
    assert worker.share("k", 5) == 5
