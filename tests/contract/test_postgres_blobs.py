"""What the PostgreSQL blob store does beyond the shared contract: blobs shared between nodes
through the database, cached on each node's disk, checked against their key, and errors that
are the store's own (tests/postgres_server.py starts the real server)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from lambdad.store.base import BlobNotFound, StoreUnavailable, Table
from lambdad.store.postgres import PostgresStore
from lambdad.store.postgres_blobs import CHUNK_BYTES, PostgresBlobStore
from lambdad.store.postgres_schema import MIGRATION_LOCK, migrations
from tests.postgres_server import PostgresServer

T = TypeVar("T")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


def _zip(extra: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
        archive.writestr("big.bin", extra)
    return buf.getvalue()


def test_a_blob_put_through_one_node_is_fetched_once_by_another(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """A zip of several chunks stored through one node is read and unpacked by a second node
    with an empty cache; the second keeps it on its own disk, so it is still there after the
    database lost it."""
    url = postgres.database()
    data = _zip(os.urandom(2 * CHUNK_BYTES + 17))

    async def scenario() -> None:
        one = PostgresBlobStore(url, tmp_path / "one")
        two = PostgresBlobStore(url, tmp_path / "two")
        await one.open()
        await two.open()
        key = await one.put(data)
        assert key == hashlib.sha256(data).hexdigest()
        assert not (tmp_path / "two" / f"{key}.zip").exists()
        assert await two.exists(key)
        first, second = await asyncio.gather(two.unpacked(key), two.unpacked(key))
        assert first == second == tmp_path / "two" / key
        assert (first / "app.py").read_text() == "x = 1\n"
        assert (tmp_path / "two" / f"{key}.zip").read_bytes() == data
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM blob_chunks").fetchone() == (3,)
            conn.execute("DELETE FROM blob_chunks")
            conn.execute("DELETE FROM blobs")
        assert await two.get(key) == data
        await one.close()
        await two.close()

    run(scenario)


def test_two_nodes_storing_the_same_zip_at_once_store_it_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """The same bytes put through two nodes at the same time give one key, one blob row and
    one set of chunks, and neither put fails."""
    url = postgres.database()
    data = _zip(os.urandom(CHUNK_BYTES + 1))

    async def scenario() -> None:
        nodes = [PostgresBlobStore(url, tmp_path / f"n{i}") for i in range(3)]
        await asyncio.gather(*(n.open() for n in nodes))
        keys = await asyncio.gather(*(n.put(data) for n in nodes))
        assert len(set(keys)) == 1
        await asyncio.gather(*(n.close() for n in nodes))

    run(scenario)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), sum(chunks) FROM blobs").fetchone() == (1, 2)
        assert conn.execute("SELECT count(*) FROM blob_chunks").fetchone() == (2,)


def test_a_damaged_blob_is_refused_not_cached(postgres: PostgresServer, tmp_path: Path) -> None:
    """Bytes in the database that do not hash to their key are StoreUnavailable for the node
    fetching them, which caches nothing."""
    url = postgres.database()

    async def scenario() -> None:
        one = PostgresBlobStore(url, tmp_path / "one")
        two = PostgresBlobStore(url, tmp_path / "two")
        await one.open()
        await two.open()
        key = await one.put(_zip(b"payload"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE blob_chunks SET data = 'tampered'::bytea")
        with pytest.raises(StoreUnavailable, match="damaged"):
            await two.unpacked(key)
        assert not (tmp_path / "two" / f"{key}.zip").exists()
        await one.close()
        await two.close()

    run(scenario)


def test_a_closed_or_unreachable_store_is_unavailable(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """After close, or with no server at the URL, the store raises StoreUnavailable naming the
    database without its password, and why (the refused connection itself); a key never stored
    is still BlobNotFound when it is open."""
    url = postgres.database()

    async def scenario() -> None:
        blobs = PostgresBlobStore(url, tmp_path / "c")
        await blobs.open()
        with pytest.raises(BlobNotFound):
            await blobs.get("0" * 64)
        await blobs.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await blobs.put(_zip())
        nowhere = PostgresBlobStore("postgresql://u:s3cret@127.0.0.1:1/db", tmp_path / "d")
        with pytest.raises(StoreUnavailable) as raised:
            await nowhere.open()
        assert "127.0.0.1:1/db" in str(raised.value)
        assert "s3cret" not in str(raised.value)
        assert "Connection refused" in str(raised.value)  # the driver's reason, not a pool's wait
        await nowhere.close()

    run(scenario)


def test_the_code_store_shares_the_schema_and_its_refusal(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """The code store opened first on a new database migrates it, the metadata store opened
    after uses that schema (each migration recorded once), and on a database newer than this
    lambdad the code store is StoreUnavailable naming itself, as the metadata store is."""
    url = postgres.database()

    async def scenario() -> None:
        blobs = PostgresBlobStore(url, tmp_path / "c")
        await blobs.open()
        store = PostgresStore(url)
        await store.open()
        await store.put(Table.FUNCTIONS, ("a", "r", "fn"), {})
        await store.close()
        await blobs.close()
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT version FROM lambdad_schema_version ORDER BY 1").fetchall()
            assert rows == [(m.version,) for m in migrations()]
            conn.execute("INSERT INTO lambdad_schema_version (version, name) VALUES (999, 'x')")
        newer = PostgresBlobStore(url, tmp_path / "n")
        with pytest.raises(StoreUnavailable, match=r"the code store .*newer than this lambdad"):
            await newer.open()
        await newer.close()

    run(scenario)


def test_the_code_store_only_reads_a_schema_the_metadata_store_migrated(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Opened after the metadata store (as a node opens them), the code store reads the
    schema's version and migrates nothing: it opens while another session holds the migration
    lock, which a second migration would wait for."""
    url = postgres.database()

    async def scenario() -> None:
        store = PostgresStore(url)
        await store.open()
        with psycopg.connect(url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            blobs = PostgresBlobStore(url, tmp_path / "c")
            await asyncio.wait_for(blobs.open(), 30)  # a hang guard: a migration would wait
            await blobs.close()
        await store.close()

    run(scenario)


def test_the_store_url_selects_the_code_store(tmp_path: Path) -> None:
    """With no store URL the code lives in the data dir alone (the embedded default); with a
    PostgreSQL one it lives in that database, cached in the data dir's ``code``."""
    from lambdad.app import blob_store
    from lambdad.config import Settings
    from lambdad.store.files import FileBlobStore

    embedded = blob_store(Settings(data_dir=tmp_path))
    assert type(embedded) is FileBlobStore
    url = "postgresql://u@127.0.0.1:1/db"
    clustered = blob_store(Settings(data_dir=tmp_path, store_url=url))
    assert isinstance(clustered, PostgresBlobStore)
    assert clustered.state.value == "new"
