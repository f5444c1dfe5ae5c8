"""The composition root: builds every part from ``Settings``, starts them in order, stops them
in reverse.
"""

from __future__ import annotations

import enum
import logging
import os
import platform
import socket
import sys
from typing import Any

from aiohttp import web

from lambdad import config as config_module
from lambdad.api import event_config_api, lambda_api, layers_api, provisioned_api
from lambdad.api import platform as platform_api
from lambdad.api.errors import error_middleware
from lambdad.config import Settings
from lambdad.control.concurrency import Reservations
from lambdad.control.event_config import EventInvokeConfigs
from lambdad.control.functions import Functions
from lambdad.control.provisioned import ProvisionedConfigs
from lambdad.invoke.concurrency import Leases
from lambdad.invoke.destinations import Destinations
from lambdad.invoke.dispatcher import Dispatcher
from lambdad.invoke.provisioned import Provisioner
from lambdad.invoke.service import Invoker
from lambdad.invoke.snapshots import SnapshotMaker
from lambdad.observe.logs import LogStore
from lambdad.runtime import runtimes
from lambdad.runtime.environment import EnvironmentContext
from lambdad.runtime.pool import RuntimeManager
from lambdad.runtime.sandbox import linux
from lambdad.runtime.sandbox.base import Sandbox
from lambdad.runtime.sandbox.process import PlainSandbox
from lambdad.runtime.scaling import ScaleRate
from lambdad.store.base import BlobStore, Queue, Store
from lambdad.store.files import FileBlobStore
from lambdad.store.sqlite import SqliteStore
from lambdad.store.sqlite_queue import SqliteQueue

log = logging.getLogger("lambdad")

#: The API accepts bodies up to a 50 MB zip in base64; handlers enforce per-call limits.
_CLIENT_MAX = lambda_api.CODE_REQUEST_LIMIT + 1024


class ServerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class LambdadServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = ServerState.NEW
        data = settings.data_dir
        self.store: Store = SqliteStore(data / "lambdad.db")
        self.blobs: BlobStore = FileBlobStore(data / "code")
        self.queue: Queue = SqliteQueue(data / "queue.db")
        self.logs = LogStore(data / "logs")
        self.python_path = ":".join(
            p for p in (settings.python_search_path, config_module.host_path()) if p
        )
        self.sandbox = make_sandbox(settings, self.python_path)
        self.functions = Functions(self.store, self.blobs)
        ctx = EnvironmentContext(
            sandbox=self.sandbox,
            logs=self.logs,
            runs_dir=data / "run" / "envs",
            account_id=settings.account_id,
            region=settings.default_region,
            init_timeout=settings.init_timeout,
            host_path=config_module.host_path(),
            freeze_delay=settings.scaled(settings.freeze_delay),
            node=settings.node,
            python_path=self.python_path,
            echo=(lambda line: log.info("%s", line)) if settings.echo_function_logs else None,
        )
        self.runtime = RuntimeManager(
            ctx,
            self.blobs,
            settings.idle_timeout,
            ScaleRate(settings.scale_rate, settings.scaled(settings.scale_window)),
            settings.max_environments,
        )
        self.functions.on_change(self.runtime.function_changed)
        self.snapshots = SnapshotMaker(self.functions, self.runtime)
        self.reservations = Reservations(self.store, self.functions, settings.concurrency_limit)
        self.event_configs = EventInvokeConfigs(self.store, self.functions)
        self.invoker = Invoker(
            self.functions,
            self.runtime,
            self.queue,
            Leases(self.reservations),
            self.event_configs,
        )
        self.provisioned = ProvisionedConfigs(self.store, self.functions, self.reservations)
        self.provisioner = Provisioner(
            settings.account_id, self.functions, self.provisioned, self.runtime
        )
        self.dispatcher = Dispatcher(
            self.queue,
            self.invoker,
            settings.account_id,
            throttle_delay=settings.scaled(1.0),
            time_scale=settings.time_scale,
            configs=self.event_configs,
            destinations=Destinations(
                self.invoker,
                endpoint_url=settings.aws_endpoint_url,
                access_key=settings.aws_access_key_id,
                secret_key=settings.aws_secret_access_key,
                retry_delay=settings.scaled(1.0),
            ),
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware], client_max_size=_CLIENT_MAX)
        app[lambda_api.FUNCTIONS] = self.functions
        app[lambda_api.INVOKER] = self.invoker
        app[lambda_api.RESERVATIONS] = self.reservations
        app[lambda_api.ACCOUNT] = self.settings.account_id
        app[lambda_api.DEFAULT_REGION] = self.settings.default_region
        app[layers_api.LAYERS] = self.functions.layers
        app[event_config_api.EVENT_CONFIGS] = self.event_configs
        app[provisioned_api.CONFIGS] = self.provisioned
        app[provisioned_api.PROVISIONER] = self.provisioner
        app[platform_api.BLOBS] = self.blobs
        app[platform_api.LOGS] = self.logs
        app[platform_api.DOCTOR] = self.doctor
        app.add_routes(platform_api.routes)
        app.add_routes(lambda_api.routes)
        app.add_routes(layers_api.routes)
        app.add_routes(event_config_api.routes)
        app.add_routes(provisioned_api.routes)
        return app

    async def start(self) -> None:
        """Open storage, start the runtime side, then listen (so /health means ready)."""
        if self.state is not ServerState.NEW:
            raise RuntimeError("server already started")
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        await self.queue.open()
        await self.logs.open()
        await self.runtime.start()
        await self.snapshots.start(self.settings.account_id)
        await self.provisioner.start()
        await self.dispatcher.start()
        self._runner = web.AppRunner(self.build_app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = _listen(self.settings.host, self.settings.port)
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, shutdown_timeout=1.0).start()
        self.state = ServerState.RUNNING

    async def close(self) -> None:
        if self.state is ServerState.CLOSED:
            return
        self.state = ServerState.CLOSED
        if self._runner is not None:
            await self._runner.cleanup()
        await self.dispatcher.close()
        await self.invoker.close()
        await self.snapshots.close()
        await self.runtime.close()
        await self.logs.close()
        await self.queue.close()
        await self.store.close()

    def doctor(self) -> dict[str, Any]:
        return {
            "lambdad": {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "root": os.geteuid() == 0 if hasattr(os, "geteuid") else False,
                "data_dir": str(self.settings.data_dir),
            },
            "sandbox": {"kind": self.sandbox.name, **self.sandbox.protections()},
            "runtimes": runtimes.inventory(self.python_path, self.settings.node),
        }


def make_sandbox(settings: Settings, python_path: str) -> Sandbox:
    """The sandbox the settings ask for; ``auto`` takes the Linux one where it can run."""
    runs = settings.data_dir / "run" / "envs"
    if settings.sandbox == "process" or (
        settings.sandbox == "auto" and linux.unavailable_reason() is not None
    ):
        return PlainSandbox(runtimes.BOOTSTRAPS)
    shared = runtimes.interpreter_dirs(python_path, settings.node)
    return linux.LinuxSandbox(
        runs,
        runtimes.BOOTSTRAPS,
        shared,
        fork_python=settings.fork_python,
        pythons=runtimes.python_interpreters(python_path),
    )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock
