"""Which share of each provisioned concurrency config this node provisions (cluster mode,
docs/cluster.md).

The nodes that run environments (role ``worker`` or ``all``, up in the node registry, this
node always among them if its role runs environments) are put in a stable order, their ids
sorted; a version's ``count`` environments are dealt out from a starting node picked by a hash
of the version's name, one each in turn, so the shares sum to ``count`` on every node's
reckoning, and different versions start their extra environments on different nodes. When a
node joins or is gone (its heartbeat older than the lease), the others' next look at the
registry changes the order and the shares: the provisioner provisions again.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

#: Roles whose nodes run environments.
RUNS_ENVIRONMENTS = ("worker", "all")


class Spread:
    """The live nodes that share provisioned environments, as this node last saw them."""

    def __init__(
        self,
        nodes: Callable[[], Awaitable[list[dict[str, Any]]]],
        me: Callable[[], str],
        role: str,
    ) -> None:
        self._nodes = nodes
        self._me = me
        self._role = role
        self.members: tuple[str, ...] = ()

    @property
    def me(self) -> str:
        return self._me()

    async def refresh(self) -> bool:
        """Read the registry again; True when the members changed."""
        live = {
            str(n["Id"])
            for n in await self._nodes()
            if n.get("Health") == "up" and n.get("Role") in RUNS_ENVIRONMENTS
        }
        if self._role in RUNS_ENVIRONMENTS:
            live.add(self.me)
        members = tuple(sorted(live))
        changed = members != self.members
        self.members = members
        return changed

    def share(self, key: str, count: int) -> int:
        """This node's share of ``count`` environments of the version named ``key``."""
        members = self.members or ((self.me,) if self._role in RUNS_ENVIRONMENTS else ())
        me = self.me
        if me not in members:
            return 0
        n = len(members)
        first = zlib.crc32(key.encode()) % n
        return count // n + (1 if (members.index(me) - first) % n < count % n else 0)
