"""The HTTP side of lambdad: the aiohttp application over the parts it serves, and its listener.

The parts themselves are built and wired by the composition root, ``lambdad.app``; this module
only turns them into routes (``build_app``) and listens (``HttpListener``).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from lambdad.api import (
    cloudwatch_api,  # noqa: F401  (registers CloudWatch's operations)
    cloudwatch_front,
    console,
    durable_api,
    durable_callbacks_api,
    event_config_api,
    events_api,
    http,
    lambda_api,
    layers_api,
    limits,
    live_tail,
    logs_api,
    mappings_api,
    policy_api,
    prometheus,
    provisioned_api,
    roles,
    runtime_management_api,
    scheduler_api,
    stream_api,
    target_front,
    url_front,
    urls_api,
)
from lambdad.api import platform as platform_api
from lambdad.api import traces as traces_api
from lambdad.api.auth import VERIFIER, function_alive, sigv4_middleware
from lambdad.api.errors import error_middleware
from lambdad.api.sigv4 import SigV4Verifier
from lambdad.api.url_host import UrlShape
from lambdad.api.wire import decode
from lambdad.control.concurrency import Reservations
from lambdad.control.event_config import EventInvokeConfigs
from lambdad.control.functions import Functions
from lambdad.control.mappings import EventSourceMappings
from lambdad.control.permissions import FunctionPolicies
from lambdad.control.provisioned import ProvisionedConfigs
from lambdad.control.rules import EventRules
from lambdad.control.schedules import Schedules
from lambdad.control.urls import FunctionUrls
from lambdad.events.durable import DurableEngine
from lambdad.invoke.provisioned import Provisioner
from lambdad.invoke.service import Invoker
from lambdad.observe.logs import LogStore
from lambdad.observe.metrics import Metrics
from lambdad.observe.traces import Traces
from lambdad.store.base import BlobStore

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Services:
    """What the HTTP handlers reach: the parts the composition root built."""

    account_id: str
    default_region: str
    functions: Functions
    invoker: Invoker
    reservations: Reservations
    event_configs: EventInvokeConfigs
    policies: FunctionPolicies
    provisioned: ProvisionedConfigs
    provisioner: Provisioner
    blobs: BlobStore
    logs: LogStore
    doctor: Callable[[], dict[str, Any]]
    function_urls: FunctionUrls
    url_shape: UrlShape
    mappings: EventSourceMappings
    #: EventBridge scheduled rules (``AWSEvents.*`` on ``POST /``).
    rules: EventRules
    #: Lambda's metrics and EMF custom metrics; lambdad's own gauges for ``/metrics``.
    metrics: Metrics
    #: Traces: the functions' X-Ray segments and lambdad's spans (``/_lambdad/traces``).
    traces: Traces
    own_gauges: Callable[[], dict[str, float]]
    schedules: Schedules
    durable: DurableEngine
    #: The mappings' status and lag (``Pollers.status``), for ``/_lambdad/esm`` and doctor.
    esm_status: platform_api.EsmStatus | None = None
    #: Verifies SigV4 signatures against the keys of ``lambdad keys`` (function URLs with
    #: ``AuthType=AWS_IAM`` use it in either mode).
    verifier: SigV4Verifier | None = None
    #: "sigv4": every API request is verified by ``verifier``; "open": none is.
    auth: str = "open"
    #: This node's role (``all``, ``api``, ``worker``): a worker serves no API.
    role: str = "all"
    #: Every node of the cluster (``/_lambdad/cluster``).
    nodes: platform_api.NodeList | None = None


def build_app(services: Services) -> web.Application:
    """The aiohttp application serving every front door over ``services``."""
    # Function URL requests are told apart by Host before anything of the API runs (they
    # never reach the API's handlers, signed or not).
    middlewares: list[Middleware] = [url_front.url_middleware, error_middleware]
    if services.role == "worker":
        middlewares.insert(0, roles.worker_middleware)
    if services.auth == "sigv4" and services.verifier is not None:
        middlewares.append(sigv4_middleware(services.verifier, function_alive(services.functions)))
    app = web.Application(middlewares=middlewares, client_max_size=limits.MAX_BODY)
    _serve_api(app, services)
    return app


def build_console_app(services: Services) -> web.Application:
    """The web console's application (its own port): the console's pages and the same API
    routes as ``build_app``, a request speaking for the caller its session cookie names
    (SigV4 mode) instead of a signature. No function URLs here: Host is never looked at."""
    verifier = services.verifier if services.auth == "sigv4" else None
    sessions = console.Sessions()
    middlewares: list[Middleware] = [error_middleware, console.session_middleware(sessions)]
    if services.role == "worker":
        middlewares.insert(0, roles.worker_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=limits.MAX_BODY)
    app[console.SESSIONS] = sessions
    app[console.LOGIN] = console.Login(verifier, services.default_region)
    _serve_api(app, services)
    app.add_routes(console.routes)
    return app


def _serve_api(app: web.Application, services: Services) -> None:
    """Wire ``services`` into ``app`` and add every API route."""
    app[lambda_api.FUNCTIONS] = services.functions
    app[lambda_api.INVOKER] = services.invoker
    app[lambda_api.MAPPINGS] = services.mappings
    app[lambda_api.RESERVATIONS] = services.reservations
    app[lambda_api.DURABLE] = services.durable
    app[lambda_api.ACCOUNT] = services.account_id
    app[lambda_api.DEFAULT_REGION] = services.default_region
    app[layers_api.LAYERS] = services.functions.layers
    app[event_config_api.EVENT_CONFIGS] = services.event_configs
    app[policy_api.POLICIES] = services.policies
    app[provisioned_api.CONFIGS] = services.provisioned
    app[provisioned_api.PROVISIONER] = services.provisioner
    app[platform_api.BLOBS] = services.blobs
    app[platform_api.LOGS] = services.logs
    app[traces_api.TRACES] = services.traces
    app[logs_api.LOG_STORE] = services.logs
    app[live_tail.SESSIONS] = live_tail.Sessions()
    app.on_shutdown.append(live_tail.end_sessions)
    app[platform_api.DOCTOR] = services.doctor
    if services.esm_status is not None:
        app[platform_api.ESM_STATUS] = services.esm_status
    if services.nodes is not None:
        app[platform_api.NODES] = services.nodes
    app[prometheus.METRICS] = services.metrics
    app[prometheus.OWN_GAUGES] = services.own_gauges
    app[urls_api.URLS] = services.function_urls
    app[urls_api.URL_SHAPE] = services.url_shape
    app[url_front.URL_INVOKER] = services.invoker
    app[events_api.RULES] = services.rules
    app[scheduler_api.SCHEDULES] = services.schedules
    if services.verifier is not None:
        app[VERIFIER] = services.verifier
    app.add_routes(platform_api.routes)
    app.add_routes(traces_api.routes)
    app.add_routes(prometheus.routes)
    app.add_routes(lambda_api.routes)
    app.add_routes(durable_api.routes)
    app.add_routes(durable_callbacks_api.routes)
    app.add_routes(layers_api.routes)
    app.add_routes(event_config_api.routes)
    app.add_routes(policy_api.routes)
    app.add_routes(provisioned_api.routes)
    app.add_routes(runtime_management_api.routes)
    app.add_routes(urls_api.routes)
    app.add_routes(stream_api.routes)
    app.add_routes(mappings_api.routes)
    app.add_routes(scheduler_api.routes)
    # POST /: EventBridge, CloudWatch Logs and CloudWatch's JSON 1.0, by X-Amz-Target
    app.add_routes(target_front.routes)
    # CloudWatch's metrics API in RPC v2 CBOR (cloudwatch_api's handlers register themselves)
    app.add_routes(cloudwatch_front.routes)


class ListenerState(enum.Enum):
    NEW = "new"
    LISTENING = "listening"
    CLOSED = "closed"


class HttpListener:
    """Serves an application on ``host:port`` (0: any free port, then in ``port``), each
    connection bounded by ``timeouts`` (``lambdad.api.http``)."""

    def __init__(
        self,
        app: Callable[[], web.Application],
        host: str,
        port: int,
        timeouts: http.HttpTimeouts,
        *,
        any_port_if_taken: bool = False,
    ) -> None:
        self._app = app
        self._timeouts = timeouts
        self._host = host
        self._requested_port = port
        #: A port already in use is not fatal: listen on a free one (and say so).
        self._any_port_if_taken = any_port_if_taken
        self._runner: web.AppRunner | None = None
        #: Listening sockets handed over to serve too (``serve_also``), until it starts.
        self._also: list[socket.socket] = []
        self.port: int | None = None
        self.state = ListenerState.NEW

    async def start(self) -> None:
        """Listen; ``OSError`` saying which address when it cannot."""
        if self.state is not ListenerState.NEW:
            raise RuntimeError(f"listener is {self.state.value}")
        decode.prepare()  # ~6 ms now, not ~2 ms on the first request of an operation
        self._runner = http.Runner(self._app(), self._timeouts)
        await self._runner.setup()
        try:
            sock = _listen(self._host, self._requested_port)
        except OSError as exc:
            if not (self._any_port_if_taken and exc.errno == errno.EADDRINUSE):
                raise
            log.warning("%s: listening on a free port instead", exc.strerror)
            sock = _listen(self._host, 0)
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        self.state = ListenerState.LISTENING
        also, self._also = self._also, []
        for other in also:
            await self.serve_also(other)

    async def serve_also(self, sock: socket.socket) -> None:
        """Serve the application on ``sock`` too, a listening socket this listener owns from
        now on (the cells' endpoint at their gateway: ``Sandbox.take_endpoint``): at once when
        listening, else once it starts; closed with the listener."""
        if self.state is ListenerState.CLOSED or self._runner is None:
            if self.state is ListenerState.NEW:
                self._also.append(sock)
            else:
                sock.close()
            return
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Stop listening and finish the requests in flight. Idempotent."""
        if self.state is ListenerState.CLOSED:
            return
        self.state = ListenerState.CLOSED
        runner, self._runner = self._runner, None
        also, self._also = self._also, []
        for sock in also:
            sock.close()
        if runner is not None:
            await runner.cleanup()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"{host}:{port} is already in use") from exc
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock
