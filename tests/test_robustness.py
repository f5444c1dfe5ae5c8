"""Model-driven robustness: every routed operation, each member mutated, and raw malformations.

For every operation of botocore's ``lambda`` model whose method and URI lambdad routes, a
valid request (hand-written for the operations lambdad implements, against a real function,
alias and layer; model-generated otherwise) is varied one member at a time (wrong JSON type,
null, empty, oversized, out of range, control characters, lone surrogates, unknown members,
odd path segments, bad query and header values), and sent over raw keep-alive HTTP. Then
the raw malformations: non-JSON and truncated bodies, a body shorter than its declared
Content-Length, a huge declared Content-Length. Every answer must be non-5xx, in time and
AWS-shaped; a request the model forbids must not be accepted; everything read back afterwards
must satisfy the model; the server must still create and invoke, with no traceback logged.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import dataclasses
import importlib
import json
import pkgutil
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import lambdad.api
from tests import wire_model
from tests.conftest import ROLE, Server, make_zip
from tests.wire_model import HttpRequest, Mutation

#: A hang guard for one exchange (seconds); the server's own body timeout is 1 s here.
GUARD = 15.0
SETTINGS = {
    "LAMBDAD_HTTP_BODY_TIMEOUT": "1",
    "LAMBDAD_HTTP_HEADER_TIMEOUT": "2",
    "LAMBDAD_SANDBOX": "process",
}
REGION = "us-east-1"
ACCOUNT = "000000000000"
FN = "robust-reader"  # read-only target: reads and invokes
MF = "robust-writer"  # write target: updates, aliases, tags, configs
LAYER = "robust-layer"
CODE = make_zip({"app.py": "def handler(e, c):\n    return e\n"})
LAYER_CODE = make_zip({"python/robust_layer.py": "X = 1\n"})


def fn_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


LAYER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{LAYER}:1"


# ------------------------------------------------------------------------- raw client


@dataclasses.dataclass
class Answer:
    status: int | None  # None: no answer (``problem`` says why)
    headers: dict[str, str]
    body: bytes
    problem: str = ""


class RawClient:
    """One keep-alive HTTP/1.1 connection, reopened whenever the server closes it."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host  # a cluster's api node: its address (``Server.host``)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer = b""

    def send(self, request: HttpRequest) -> Answer:
        head = [f"{request.method} {request.target} HTTP/1.1", "Host: 127.0.0.1"]
        head += [f"{k}: {v}" for k, v in request.headers.items()]
        head.append(f"Content-Length: {len(request.body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + request.body
        return self.exchange(raw, request.method)

    def exchange(self, raw: bytes, method: str = "GET") -> Answer:
        for attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection((self.host, self.port), timeout=GUARD)
            try:
                self.sock.sendall(raw)
                return self._read(method)
            except TimeoutError:
                self.close()
                return Answer(None, {}, b"", "no answer within the hang guard")
            except (ConnectionError, _Closed):
                self.close()
                if attempt:
                    return Answer(None, {}, b"", "connection closed without an answer")
        raise AssertionError("unreachable")

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise _Closed
        self.buffer += chunk

    def _read(self, method: str) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buffer) < size:
                self._fill()
            body, self.buffer = self.buffer[:size], self.buffer[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body = self._chunked()
        else:
            try:
                while True:
                    self._fill()
            except _Closed:
                pass
            body, self.buffer = self.buffer, b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, headers, body)

    def _chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                self._fill()
            body += self.buffer[:size]
            self.buffer = self.buffer[size + 2 :]
            if size == 0:
                return body


class _Closed(Exception):
    pass


# ------------------------------------------------------------------------- routing


def _route_tables() -> list[web.RouteTableDef]:
    tables = []
    for info in pkgutil.iter_modules(lambdad.api.__path__):
        module = importlib.import_module(f"lambdad.api.{info.name}")
        table = getattr(module, "routes", None)
        if isinstance(table, web.RouteTableDef):
            tables.append(table)
    return tables


def _sample_target(name: str) -> tuple[str, str]:
    http = wire_model.operation(name).http
    path = re.sub(r"\{[^}]+\}", "x1", http["requestUri"])
    return http["method"], path


async def _resolve_all(names: list[str]) -> dict[str, bool]:
    app = web.Application()
    for table in _route_tables():
        app.add_routes(table)
    routed = {}
    for name in names:
        method, target = _sample_target(name)
        match = await app.router.resolve(make_mocked_request(method, target, app=app))
        routed[name] = match.http_exception is None
    return routed


def routed_operations() -> dict[str, bool]:
    """Every model operation, and whether lambdad's router matches its method and URI."""
    names = list(wire_model.model().operation_names)
    return asyncio.run(_resolve_all(names))


# ------------------------------------------------------------------------- base requests


class Fresh(wire_model.Placeholder):
    """A new unique name each time a request is built from it."""

    counter = 0

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def make(self) -> str:
        Fresh.counter += 1
        return f"{self.prefix}-{Fresh.counter}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


#: Valid requests of the operations lambdad implements (members as in the model).
BASE: dict[str, dict[str, Any]] = {
    "CreateFunction": {
        "FunctionName": Fresh("robust-new"),
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": CODE},
        "Description": "d",
        "Timeout": 3,
        "MemorySize": 128,
        "Publish": False,
        "Environment": {"Variables": {"KEY": "b"}},
        "Tags": {"k": "v"},
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "TracingConfig": {"Mode": "PassThrough"},
        "LoggingConfig": {"LogFormat": "Text"},
        "Layers": [LAYER_ARN],
        "PackageType": "Zip",
    },
    "ListFunctions": {"MaxItems": 50},
    "GetFunction": {"FunctionName": FN, "Qualifier": "1"},
    "DeleteFunction": {"FunctionName": Fresh("robust-victim")},
    "GetFunctionConfiguration": {"FunctionName": FN, "Qualifier": "$LATEST"},
    "UpdateFunctionConfiguration": {
        "FunctionName": MF,
        "Description": "u",
        "Timeout": 5,
        "MemorySize": 256,
        "Handler": "app.handler",
        "Runtime": "python3.11",
        "Role": ROLE,
        "Environment": {"Variables": {"KEY": "b"}},
        "EphemeralStorage": {"Size": 512},
        "TracingConfig": {"Mode": "PassThrough"},
        "LoggingConfig": {"LogFormat": "Text"},
        "Layers": [LAYER_ARN],
    },
    "UpdateFunctionCode": {"FunctionName": MF, "ZipFile": CODE, "Publish": False},
    "PublishVersion": {"FunctionName": MF, "Description": "v"},
    "ListVersionsByFunction": {"FunctionName": FN, "MaxItems": 10},
    "CreateAlias": {
        "FunctionName": MF,
        "Name": Fresh("al"),
        "FunctionVersion": "1",
        "Description": "a",
        "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}},
    },
    "ListAliases": {"FunctionName": FN, "MaxItems": 10},
    "GetAlias": {"FunctionName": FN, "Name": "live"},
    "UpdateAlias": {"FunctionName": MF, "Name": "live", "FunctionVersion": "1", "Description": "u"},
    "DeleteAlias": {"FunctionName": MF, "Name": "nope"},
    "ListTags": {"Resource": fn_arn(FN)},
    "TagResource": {"Resource": fn_arn(MF), "Tags": {"k": "v"}},
    "UntagResource": {"Resource": fn_arn(MF), "TagKeys": ["gone"]},
    "GetAccountSettings": {},
    "PutFunctionConcurrency": {"FunctionName": MF, "ReservedConcurrentExecutions": 5},
    "GetFunctionConcurrency": {"FunctionName": FN},
    "DeleteFunctionConcurrency": {"FunctionName": MF},
    "Invoke": {
        "FunctionName": FN,
        "Payload": b'{"a": 1}',
        "InvocationType": "RequestResponse",
        "LogType": "None",
        "ClientContext": _b64(b"{}"),
        "Qualifier": "$LATEST",
    },
    "InvokeAsync": {"FunctionName": FN, "InvokeArgs": b'{"a": 1}'},
    "ListLayers": {"MaxItems": 10, "CompatibleRuntime": "python3.11"},
    "GetLayerVersionByArn": {"Arn": LAYER_ARN},
    "PublishLayerVersion": {
        "LayerName": LAYER,
        "Content": {"ZipFile": LAYER_CODE},
        "Description": "l",
        "CompatibleRuntimes": ["python3.11"],
        "CompatibleArchitectures": ["x86_64"],
        "LicenseInfo": "MIT",
    },
    "ListLayerVersions": {"LayerName": LAYER, "MaxItems": 10},
    "GetLayerVersion": {"LayerName": LAYER, "VersionNumber": 1},
    "DeleteLayerVersion": {"LayerName": LAYER, "VersionNumber": 999},
    "AddLayerVersionPermission": {
        "LayerName": LAYER,
        "VersionNumber": 1,
        "StatementId": Fresh("sid"),
        "Action": "lambda:GetLayerVersion",
        "Principal": "*",
    },
    "GetLayerVersionPolicy": {"LayerName": LAYER, "VersionNumber": 1},
    "RemoveLayerVersionPermission": {"LayerName": LAYER, "VersionNumber": 1, "StatementId": "no"},
    "PutFunctionEventInvokeConfig": {
        "FunctionName": MF,
        "MaximumRetryAttempts": 1,
        "MaximumEventAgeInSeconds": 100,
        "DestinationConfig": {
            "OnFailure": {"Destination": f"arn:aws:sqs:{REGION}:{ACCOUNT}:robust-q"}
        },
    },
    "UpdateFunctionEventInvokeConfig": {"FunctionName": MF, "MaximumRetryAttempts": 2},
    "GetFunctionEventInvokeConfig": {"FunctionName": FN},
    "DeleteFunctionEventInvokeConfig": {"FunctionName": MF, "Qualifier": "2"},
    "ListFunctionEventInvokeConfigs": {"FunctionName": FN, "MaxItems": 10},
    "GetFunctionRecursionConfig": {"FunctionName": FN},
    "PutFunctionRecursionConfig": {"FunctionName": MF, "RecursiveLoop": "Terminate"},
    "PutProvisionedConcurrencyConfig": {
        "FunctionName": MF,
        "Qualifier": "live",
        "ProvisionedConcurrentExecutions": 1,
    },
    "GetProvisionedConcurrencyConfig": {"FunctionName": MF, "Qualifier": "live"},
    "DeleteProvisionedConcurrencyConfig": {"FunctionName": MF, "Qualifier": "nope"},
    "ListProvisionedConcurrencyConfigs": {"FunctionName": MF, "MaxItems": 10},
    "CreateFunctionUrlConfig": {
        "FunctionName": MF,
        "Qualifier": "live",
        "AuthType": "NONE",
        "Cors": {"AllowOrigins": ["*"], "AllowMethods": ["GET"], "MaxAge": 10},
        "InvokeMode": "BUFFERED",
    },
    "GetFunctionUrlConfig": {"FunctionName": FN},
    "UpdateFunctionUrlConfig": {"FunctionName": FN, "AuthType": "NONE"},
    "DeleteFunctionUrlConfig": {"FunctionName": MF, "Qualifier": "nope"},
    "ListFunctionUrlConfigs": {"FunctionName": FN, "MaxItems": 10},
}

#: Operations whose valid request the test sends once by itself (the others' base requests
#: would destroy what the test reads, or are sent through their mutations only).
#: CreateFunctionUrlConfig is not replayed: another test sends it first, and a second create
#: of one URL is a conflict (as on AWS).
_NOT_REPLAYED = {"DeleteFunction", "DeleteFunctionConcurrency", "CreateFunctionUrlConfig"}


def materialise(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.make() if isinstance(v, Fresh) else v) for k, v in values.items()}


def base_of(name: str) -> dict[str, Any]:
    return dict(BASE.get(name) or wire_model.example_values(name))


# ------------------------------------------------------------------------- findings


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str  # 5xx, hang, not AWS-shaped, accepted invalid, stored invalid, ...
    operation: str
    member: str
    mutation: str
    status: int | None
    body: str

    def line(self) -> str:
        return (
            f"{self.kind:<18} {self.operation:<34} {self.member:<40} {self.mutation:<24} "
            f"{self.status!s:<5} {self.body[: 300 if self.kind == 'logged error' else 160]}"
        )


def summary(findings: list[Finding]) -> str:
    classes = collections.Counter((f.kind, f.status) for f in findings)
    by_operation = collections.Counter((f.kind, f.operation) for f in findings)
    lines = [f"{len(findings)} findings", "", "by class:"]
    lines += [f"  {n:>5}  {kind} (status {status})" for (kind, status), n in classes.items()]
    lines += ["", "by operation:"]
    lines += [f"  {n:>5}  {kind:<18} {op}" for (kind, op), n in sorted(by_operation.items())]
    lines += ["", "first of each (kind, operation, member):"]
    seen: set[tuple[str, str, str]] = set()
    for finding in findings:
        first = finding.body if finding.kind == "logged error" else finding.member.split(".")[0]
        key = (finding.kind, finding.operation, first)
        if key not in seen:
            seen.add(key)
            lines.append("  " + finding.line())
    return "\n".join(lines)


def check_answer(
    answer: Answer, operation: str, mutation: Mutation | None, kind: str = ""
) -> list[Finding]:
    """What is wrong with one answer: a 5xx, a hang, an error not in AWS's shape."""
    member = mutation.member if mutation else "-"
    what = kind or (mutation.kind if mutation else "valid request")
    body = answer.body.decode("utf-8", "replace")

    def found(problem: str) -> list[Finding]:
        return [Finding(problem, operation, member, what, answer.status, body)]

    if answer.status is None:
        return found("hang" if "hang" in answer.problem else "no answer")
    if answer.status >= 500:
        return found("5xx")
    if "x-amzn-requestid" not in answer.headers:
        return found("no request id")
    if answer.status >= 400:
        try:
            document = json.loads(answer.body)
        except ValueError:
            return found("not AWS-shaped")
        if (
            "x-amzn-errortype" not in answer.headers
            or not isinstance(document, dict)
            or not ({"message", "Message"} & set(document))
        ):
            return found("not AWS-shaped")
    elif mutation is not None and mutation.invalid is True:
        return found("accepted invalid")
    return []


# ------------------------------------------------------------------------- the server


def _call(client: RawClient, name: str, values: Mapping[str, Any]) -> Answer:
    return client.send(wire_model.build(name, materialise(values)))


def _must(answer: Answer, what: str) -> Any:
    assert answer.status is not None, (what, answer.problem)
    assert answer.status < 300, (what, answer.status, answer.body[:500])
    return json.loads(answer.body) if answer.body else None


def seed(client: RawClient) -> None:
    """The function, versions, alias, layer and configs the base requests point at."""
    _must(_call(client, "PublishLayerVersion", BASE["PublishLayerVersion"]), "layer")
    for name in (FN, MF):
        create = {**BASE["CreateFunction"], "FunctionName": name, "Publish": True}
        _must(_call(client, "CreateFunction", create), f"create {name}")
        update = {"FunctionName": name, "Description": "second"}
        _must(_call(client, "UpdateFunctionConfiguration", update), "update")
        _must(_call(client, "PublishVersion", {"FunctionName": name, "Description": "2"}), "v")
        alias = {"FunctionName": name, "Name": "live", "FunctionVersion": "1"}
        _must(_call(client, "CreateAlias", alias), f"alias {name}")
    _must(_call(client, "CreateFunctionUrlConfig", {"FunctionName": FN, "AuthType": "NONE"}), "url")
    fn_config = {"FunctionName": FN, "MaximumRetryAttempts": 0}
    _must(_call(client, "PutFunctionEventInvokeConfig", fn_config), "event config")
    _must(_call(client, "PutFunctionConcurrency", {**BASE["PutFunctionConcurrency"]}), "conc")
    _must(
        _call(client, "PutProvisionedConcurrencyConfig", BASE["PutProvisionedConcurrencyConfig"]),
        "pc",
    )


def victim(client: RawClient) -> dict[str, Any]:
    """A throwaway function for one destructive request."""
    name = Fresh("robust-victim").make()
    create = {**BASE["CreateFunction"], "FunctionName": name, "Layers": []}
    _must(_call(client, "CreateFunction", create), "victim")
    return {"FunctionName": name}


@pytest.fixture(scope="module")
def robust_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.conftest import launch_server, shutdown

    srv = launch_server(tmp_path_factory.mktemp("robust"), SETTINGS)
    yield srv
    shutdown(srv)


@pytest.fixture(scope="module")
def seeded(robust_server: Server) -> dict[str, Any]:
    """Seed the server; the read-only function's state, to compare at the end."""
    client = RawClient(robust_server.port)
    seed(client)
    state = _state_of(client, FN)
    client.close()
    return state


@pytest.fixture(scope="module")
def routes() -> dict[str, bool]:
    return routed_operations()


# ------------------------------------------------------------------------- the tests


def test_routes_are_derived_from_the_model(routes: dict[str, bool]) -> None:
    """The routed operations come from the model and the app's routes; every hand-written base
    request names a model operation lambdad routes (routed ones without one are sent with
    model-generated values, listed in the captured output).
    """
    routed = {name for name, yes in routes.items() if yes}
    assert routed, "no model operation is routed"
    assert set(BASE) <= routed, f"base requests of unrouted operations: {set(BASE) - routed}"
    print("routed operations with model-generated requests:", sorted(routed - set(BASE)))


def test_unrouted_operations_answer_unknown_operation(
    robust_server: Server, routes: dict[str, bool]
) -> None:
    """An operation lambdad does not route answers 404 UnknownOperationException.

    AWS answers a path or method it does not serve with ``UnknownOperationException``.
    """
    client = RawClient(robust_server.port)
    findings = []
    for name in sorted(n for n, yes in routes.items() if not yes):
        request = wire_model.build(name, wire_model.example_values(name))
        answer = client.send(request)
        findings += check_answer(answer, name, None)
        if answer.headers.get("x-amzn-errortype") != "UnknownOperationException":
            body = answer.body.decode("utf-8", "replace")
            findings.append(Finding("not unknown", name, "-", "-", answer.status, body))
    client.close()
    print("\n".join(f.line() for f in findings))  # every finding, in the captured output
    assert not findings, summary(findings)


