"""``lambdad serve``: run the server in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambdad.config import ROLES, Settings, load_settings

if TYPE_CHECKING:
    from lambdad.app import Lambdad

log = logging.getLogger("lambdad")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("serve", help="run the lambdad server in the foreground")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 9000; 0 = any)")
    parser.add_argument("--data-dir", type=Path, help="where metadata, code and logs live")
    parser.add_argument(
        "--store-url",
        help="a postgresql:// URL: keep the metadata and code there (default: data dir)",
    )
    parser.add_argument(
        "--nats-url",
        help="the cluster's nats:// URL: route invokes between nodes (docs/cluster.md)",
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        help="what this node does in a cluster: all (default), api or worker (docs/cluster.md)",
    )
    parser.add_argument("--config", type=Path, help="a TOML settings file")
    parser.set_defaults(run=run)


async def _serve(settings: Settings) -> int:
    # The server is imported here, not at the top: the command line is one parser, and every
    # other command (a thin HTTP client) would pay lambdad's whole import, some 0.8 s of CPU.
    from lambdad.app import Lambdad, StartFailed
    from lambdad.runtime.sandbox.linux import SandboxUnavailable
    from lambdad.store.base import StoreUnavailable

    try:
        server = Lambdad(settings)
    except SandboxUnavailable as exc:
        print(f"lambdad: cannot start: the Linux sandbox is unavailable: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"lambdad: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except StartFailed as exc:  # what started has been stopped again
        print(f"lambdad: cannot start: {exc}", file=sys.stderr)
        return 1
    stopped = False
    try:
        print(
            f"lambdad listening on http://{settings.host}:{server.port} "
            f"(data: {settings.data_dir}, sandbox: {server.sandbox.name}, "
            f"role: {settings.role})",
            flush=True,
        )
        if server.console is not None:
            print(
                f"web console on http://{settings.host}:{server.console.port}/console/",
                flush=True,
            )
        await stop.wait()
        log.info("stopping")
    finally:
        stopped = await _close(server)
    return 0 if stopped else 1


async def _close(server: Lambdad) -> bool:
    """Stop every part; False (and a message) if some failed to stop."""
    from lambdad.app import CloseFailed

    try:
        await server.close()
    except CloseFailed as exc:  # each failure is logged; every other part is stopped
        print(f"lambdad: stopped with errors: {exc}", file=sys.stderr)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            {
                "host": args.host,
                "port": args.port,
                "data_dir": args.data_dir,
                "store_url": args.store_url,
                "nats_url": args.nats_url,
                "role": args.role,
            },
            config_file=args.config,
        )
    except (ValueError, OSError) as exc:
        print(f"lambdad: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    code: int = runner(_serve(settings))
    return code
