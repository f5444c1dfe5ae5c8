"""Ownership claims in a JetStream key-value bucket (cluster mode, docs/cluster.md).

Each claim is one key of the bucket ``LAMBDAD_OWNERS`` whose value is the id of the node
holding it. A claim is made with create-if-absent (the first node wins), renewed with a
compare-and-swap on the revision the holder last wrote (a node whose claim was taken or lost
cannot renew it), and released with a delete on that revision. The bucket's TTL (its streams'
max age) is the lease: a key nobody renewed for that long is removed by the server, so a dead
node's claims free themselves. The policy (which node should hold what, what runs while it
does) is ``events/owners.py``'s; this module only speaks to the bucket, and turns the client's
errors into the store's (``StoreUnavailable``).

Reads come from one long-lived watcher of the whole bucket, kept for the life of the node: its
entries make a view of every key (holder, revision, when it will expire), and a read asks the
stream only for its last sequence and waits until the watcher has seen that far. A watcher (an
ephemeral JetStream consumer) per read was rejected: nats-py keeps each one on the server for
its five-minute inactive threshold after ``stop()``, so a node reading four times a lease
reached the server's 1000 consumers of the stream within minutes, and every read after failed
(``BadRequestError`` 10026, "maximum consumers limit reached"). A key the server expired (its
max age) sends the watcher nothing, so the view drops a key once its last write is a lease old.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from lambdad.store.base import StoreUnavailable
from lambdad.store.nats_link import NatsLink

log = logging.getLogger(__name__)

#: The bucket's name (its stream is ``KV_LAMBDAD_OWNERS``).
BUCKET = "LAMBDAD_OWNERS"
#: The watcher's stream (the bucket's).
STREAM = f"KV_{BUCKET}"
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
        #: The view: each key's claim and when (``time.monotonic``) it expires unrenewed.
        self._view: dict[str, tuple[Claim, float]] = {}
        #: Each key's last revision seen (deletes too), so a late entry never undoes a newer.
        self._revisions: dict[str, int] = {}
        #: The last stream sequence the view reflects, and an event set as it moves.
        self._seen = 0
        self._moved = asyncio.Event()
        #: When (``time.monotonic``) the watcher was last made.
        self._watched = 0.0

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
            self._watcher = await self._watchall()
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"the claims bucket {BUCKET}: {exc!r}") from exc
        self._watching = asyncio.create_task(self._watch(self._watcher), name="claims-watch")

    async def _rewatch(self) -> None:
        """Replace the watcher with a new one and the view with what it reads."""
        await self._unwatch()
        self._view.clear()
        self._revisions.clear()
        self._seen = 0
        try:
            async with asyncio.timeout(self._op_timeout):
                self._watcher = await self._watchall()
        except (nats.errors.Error, TimeoutError, OSError, StoreUnavailable) as exc:
            log.warning("claims: watching the bucket again failed: %s", exc)
            return
        self._watching = asyncio.create_task(self._watch(self._watcher), name="claims-watch")

    async def _watchall(self) -> KeyValue.KeyWatcher:
        """A watcher of every key. Its consumer goes from the server soon after it stops
        (nats-py's default keeps it five minutes: replaced watchers would pile up)."""
        self._watched = time.monotonic()
        return await self._bucket.watchall(inactive_threshold=max(5.0, 2 * self.lease))

    async def _unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError, AttributeError, OSError):
                async with asyncio.timeout(self._op_timeout):
                    await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
        watching, self._watching = self._watching, None
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching

    async def _last_sequence(self) -> int:
        """The stream's last message's sequence (0 when it holds none). The watcher gets that
        message (the last of its key) and every one after, in order; the ones before it are
        either delivered before it or gone (superseded, expired). nats-py's "nothing pending"
        marker (a ``None`` entry) is not used: it can come before entries already sent."""
        info = await self._link.client.jetstream().stream_info(STREAM)
        return int(info.state.last_seq) if info.state.messages else 0

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        """Keep the view; set ``changed`` when a key appears or goes (not on renewals: every
        node renews every few seconds, and a renewal changes nobody's plan)."""
        with contextlib.suppress(asyncio.CancelledError):
            async for entry in watcher:
                if entry is None:
                    continue
                value = None if entry.operation in (KV_DEL, KV_PURGE) else entry.value
                owner = None if value is None else value.decode()
                age = 0.0
                if entry.created is not None:
                    age = min(max(time.time() - entry.created.timestamp(), 0.0), self.lease)
                appeared, gone = self._note(entry.key, owner, entry.revision, age)
                self._saw(entry.revision)
                if appeared or gone:
                    self.changed.set()

    def _saw(self, sequence: int) -> None:
        if sequence > self._seen:
            self._seen = sequence
            self._moved.set()

    def _note(self, key: str, owner: str | None, revision: int, age: float) -> tuple[bool, bool]:
        """Put a write (``owner`` None: a delete) of ``revision`` made ``age`` seconds ago in
        the view, unless the view has a newer one: whether the key appeared, or went."""
        if revision <= self._revisions.get(key, 0):
            return False, False
        self._revisions[key] = revision
        had = key in self._view
        if owner is None:
            self._view.pop(key, None)
            return False, had
        expires = time.monotonic() + self.lease - age
        self._view[key] = (Claim(key, owner, revision), expires)
        return not had, False

    async def close(self) -> None:
        """Stop watching (claims stay: ``release`` them first). Idempotent."""
        await self._unwatch()
        self._kv = None

    async def claims(self) -> dict[str, Claim]:
        """Every key held now, with its holder and revision: the view, once it has caught up
        with the stream's last sequence (one small request; no consumer is made)."""
        if self._kv is None:
            raise StoreUnavailable("the claims bucket is not open")
        if self._watching is None or self._watching.done():
            await self._rewatch()
        last: int | None = None
        try:
            async with asyncio.timeout(self._op_timeout):
                if self._watching is None:
                    raise StoreUnavailable("reading the claims bucket: no watcher")
                last = await self._last_sequence()
                while self._seen < last and not self._watching.done():
                    self._moved.clear()
                    await self._moved.wait()
                if self._watching.done():
                    raise TimeoutError
        except TimeoutError as exc:
            if last is not None and time.monotonic() - self._watched > self.lease:
                # The stream answered but the watcher is behind (its consumer was lost with
                # a server's restart, say): make a new one for the next read (not more than
                # once a lease: on a slow host, the old one may only be late).
                await self._rewatch()
            raise StoreUnavailable("reading the claims bucket: timed out") from exc
        except (nats.errors.Error, OSError) as exc:
            # str(), not repr(): a JetStream APIError's repr drops its code and description.
            raise StoreUnavailable(f"reading the claims bucket: {exc}") from exc
        now = time.monotonic()
        return {key: claim for key, (claim, expires) in self._view.items() if now < expires}

    async def claim(self, key: str, owner: str) -> int | None:
        """Hold ``key`` for ``owner`` if nobody does: its revision, or None when it is held."""
        try:
            async with asyncio.timeout(self._op_timeout):
                revision = int(await self._bucket.create(key, owner.encode()))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"claiming {key}: {exc!r}") from exc
        self._note(key, owner, revision, 0.0)
        return revision

    async def renew(self, key: str, owner: str, revision: int) -> int | None:
        """Renew ``owner``'s claim made or renewed at ``revision``: the new revision, or None
        when the claim is no longer that one (it expired, or another node holds it)."""
        try:
            async with asyncio.timeout(self._op_timeout):
                renewed = int(await self._bucket.update(key, owner.encode(), last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"renewing {key}: {exc!r}") from exc
        self._note(key, owner, renewed, 0.0)
        return renewed

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