def test_raw_malformations_on_every_route(
    robust_server: Server, routes: dict[str, bool], seeded: dict[str, Any]
) -> None:
    """Non-JSON, truncated and non-object bodies, chunked and badly chunked bodies, short and
    huge declared lengths: no 5xx, no hang, AWS-shaped errors.

    AWS answers an unparseable body with ``InvalidRequestContentException`` (400) and a
    body over the operation's limit with ``RequestEntityTooLargeException`` (413).
    """
    client = RawClient(robust_server.port)
    findings: list[Finding] = []
    shorts: list[tuple[str, bytes]] = []
    for name in sorted(n for n, yes in routes.items() if yes):
        request = wire_model.build(name, materialise(base_of(name)))
        for kind, body in [
            ("non-JSON body", b"{not json"),
            ("truncated body", request.body[: max(1, len(request.body) // 2)]),
            ("JSON array body", b"[1, 2]"),
            ("JSON string body", b'"x"'),
            ("lone surrogate body", b'{"a": "\\ud800"}'),
            ("deeply nested body", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ]:
            variant = dataclasses.replace(request, body=body)
            findings += check_answer(client.send(variant), name, None, kind)
        shorts.append((name, _head(request, len(request.body) + 100) + request.body))
        shorts.append((name, _head(request, None) + b"100\r\n" + request.body))
        for kind, chunks in [
            ("chunked body", b"%x\r\n%s\r\n0\r\n\r\n" % (len(request.body), request.body)),
            ("bad chunk", b"zz\r\nabc\r\n"),
        ]:
            if not request.body:
                continue
            answer = client.exchange(_head(request, None) + chunks, request.method)
            findings += check_answer(answer, name, None, kind)
            client.close()
        huge = client.exchange(_head(request, 10**12) + b"{", request.method)
        findings += check_answer(huge, name, None, "huge Content-Length")
        if huge.status != 413:
            body = huge.body.decode("utf-8", "replace")
            findings.append(Finding("not refused", name, "-", "huge length", huge.status, body))
        client.close()
    client.close()
    findings += _short_bodies(robust_server.port, shorts)
    assert not findings, summary(findings)


def _head(request: HttpRequest, length: int | None) -> bytes:
    """The request's head declaring ``length`` bytes of body (None: a chunked body)."""
    lines = [f"{request.method} {request.target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in request.headers.items()]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _short_bodies(port: int, requests: list[tuple[str, bytes]]) -> list[Finding]:
    """Send each body short of its declared length or chunk size, all at once; each must be
    answered or closed before the hang guard."""

    def one(item: tuple[str, bytes]) -> list[Finding]:
        name, raw = item
        with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
            sock.sendall(raw)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except TimeoutError:
                return [Finding("hang", name, "-", "short body", None, data[:200].decode())]
            except ConnectionResetError:
                return []
        if data.startswith(b"HTTP/1.1 5"):
            return [Finding("5xx", name, "-", "short body", 500, data[:300].decode())]
        return []

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        return [f for found in pool.map(one, requests) for f in found]


def _send_mutations(client: RawClient, name: str, mutation_list: list[Mutation]) -> list[Finding]:
    """Send each mutation; a rejected one must leave no trace (``_trace`` says where to look)."""
    findings: list[Finding] = []
    trace = _trace(name)
    before = trace(client, {}) if trace else None
    for mutation in mutation_list:
        values = materialise(mutation.values)
        if name == "DeleteFunction" and isinstance(mutation.values.get("FunctionName"), Fresh):
            values.update(victim(client))
        answer = client.send(wire_model.build(name, values))
        findings += check_answer(answer, name, mutation)
        if trace is None or answer.status is None:
            continue
        after = trace(client, values)
        if name in _ABSOLUTE:
            before = _ABSOLUTE[name]
        if answer.status >= 400 and after != before:
            findings.append(
                Finding(
                    "changed on error",
                    name,
                    mutation.member,
                    mutation.kind,
                    answer.status,
                    _difference(before, after),
                )
            )
        before = after
    return findings


Trace = Callable[[RawClient, Mapping[str, Any]], Any]

#: What a rejected request of these operations must leave, whatever came before: no new
#: function; the throwaway function still there.
_ABSOLUTE: dict[str, Any] = {"CreateFunction": None, "DeleteFunction": True}


def _trace(name: str) -> Trace | None:
    """What a rejected request of operation ``name`` must leave unchanged (None: nothing)."""
    base = BASE.get(name, {})
    if name == "CreateFunction":
        return _created
    if name == "DeleteFunction":
        return _victim_exists
    if name == "PublishLayerVersion":
        return _layer_versions
    writes = wire_model.operation(name).http["method"] != "GET"
    if writes and MF in (base.get("FunctionName"), base.get("Resource", "").split(":")[-1]):
        parts = _PARTS_OF.get(name, ("function",))
        return lambda client, _: _state_of(client, MF, parts)
    return None


def _created(client: RawClient, values: Mapping[str, Any]) -> Any:
    name = values.get("FunctionName")
    if not isinstance(name, str) or not name:
        return None
    return _call(client, "GetFunction", {"FunctionName": name}).status == 200 or None


def _victim_exists(client: RawClient, values: Mapping[str, Any]) -> Any:
    name = values.get("FunctionName")
    if not isinstance(name, str) or not name.startswith("robust-victim"):
        return True
    return _call(client, "GetFunction", {"FunctionName": name}).status == 200


def _layer_versions(client: RawClient, values: Mapping[str, Any]) -> Any:
    answer = _call(client, "ListLayerVersions", {"LayerName": LAYER, "MaxItems": 50})
    return len(json.loads(answer.body).get("LayerVersions", [])) if answer.status == 200 else None


def _difference(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        return "; ".join(f"{k}: {before.get(k)!r:.80} -> {after.get(k)!r:.80}" for k in keys)
    return f"{before!r} -> {after!r}"


#: Reads whose answers must satisfy the model: (operation, values) per function.
def _function_reads(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("GetFunction", {"FunctionName": name}),
        ("ListAliases", {"FunctionName": name}),
        ("ListVersionsByFunction", {"FunctionName": name}),
        ("ListTags", {"Resource": fn_arn(name)}),
        ("ListFunctionEventInvokeConfigs", {"FunctionName": name}),
        ("ListProvisionedConcurrencyConfigs", {"FunctionName": name}),
        ("GetFunctionConcurrency", {"FunctionName": name}),
        ("GetFunctionRecursionConfig", {"FunctionName": name}),
    ]


def _read(client: RawClient, name: str, values: dict[str, Any]) -> tuple[Any, list[Finding]]:
    answer = _call(client, name, values)
    what = json.dumps({k: str(v)[:60] for k, v in values.items()})
    if answer.status is None or answer.status >= 300:
        body = answer.body.decode("utf-8", "replace")
        return None, [Finding("read failed", name, what, "read back", answer.status, body)]
    document = json.loads(answer.body) if answer.body else {}
    output = wire_model.operation(name).output_shape
    problems = wire_model.problems(output, document, name) if output is not None else []
    return document, [
        Finding("stored invalid", name, what, problem, answer.status, "") for problem in problems
    ]


def _all_functions(client: RawClient) -> tuple[list[str], list[Finding]]:
    names: list[str] = []
    findings: list[Finding] = []
    marker = None
    while True:
        values: dict[str, Any] = {"FunctionVersion": "ALL", "MaxItems": 50}
        if marker:
            values["Marker"] = marker
        page, found = _read(client, "ListFunctions", values)
        findings += found
        if page is None:
            return names, findings
        names += [
            f["FunctionName"] for f in page.get("Functions", []) if f.get("Version") == "$LATEST"
        ]
        marker = page.get("NextMarker")
        if not marker:
            return names, findings


def read_back(client: RawClient, snapshot: Mapping[str, Any]) -> list[Finding]:
    """Everything stored satisfies the model, and the read-only function is as seeded."""
    names, findings = _all_functions(client)
    for name in names:
        for operation, values in _function_reads(name):
            findings += _read(client, operation, values)[1]
    layers, found = _read(client, "ListLayers", {})
    findings += found
    for layer in (layers or {}).get("Layers", []):
        versions, found = _read(client, "ListLayerVersions", {"LayerName": layer["LayerName"]})
        findings += found
        for version in (versions or {}).get("LayerVersions", []):
            number = version["Version"]
            get = {"LayerName": layer["LayerName"], "VersionNumber": number}
            findings += _read(client, "GetLayerVersion", get)[1]
    now = _state_of(client, FN)
    for key, before in snapshot.items():
        if now.get(key) != before:
            findings.append(
                Finding(
                    "read-only changed",
                    FN,
                    key,
                    "after mutations",
                    None,
                    f"{before} -> {now.get(key)}",
                )
            )
    return findings


#: Configuration members that change without a request (or with every accepted one).
_VOLATILE = {"LastModified", "RevisionId", "State", "StateReason", "StateReasonCode"}
_VOLATILE |= {"LastUpdateStatus", "LastUpdateStatusReason", "LastUpdateStatusReasonCode"}


def _function_part(client: RawClient, name: str) -> Any:
    """Configuration, code, tags and reserved concurrency, as GetFunction reports them."""
    got = _must(_call(client, "GetFunction", {"FunctionName": name}), "function")
    config = got.get("Configuration", {})
    got["Configuration"] = {k: v for k, v in config.items() if k not in _VOLATILE}
    got.pop("Code", None)  # a presigned location, new on every call
    return got


def _versions_part(client: RawClient, name: str) -> Any:
    listed = _call(client, "ListVersionsByFunction", {"FunctionName": name, "MaxItems": 1000})
    return sorted(v["Version"] for v in _must(listed, "versions")["Versions"])


def _aliases_part(client: RawClient, name: str) -> Any:
    aliases = _must(_call(client, "ListAliases", {"FunctionName": name}), "aliases")["Aliases"]
    return sorted(json.dumps(a, sort_keys=True) for a in aliases if a.pop("RevisionId", 1))


def _event_configs_part(client: RawClient, name: str) -> Any:
    listed = _call(client, "ListFunctionEventInvokeConfigs", {"FunctionName": name})
    configs = _must(listed, "event configs")["FunctionEventInvokeConfigs"]
    return sorted(
        json.dumps({k: v for k, v in c.items() if k != "LastModified"}, sort_keys=True)
        for c in configs
    )


def _provisioned_part(client: RawClient, name: str) -> Any:
    listed = _call(client, "ListProvisionedConcurrencyConfigs", {"FunctionName": name})
    provisioned = _must(listed, "provisioned")["ProvisionedConcurrencyConfigs"]
    return sorted(
        (p["FunctionArn"], p["RequestedProvisionedConcurrentExecutions"]) for p in provisioned
    )


def _recursion_part(client: RawClient, name: str) -> Any:
    return _must(_call(client, "GetFunctionRecursionConfig", {"FunctionName": name}), "loop")


Part = Callable[[RawClient, str], Any]
_PARTS: dict[str, Part] = {
    "function": _function_part,
    "versions": _versions_part,
    "aliases": _aliases_part,
    "event configs": _event_configs_part,
    "provisioned": _provisioned_part,
    "recursion": _recursion_part,
}

#: The parts of a function each write operation can change (the rest: "function").
_PARTS_OF = {
    "PublishVersion": ("function", "versions"),
    "UpdateFunctionCode": ("function", "versions"),
    "CreateAlias": ("aliases",),
    "UpdateAlias": ("aliases",),
    "DeleteAlias": ("aliases",),
    "PutFunctionEventInvokeConfig": ("event configs",),
    "UpdateFunctionEventInvokeConfig": ("event configs",),
    "DeleteFunctionEventInvokeConfig": ("event configs",),
    "PutProvisionedConcurrencyConfig": ("provisioned",),
    "DeleteProvisionedConcurrencyConfig": ("provisioned",),
    "PutFunctionRecursionConfig": ("recursion",),
}


def _state_of(client: RawClient, name: str, parts: tuple[str, ...] = tuple(_PARTS)) -> Any:
    return {part: _PARTS[part](client, name) for part in parts}


def healthy_afterwards(client: RawClient, server: Server) -> list[Finding]:
    """A valid create and invoke still work, and the log has no traceback."""
    name = Fresh("robust-after").make()
    create = {**BASE["CreateFunction"], "FunctionName": name, "Layers": []}
    findings = check_answer(_call(client, "CreateFunction", create), "CreateFunction", None)
    answer = _call(client, "Invoke", {"FunctionName": name, "Payload": b'{"ok": true}'})
    if answer.status != 200 or json.loads(answer.body or b"null") != {"ok": True}:
        body = answer.body.decode("utf-8", "replace")
        findings.append(Finding("unhealthy", "Invoke", "-", "after mutations", answer.status, body))
    return findings + logged_errors(server.log())


def logged_errors(log: str) -> list[Finding]:
    """One finding per distinct cause of a logged traceback or unhandled error."""
    causes: collections.Counter[str] = collections.Counter()
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if "unhandled error" in line:
            causes[line.split(" ", 2)[-1]] += 0  # the request; its cause follows
        if line.startswith("Traceback"):
            end = index + 1
            while end < len(lines) and (lines[end].startswith(" ") or not lines[end]):
                end += 1
            where = next(
                (lines[i].strip() for i in range(end - 1, index, -1) if "File" in lines[i]), ""
            )
            cause = lines[end] if end < len(lines) else "?"
            causes[f"{cause[:200]} at {where}"] += 1
    return [
        Finding("logged error", "-", "-", f"x{count}", None, cause)
        for cause, count in causes.items()
        if count
    ]


def _refused(answer: Answer) -> bool:
    """A valid request was not served: an error other than "not found" (several base
    requests delete or read what does not exist, which is a 404 on AWS too).
    """
    if answer.status is None or answer.status < 400:
        return False
    unknown = answer.headers.get("x-amzn-errortype") == "UnknownOperationException"
    return answer.status != 404 or unknown


#: Findings that are the HTTP layer's: they must be absent on every branch.
HTTP_LEVEL = {"hang", "no answer", "not AWS-shaped", "no request id", "unhealthy"}
HTTP_LEVEL |= {"valid refused"}  # a hand-written valid request must keep working


@pytest.fixture(scope="module")
def mutation_findings(
    robust_server: Server, routes: dict[str, bool], seeded: dict[str, Any]
) -> list[Finding]:
    """Send every member mutation of every routed operation; read everything back."""
    client = RawClient(robust_server.port)
    findings: list[Finding] = []
    for name in sorted(n for n, yes in routes.items() if yes):
        base = base_of(name)
        if name not in _NOT_REPLAYED:
            answer = _call(client, name, base)
            findings += check_answer(answer, name, None, "valid request")
            if name in BASE and _refused(answer):
                body = answer.body.decode("utf-8", "replace")
                findings.append(Finding("valid refused", name, "-", "-", answer.status, body))
        findings += _send_mutations(client, name, list(wire_model.mutations(name, base)))
    findings += read_back(client, seeded)
    findings += healthy_afterwards(client, robust_server)
    client.close()
    print("\n".join(f.line() for f in findings))  # every finding, in the captured output
    return findings


def test_member_mutations_get_timely_aws_shaped_answers(mutation_findings: list[Finding]) -> None:
    """Every mutated request is answered in time, with x-amzn-RequestId, and every error in
    AWS's shape (x-amzn-ErrorType, a JSON body with message or Message); the server still
    creates and invokes afterwards.
    """
    findings = [f for f in mutation_findings if f.kind in HTTP_LEVEL]
    assert not findings, summary(findings)


def test_member_mutations_are_validated(mutation_findings: list[Finding]) -> None:
    """Each member of each routed operation mutated: no 5xx, nothing the model forbids
    accepted or stored, the read-only function unchanged, no traceback in the log.

    AWS validates every request against the model before acting on it and answers a
    violation with a 4xx (``ValidationException``, ``InvalidParameterValueException``, ...).
    """
    assert not mutation_findings, summary(mutation_findings)
