"""Settings: one frozen value, built once at the edge and passed down to constructors.

Sources, most specific first: command-line flags, ``LAMBDAD_*`` environment variables, an
optional TOML config file (``--config`` or ``LAMBDAD_CONFIG``), then the embedded defaults.
This is the only module of lambdad that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "LAMBDAD_"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lambdad"


#: The roles of ``lambdad serve --role`` (docs/cluster.md).
ROLES = ("all", "api", "worker")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything lambdad can be told. Durations are seconds."""

    host: str = "127.0.0.1"
    port: int = 9000
    #: The web console's own port (``http://<host>:<console_port>/console/``, docs/console.md);
    #: -1: no console, 0: any free port; a port in use falls back to a free one (logged).
    console_port: int = 9001
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    #: Where the metadata (functions, versions, configs, ...) lives. Empty: the embedded
    #: SQLite database in ``data_dir``. ``postgresql://user:password@host:port/dbname``: that
    #: PostgreSQL database, shared by every lambdad given the same URL (docs/cluster.md; needs
    #: ``pip install 'lambdad[postgres]'``). Code and layer zips are stored there too, with
    #: ``data_dir/code`` as this node's cache of them; the event queue and logs stay in
    #: ``data_dir``.
    store_url: str = ""
    #: What this node does in a cluster (docs/cluster.md): "all" (the default: everything, as
    #: a single process does), "api" (the API and function URLs) or "worker" (runs
    #: environments; its listener answers only health and the cluster's node list). A role
    #: other than "all" needs ``store_url``.
    role: str = "all"
    #: The cluster's NATS servers (``nats://host:4222``, several separated by commas;
    #: docs/cluster.md; needs ``pip install 'lambdad[nats]'``). Empty: no NATS, every invoke
    #: runs on the node that received it. With a URL (and ``store_url``), api nodes route
    #: invocations to workers over NATS.
    nats_url: str = ""
    #: How long a node of a shared store counts as up after its last heartbeat (it beats
    #: every third of this); a clean stop removes it at once. Not scaled.
    node_lease: float = 15.0
    #: With ``nats_url``: seconds an async event taken by a node may go without word from it
    #: before JetStream hands it to another node (a live node sends word every third of it
    #: while the event runs). What a SIGKILLed worker's events wait. Not scaled.
    queue_ack_wait: float = 30.0
    #: The account of every request in open mode, and of data written before accounts.
    account_id: str = "000000000000"
    #: Who may call the API: "open" (any credentials, all in ``account_id``) or "sigv4"
    #: (SigV4 signatures by the keys of ``lambdad keys``, each in its own account).
    auth: str = "open"
    default_region: str = "us-east-1"
    #: Multiplies every platform-defined delay (retry delays, event age checks, batching
    #: windows, keep-alive). Never function timeouts.
    time_scale: float = 1.0
    #: How long an idle execution environment is kept warm before it is reaped (scaled).
    keep_alive: float = 300.0
    #: Idle time before an environment is frozen (scaled); back-to-back invocations of a
    #: warm environment then skip the freeze and thaw.
    freeze_delay: float = 0.01
    #: The on-demand init phase cap; a longer init is retried inside the first invoke.
    init_timeout: float = 10.0
    #: The account's concurrent executions per region (AWS: ``ConcurrentExecutions``, 1000);
    #: at least 100 of them (all of them, below 100) always stay unreserved.
    concurrency_limit: int = 1000
    #: Lambda's concurrency scaling rate: new execution environments each function may add
    #: per ``scale_window`` seconds (scaled), refilled continuously.
    scale_rate: int = 1000
    scale_window: float = 10.0
    #: Upper bound on on-demand execution environments alive at once across all functions
    #: (0: none). At the bound an idle one of any function is closed to make room; with none
    #: idle the invoke is throttled (429). Provisioned and SnapStart templates not counted.
    max_environments: int = 256
    #: The ``node`` executable for nodejs runtimes; empty means "look on PATH".
    node: str = ""
    #: Extra directories searched for ``pythonX.Y`` interpreters, ``:``-separated.
    python_search_path: str = ""
    #: How environments are isolated: "auto" (the Linux sandbox when running as root with
    #: cgroups, else plain processes), "linux", or "process".
    sandbox: str = "auto"
    #: In the Linux sandbox, start Python runtimes on lambdad's own interpreter as forks of a
    #: template that has already started the interpreter and imported the bootstrap.
    fork_python: bool = True
    #: In the Linux sandbox, give every cell a network namespace of its own (outbound only,
    #: behind NAT; docs/sandbox.md). Off, or where it cannot be built, cells share the host's.
    cell_network: bool = True
    #: Cells' networks (namespace, veth, address, route) kept made ahead of need, so that a
    #: burst of cold starts beyond the spare cells joins them instead of making its own,
    #: which the kernel serialises (docs/sandbox.md). 0: every cell makes its own.
    cell_networks_ahead: int = 128
    #: Outbound destinations cells may not reach: ``CIDR[:port]`` entries, comma-separated
    #: (``10.0.0.0/8, 192.168.1.7:443``). Enforced by the kernel (nftables).
    egress_deny: str = ""
    #: When set, the only outbound destinations cells may reach (and the host's nameservers),
    #: ``CIDR[:port]`` entries; ``egress_deny`` wins over it.
    egress_allow: str = ""
    #: The ``resolv.conf`` the cells read (with their own network namespace). Empty: the
    #: host's, except where it names only loopback resolvers (systemd-resolved's 127.0.0.53,
    #: out of a cell's reach) and ``/run/systemd/resolve/resolv.conf`` names their upstream
    #: servers: then that file.
    cell_resolv_conf: str = ""
    #: How long a new function stays ``Pending`` and an update ``InProgress`` before lambdad
    #: completes it (not scaled). 0: right after the answer, and a read, invoke or update
    #: arriving first completes it; longer, invokes and updates are refused as AWS refuses them
    #: (docs/function-states.md). For trying out clients' waiters and retries.
    function_settle_delay: float = 0.0
    log_level: str = "INFO"
    #: The log store's bound (bytes of events as CloudWatch Logs counts them, on disk and in
    #: memory): past it the oldest segment of any group is dropped. 0: unbounded.
    log_max_bytes: int = 256 * 1024 * 1024
    #: Print environment output to lambdad's own log as well (debugging aid).
    echo_function_logs: bool = False
    #: The AWS-compatible endpoint (e.g. a LocalStack or moto server) through which async
    #: destinations and dead-letter queues reach SQS, SNS and EventBridge. Empty: none, and
    #: such deliveries are logged as failed (lambdad never reaches the internet on its own).
    aws_endpoint_url: str = ""
    #: Per-service endpoints of event sources (SQS queues, Kinesis streams, DynamoDB streams),
    #: named like botocore's ``AWS_ENDPOINT_URL_<SERVICE>``; empty: ``aws_endpoint_url``.
    aws_endpoint_url_sqs: str = ""
    aws_endpoint_url_kinesis: str = ""
    aws_endpoint_url_dynamodbstreams: str = ""
    #: Amazon MQ for RabbitMQ brokers lambdad reaches: JSON ``{"<broker ARN>":
    #: "amqp://host:port"}`` (``amqps://`` for TLS). A mapping of a broker not named here is
    #: refused at create.
    mq_brokers: str = ""
    #: The Secrets Manager secrets event sources name (lambdad has no Secrets Manager): JSON
    #: ``{"<secret ARN>": {"username": "...", "password": "..."}}``.
    secrets: str = ""
    #: Credentials lambdad signs those requests with; dummy ones when empty.
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    #: Log a warning when the event loop was blocked for longer than this many milliseconds
    #: (``lambdad.observe.loopwatch``; the test suite runs with 100). 0: no watchdog.
    loop_watchdog_ms: int = 0
    #: How long the API's HTTP connections may wait (never scaled): a connection with no
    #: request in flight is closed after ``http_idle_timeout``; a request head must arrive
    #: within ``http_header_timeout`` of its first byte, and its body within
    #: ``http_body_timeout`` of the head.
    http_idle_timeout: float = 60.0
    http_header_timeout: float = 10.0
    http_body_timeout: float = 300.0
    #: How ``FunctionUrl`` is written: ``<scheme>://<url-id>.lambda-url.<region>.<domain>:<port>/``
    #: (port 0: the port lambdad listens on; the scheme's default port is left out). Any
    #: request whose Host is ``<url-id>.lambda-url.<region>.<anything>`` is served as that URL,
    #: so these only change what is shown (behind a reverse proxy or a DNS wildcard).
    #: The schedulers' clock (EventBridge Scheduler and scheduled rules):
    #: ``<ISO-8601 instant>[,<speed>]`` makes their "now" start at that instant when lambdad
    #: starts and advance ``speed`` times faster than real time. Empty: the real clock.
    #: ``time_scale`` never changes when schedules fire.
    scheduler_clock: str = ""
    url_scheme: str = "http"
    url_domain: str = "localhost"
    url_port: int = 0
    #: Record Lambda's metrics and EMF custom metrics (docs/metrics.md); off: none recorded,
    #: ``/metrics`` shows lambdad's own gauges only.
    metrics: bool = True
    #: How long one-minute metric data is kept, in days (CloudWatch keeps it 15 days).
    metrics_retention_days: float = 15.0
    #: How often metrics are written to the store (seconds, not scaled; also at close).
    metrics_flush_interval: float = 10.0
    #: On a shared store (a cluster): how soon the metrics a node recorded are written, so
    #: that every api node answers with them (seconds, not scaled; only when something was
    #: recorded; docs/metrics.md, "In a cluster").
    metrics_share_interval: float = 0.5
    #: Traces kept in memory (spans of sampled invocations and the functions' X-Ray
    #: segments; the oldest trace goes first) and spans kept per trace (docs/tracing.md).
    trace_max_traces: int = 1000
    trace_max_spans: int = 1000
    #: The UDP port of the X-Ray segment listener on the cells' gateway (Lambda's daemon:
    #: 2000; any free one when it is taken; 0: any free one).
    xray_port: int = 2000
    #: OTLP/HTTP endpoints spans are exported to; read from the standard
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` appended) and
    #: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) too. Empty: no export.
    otel_exporter_otlp_endpoint: str = ""
    otel_exporter_otlp_traces_endpoint: str = ""

    @property
    def otlp_traces_url(self) -> str:
        """Where spans are exported (empty: nowhere), as the OTel SDKs resolve the two."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        if self.otel_exporter_otlp_endpoint:
            return self.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return ""

    def endpoint_of(self, service: str) -> str:
        """The endpoint through which lambdad reaches ``service`` (``sqs``, ``kinesis``,
        ``dynamodbstreams``, or any other: ``aws_endpoint_url``); empty: none."""
        own: str = getattr(self, f"aws_endpoint_url_{service}", "")
        return own or self.aws_endpoint_url

    @property
    def mq_broker_urls(self) -> dict[str, str]:
        """``mq_brokers`` parsed: broker ARN -> AMQP URL (checked by ``load_settings``)."""
        return _json_object("mq_brokers", self.mq_brokers)

    @property
    def secret_values(self) -> dict[str, dict[str, str]]:
        """``secrets`` parsed: secret ARN -> its key/value pairs (checked by ``load_settings``)."""
        return _json_object("secrets", self.secrets)

    @property
    def scheduler_clock_start(self) -> tuple[float | None, float]:
        """``(instant in epoch seconds or None for the real clock, speed)`` of
        ``scheduler_clock``; ValueError if it does not parse."""
        if not self.scheduler_clock.strip():
            return None, 1.0
        instant, _, rest = self.scheduler_clock.partition(",")
        speed, _, origin = rest.partition(",")
        try:
            when = datetime.datetime.fromisoformat(instant.strip().replace("Z", "+00:00"))
            rate = float(speed) if speed.strip() else 1.0
            float(origin) if origin.strip() else None
        except ValueError as exc:
            raise ValueError(
                "setting scheduler_clock: expected <ISO-8601 instant>[,<speed>[,<epoch seconds "
                f"when it read the instant>]], got "
                f"{self.scheduler_clock!r}"
            ) from exc
        if not rate > 0:
            raise ValueError("setting scheduler_clock: the speed must be positive")
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp(), rate

    @property
    def scheduler_clock_origin(self) -> float | None:
        """The real time (epoch seconds) at which the test clock read its instant, when
        ``scheduler_clock`` gives one (nodes of a cluster then share one test clock), else None:
        the clock reads its instant when lambdad starts."""
        origin = self.scheduler_clock.split(",")[2:3]
        return float(origin[0]) if origin and origin[0].strip() else None

    def scaled(self, seconds: float) -> float:
        """A platform-defined delay under ``time_scale``."""
        return seconds * self.time_scale

    @property
    def idle_timeout(self) -> float:
        return self.scaled(self.keep_alive)


def _json_object(name: str, text: str) -> dict[str, Any]:
    """A setting holding a JSON object of objects or strings; ValueError otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"setting {name}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"setting {name}: expected a JSON object")
    return value


def _check_mq(settings: Settings) -> None:
    for arn, url in settings.mq_broker_urls.items():
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"setting mq_brokers: {arn}: expected an amqp:// or amqps:// URL")
    for arn, secret in settings.secret_values.items():
        if not isinstance(secret, dict) or not all(isinstance(v, str) for v in secret.values()):
            raise ValueError(f"setting secrets: {arn}: expected an object of strings")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_ENDPOINTS = [name for name in _FIELDS if name.startswith("aws_endpoint_url")]
_HINTS = typing.get_type_hints(Settings)


def _coerce(name: str, raw: Any) -> Any:
    kind = _HINTS[name]
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        value = str(raw).strip().lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"setting {name}: expected a boolean, got {raw!r}")
    if kind is Path:
        return Path(str(raw)).expanduser()
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name}: expected {kind.__name__}, got {raw!r}") from exc


#: The OpenTelemetry SDKs' standard variables lambdad reads as its own settings.
_OTEL = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {name.lower(): environ[name] for name in _OTEL if environ.get(name)}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in _FIELDS:
            values[name] = raw
    return values


def _from_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        try:
            document = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    table = document.get("lambdad", document)
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
    return dict(table)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build the settings from defaults, a config file, the environment and flag overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    file_name = config_file or (Path(env["LAMBDAD_CONFIG"]) if env.get("LAMBDAD_CONFIG") else None)
    if file_name is not None:
        values.update(_from_file(file_name))
    values.update(_from_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings = Settings(**{name: _coerce(name, raw) for name, raw in values.items()})
    if settings.time_scale <= 0:
        raise ValueError("setting time_scale must be positive")
    if settings.concurrency_limit < 1:
        raise ValueError("setting concurrency_limit must be positive")
    if settings.scale_rate < 1 or settings.scale_window <= 0:
        raise ValueError("settings scale_rate and scale_window must be positive")
    http = (settings.http_idle_timeout, settings.http_header_timeout, settings.http_body_timeout)
    if min(http) <= 0:
        raise ValueError("settings http_*_timeout must be positive")
    for name in _ENDPOINTS:
        url = getattr(settings, name)
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"setting {name}: expected an http:// or https:// URL, got {url!r}")
    _check_mq(settings)
    if settings.store_url and not settings.store_url.startswith(("postgresql://", "postgres://")):
        raise ValueError("setting store_url: expected a postgresql:// URL (or empty: SQLite)")
    if settings.nats_url and not all(
        part.strip().startswith(("nats://", "tls://")) for part in settings.nats_url.split(",")
    ):
        raise ValueError("setting nats_url: expected nats:// or tls:// URLs, comma-separated")
    if settings.nats_url and not settings.store_url:
        raise ValueError(
            "setting nats_url needs a shared store: set LAMBDAD_STORE_URL (or --store-url) "
            "to the cluster's postgresql:// URL as well"
        )
    if settings.role not in ROLES:
        raise ValueError(f"setting role: expected all, api or worker, got {settings.role!r}")
    if settings.role != "all" and not settings.store_url:
        raise ValueError(
            f"role {settings.role} needs a shared store: set LAMBDAD_STORE_URL (or "
            "--store-url) to the cluster's postgresql:// URL; without one, run role all"
        )
    if settings.node_lease <= 0:
        raise ValueError("setting node_lease must be positive")
    if settings.queue_ack_wait <= 0:
        raise ValueError("setting queue_ack_wait must be positive")
    if settings.loop_watchdog_ms < 0:
        raise ValueError("setting loop_watchdog_ms must not be negative")
    if settings.url_scheme not in ("http", "https"):
        raise ValueError(f"setting url_scheme: expected http or https, got {settings.url_scheme!r}")
    if not 0 <= settings.url_port <= 65535 or not settings.url_domain:
        raise ValueError("settings url_port (0-65535) and url_domain (not empty) are invalid")
    if (
        min(
            settings.metrics_retention_days,
            settings.metrics_flush_interval,
            settings.metrics_share_interval,
        )
        <= 0
    ):
        raise ValueError(
            "settings metrics_retention_days, metrics_flush_interval and "
            "metrics_share_interval must be positive"
        )
    if not -1 <= settings.console_port <= 65535:
        raise ValueError("setting console_port: expected -1 (off) or 0-65535")
    if settings.auth not in ("open", "sigv4"):
        raise ValueError(f"setting auth: expected open or sigv4, got {settings.auth!r}")
    if not (len(settings.account_id) == 12 and settings.account_id.isdigit()):
        raise ValueError(f"setting account_id: expected 12 digits, got {settings.account_id!r}")
    for url in (settings.otel_exporter_otlp_endpoint, settings.otel_exporter_otlp_traces_endpoint):
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"OTLP endpoint: expected an http:// or https:// URL, got {url!r}")
    if settings.trace_max_traces < 1 or settings.trace_max_spans < 1:
        raise ValueError("settings trace_max_traces and trace_max_spans must be positive")
    settings.scheduler_clock_start  # noqa: B018 -- parsed now, so a bad value stops the start
    if settings.sandbox not in ("auto", "linux", "process"):
        raise ValueError(
            f"setting sandbox: expected auto, linux or process, got {settings.sandbox!r}"
        )
    return settings


def host_path() -> str:
    """The PATH lambdad itself was started with (used to find interpreters)."""
    return os.environ.get("PATH", os.defpath)
