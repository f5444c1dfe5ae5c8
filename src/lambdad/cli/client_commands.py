"""Client commands: thin HTTP clients of a running ``lambdad serve``."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from lambdad.config import load_settings


def _endpoint(args: argparse.Namespace) -> str:
    if args.endpoint:
        return str(args.endpoint).rstrip("/")
    settings = load_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


def _scope_header(region: str) -> dict[str, str]:
    """A SigV4 credential scope naming ``region``: how lambdad tells which region is meant."""
    day = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    scope = f"lambdad-cli/{day}/{region}/lambda/aws4_request"
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential={scope}"}


@functools.cache
def _credentials() -> Any:
    """The user's AWS credentials, looked up once per command (None: none configured)."""
    # Imported here, not at the top: ``lambdad serve`` imports this module (the command line
    # is one parser) and never signs, and botocore's session and client take a fifth of its
    # start-up.
    import botocore.session

    return botocore.session.Session().get_credentials()


def _signed_headers(
    url: str, region: str, method: str = "GET", body: bytes = b""
) -> dict[str, str]:
    """Headers of a request of ``url`` (a GET unless ``method``, with ``body``) signed with the
    AWS credentials the AWS CLI would use (environment, profile, ...), so that a server in
    SigV4 mode knows the caller and its account; with none, the bare credential scope (enough
    in open mode)."""
    credentials = _credentials()
    if credentials is None:
        return _scope_header(region)
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    return dict(request.headers.items())


def _get(url: str, region: str, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(url, headers=_signed_headers(url, region))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _send(url: str, region: str, method: str, document: Any, timeout: float = 30.0) -> Any:
    """``method`` of ``url`` with the JSON ``document`` as its body (none when None); the JSON
    answer."""
    body = b"" if document is None else json.dumps(document).encode()
    headers = _signed_headers(url, region, method, body)
    if document is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body or None, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = response.read()
        return json.loads(answer) if answer else {}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="lambdad's URL (default from settings)")
    parser.add_argument("--region", default="us-east-1", help="region of the function")


def add_parsers(commands: Any) -> None:
    logs = commands.add_parser("logs", help="print a function's logs")
    logs.add_argument("function", help="function name or ARN")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    logs.add_argument("--stream", action="store_true", help="prefix each line with its stream")
    logs.add_argument(
        "--filter",
        metavar="PATTERN",
        help="only events matching this CloudWatch Logs filter pattern (as FilterLogEvents)",
    )
    _common(logs)
    logs.set_defaults(run=run_logs)
    doctor = commands.add_parser("doctor", help="what isolation and runtimes are active")
    _common(doctor)
    doctor.set_defaults(run=run_doctor)
    cluster = commands.add_parser("cluster", help="list the cluster's nodes, health and load")
    _common(cluster)
    cluster.set_defaults(run=run_cluster)
    esm = commands.add_parser("esm", help="list event source mappings and how they are doing")
    esm.add_argument("--function", help="only the mappings of this function (name or ARN)")
    _common(esm)
    esm.set_defaults(run=run_esm)


def _print_events(events: list[dict[str, Any]], with_stream: bool) -> None:
    for event in events:
        stamp = datetime.datetime.fromtimestamp(event["timestamp"] / 1000, datetime.UTC)
        prefix = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z "
        if with_stream:
            prefix += f"{event['stream']} "
        sys.stdout.write(prefix + event["message"] + "\n")
    sys.stdout.flush()


def run_logs(args: argparse.Namespace) -> int:
    base = _endpoint(args)
    after = 0
    try:
        while True:
            params = {"function": args.function, "after": after, "wait": 20 if args.follow else 0}
            if args.filter:
                params["filter"] = args.filter
            query = urllib.parse.urlencode(params)
            page = _get(f"{base}/_lambdad/logs?{query}", args.region, timeout=60.0)
            _print_events(page["events"], args.stream)
            if not args.follow and page["next"] == after:
                return 0
            after = page["next"]
    except KeyboardInterrupt:
        return 0
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        print(f"lambdad logs: {exc.code} {body}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lambdad logs: cannot reach {base}: {exc}", file=sys.stderr)
        return 1


def run_doctor(args: argparse.Namespace) -> int:
    base = _endpoint(args)
    try:
        report = _get(f"{base}/_lambdad/doctor", args.region)
    except OSError as exc:
        print(f"lambdad doctor: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    for section, values in report.items():
        print(f"{section}:")
        for key, value in values.items():
            print(f"  {key}: {value}")
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    """One line per node, as the node at ``--endpoint`` reads them from the shared store:
    id (``*`` that node itself), role, health, address, load, capacity, version."""
    base = _endpoint(args)
    try:
        nodes = _get(f"{base}/_lambdad/cluster", args.region)["Nodes"]
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        print(f"lambdad cluster: {exc.code} {body}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lambdad cluster: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    rows = [("ID", "ROLE", "HEALTH", "ADDRESS", "ENVS", "QUEUED", "CPUS", "MEMORY", "VERSION")]
    for n in nodes:
        load, capacity = n.get("Load", {}), n.get("Capacity", {})
        health = n["Health"] if n["Health"] == "up" else f"gone ({n['HeartbeatAge']:.0f}s)"
        rows.append(
            (
                n["Id"] + ("*" if n.get("Self") else ""),
                n["Role"],
                health,
                n["Address"],
                str(load.get("Environments", "")),
                str(load.get("QueueDepth", "")),
                str(capacity.get("Cpus", "")),
                f"{capacity.get('MemoryMB', 0)} MB",
                n.get("Version", ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def run_esm(args: argparse.Namespace) -> int:
    """One line per mapping of the region: UUID, state, source, function, lag (a queue's
    messages waiting and in flight, or how far the shard furthest behind is), last result."""
    base = _endpoint(args)
    query = f"?{urllib.parse.urlencode({'function': args.function})}" if args.function else ""
    try:
        mappings = _get(f"{base}/_lambdad/esm{query}", args.region)["EventSourceMappings"]
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        print(f"lambdad esm: {exc.code} {body}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lambdad esm: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    rows = [("UUID", "STATE", "SOURCE", "FUNCTION", "LAG", "LAST RESULT")]
    for m in mappings:
        function = str(m.get("FunctionArn", "")).split(":function:")[-1]
        state = m["State"] if m.get("Polling") or m["State"] != "Enabled" else "Enabled*"
        rows.append(
            (m["UUID"], state, m["EventSourceArn"], function, m["Lag"], m["LastProcessingResult"])
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        print("  ".join([*cells, row[5]]))
    if any(row[1] == "Enabled*" for row in rows[1:]):
        print("* Enabled but not polling: see LAST RESULT")
    return 0
