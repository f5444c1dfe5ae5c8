"""Ownership claims in a JetStream key-value bucket (cluster mode, docs/cluster.md).

Each claim is one key of the bucket ``LAMBDAD_OWNERS`` whose value is the id of the node
holding it. A claim is made with create-if-absent (the first node wins), renewed with a
compare-and-swap on the revision the holder last wrote (a node whose claim was taken or lost
cannot renew it), and released with a delete on that revision. The bucket's TTL (its streams'
max age) is the lease: a key nobody renewed for that long is removed by the server, so a dead
node's claims free themselves. The policy (which node should hold what, what runs while it
does) is ``events/owners.py``'s; this module only speaks to the bucket, and turns the client's
errors into the store's (``StoreUnavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from lambdad.store.base import StoreUnavailable
from lambdad.store.nats_link import NatsLink

log = logging.getLogger(__name__)

#: The bucket's name (its stream is ``KV_LAMBDAD_OWNERS``).
BUCKET = "LAMBDAD_OWNERS"
#: Seconds a read of the whole bucket may take.
READ_TIMEOUT = 5.0
#: The longest any one request to the bucket may take (seconds): while the servers are away
#: the client holds requests rather than failing them, and a holder that cannot renew must
#: learn it in time to stop its work before its lease ends (a quarter of the lease, when
#: shorter).
OP_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """One key's current holder and the revision to renew or release it with."""

    key: str
    owner: str
    revision: int


class NatsClaims:
    """The claims bucket of one node: ``await open()``, then claim, renew, release, read."""

    def __init__(self, link: NatsLink, lease: float) -> None:
        self._link = link
        self._wanted_lease = lease
        self._kv: KeyValue | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._watching: asyncio.Task[None] | None = None
        #: Seconds a claim lasts unrenewed (the bucket's TTL: the first node to make the
        #: bucket chose it; later nodes with another lease setting follow it).
        self.lease = lease
        self._op_timeout = min(OP_TIMEOUT, lease / 4)
        #: Set whenever another node claims, renews or releases a key (see ``watch``).
        self.changed = asyncio.Event()

    @property
    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise StoreUnavailable("the claims bucket is not open")
        return self._kv

    async def open(self) -> None:
        """Make the bucket, or open it as another node made it; start watching it."""
        js = self._link.client.jetstream()
        try:
            try:
                self._kv = await js.key_value(BUCKET)
            except nats.js.errors.BucketNotFoundError:
                config = KeyValueConfig(
                    bucket=BUCKET,
                    history=1,
                    ttl=self._wanted_lease,
                    storage=StorageType.FILE,
                    description="lambdad: which node runs each poller and the schedules",
                )
                self._kv = await js.create_key_value(config)
            status = await self._kv.status()
            if status.ttl:
                self.lease = float(status.ttl)
            self._watcher = await self._kv.watchall(meta_only=True)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"the claims bucket {BUCKET}: {exc!r}") from exc
        self._watching = asyncio.create_task(self._watch(self._watcher), name="claims-watch")

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        """Set ``changed`` when a key appears or goes (not on renewals: every node renews
        every few seconds, and a renewal changes nobody's plan)."""
        known: set[str] = set()
        with contextlib.suppress(asyncio.CancelledError):
            async for entry in watcher:
                if entry is None:
                    continue
                if entry.operation in (KV_DEL, KV_PURGE):
                    known.discard(entry.key)
                elif entry.key in known:
                    continue
                else:
                    known.add(entry.key)
                self.changed.set()

    async def close(self) -> None:
        """Stop watching (claims stay: ``release`` them first). Idempotent."""
        watcher, self._watcher = self._watcher, None
        self._kv = None
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError, AttributeError):
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
        watching, self._watching = self._watching, None
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching

    async def claims(self) -> dict[str, Claim]:
        """Every key held now, with its holder and revision."""
        try:
            async with asyncio.timeout(self._op_timeout):
                return await self._read()
        except TimeoutError as exc:
            raise StoreUnavailable("reading the claims bucket: timed out") from exc

    async def _read(self) -> dict[str, Claim]:
        found: dict[str, Claim] = {}
        try:
            watcher = await self._bucket.watchall()
            try:
                while True:
                    entry = await watcher.updates(timeout=READ_TIMEOUT)  # type: ignore[no-untyped-call]
                    if entry is None:
                        break
                    if entry.operation in (KV_DEL, KV_PURGE) or entry.value is None:
                        found.pop(entry.key, None)
                    else:
                        found[entry.key] = Claim(entry.key, entry.value.decode(), entry.revision)
                    if entry.delta == 0:
                        break
            finally:
                with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                    async with asyncio.timeout(self._op_timeout):
                        await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            # str(), not repr(): a JetStream APIError's repr drops its code and description.
            raise StoreUnavailable(f"reading the claims bucket: {exc}") from exc
        return found

    async def claim(self, key: str, owner: str) -> int | None:
        """Hold ``key`` for ``owner`` if nobody does: its revision, or None when it is held."""
        try:
            async with asyncio.timeout(self._op_timeout):
                return int(await self._bucket.create(key, owner.encode()))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"claiming {key}: {exc!r}") from exc

    async def renew(self, key: str, owner: str, revision: int) -> int | None:
        """Renew ``owner``'s claim made or renewed at ``revision``: the new revision, or None
        when the claim is no longer that one (it expired, or another node holds it)."""
        try:
            async with asyncio.timeout(self._op_timeout):
                return int(await self._bucket.update(key, owner.encode(), last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"renewing {key}: {exc!r}") from exc

    async def release(self, key: str, revision: int) -> None:
        """Give ``key`` up, unless it changed since ``revision`` (then it is not ours)."""
        try:
            async with asyncio.timeout(self._op_timeout):
                await self._bucket.delete(key, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        except nats.js.errors.APIError as exc:
            if exc.err_code not in (10071, 10164):  # changed since: not ours any more
                raise StoreUnavailable(f"releasing {key}: {exc!r}") from exc
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"releasing {key}: {exc!r}") from exc
