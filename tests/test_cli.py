"""The command line: the AWS CLI against lambdad, and ``lambdad logs``, ``doctor`` and ``serve``."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    IDENTITY,
    ROLE,
    Server,
    assert_environment_gone,
    create_function,
    environment_pids,
    free_port,
    invoke_json,
    make_zip,
    node_of,
    shutdown,
    unique,
    wait_until,
)

LAMBDAD = [sys.executable, "-m", "lambdad.cli.main"]

#: The README's example function.
HELLO = """def handler(event, context):
    print("hello from", context.function_name)
    return {"greeting": f"Hello, {event['name']}!"}
"""


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 60)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture
def client_of() -> Iterator[Callable[..., Any]]:
    """``client_of(server, region)``: a boto3 client of ``server``, closed when the test ends."""
    made: list[Any] = []

    def make(srv: Server, region: str = "us-east-1") -> Any:
        made.append(srv.client(region))
        return made[-1]

    yield make
    for client in made:
        client.close()


# ------------------------------------------------------------------------------- AWS CLI


@pytest.fixture
def aws(start_server: Any, tmp_path: Path) -> Any:
    """``aws lambda OP --endpoint-url URL ARGS`` (CLI v1) in ``tmp_path`` against a new lambdad."""
    srv = start_server()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "LAMBDAD_PORT": str(srv.port),  # for a bare ``lambdad logs``, as on port 9000
        "LAMBDAD_HOST": srv.host,  # loopback, or a cluster's api node (pytest --cluster)
    }

    def call(op: str, *args: str, program: tuple[str, ...] = ("aws", "lambda")) -> str:
        argv = [*program, op, *(("--endpoint-url", srv.endpoint) if program[0] == "aws" else ())]
        done = run([*argv, *args], env=env, cwd=tmp_path)
        assert done.returncode == 0, f"{op} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return call


@pytest.mark.slow
def test_aws_cli_worked_example(aws: Any, tmp_path: Path) -> None:
    """The README's AWS CLI sequence creates, invokes (with a tail), lists and gets ``hello``."""
    (tmp_path / "app.py").write_text(HELLO)
    subprocess.run(
        [sys.executable, "-m", "zipfile", "-c", "function.zip", "app.py"], cwd=tmp_path, check=True
    )
    created = json.loads(
        aws(
            "create-function", "--function-name", "hello", "--runtime", "python3.12",
            "--handler", "app.handler", "--role", "arn:aws:iam::000000000000:role/lambda",
            "--zip-file", "fileb://function.zip",
        )
    )  # fmt: skip
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:hello"
    assert created["Runtime"] == "python3.12"

    (tmp_path / "event.json").write_text('{"name": "world"}')
    printed = json.loads(
        aws("invoke", "--function-name", "hello", "--payload", "fileb://event.json", "out.json")
    )
    assert printed == {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    assert json.loads((tmp_path / "out.json").read_text()) == {"greeting": "Hello, world!"}

    tailed = json.loads(
        aws(
            "invoke", "--function-name", "hello", "--payload", "fileb://event.json",
            "--log-type", "Tail", "out.json",
        )
    )  # fmt: skip
    assert tailed["StatusCode"] == 200
    log = base64.b64decode(tailed["LogResult"]).decode().splitlines()
    assert log[0].startswith("START RequestId: ")
    assert "hello from hello" in log
    assert log[-1].startswith("REPORT RequestId: ")

    listed = json.loads(aws("list-functions"))
    assert [f["FunctionName"] for f in listed["Functions"]] == ["hello"]

    got = json.loads(aws("get-function", "--function-name", "hello"))
    assert got["Configuration"]["Handler"] == "app.handler"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as download:
        assert download.read() == (tmp_path / "function.zip").read_bytes()

    logs = aws("hello", program=(*LAMBDAD, "logs")).splitlines()
    assert sum(line.endswith(" hello from hello") for line in logs) == 2


# ----------------------------------------------------------------------------- lambdad logs


def printer(lam: Any, region_tag: str = "") -> str:
    """A function (unique name) that prints ``said <event.word><region_tag>``."""
    code = f"def handler(event, context):\n    print('said ' + event['word'] + {region_tag!r})\n"
    return str(create_function(lam, code, name=unique("logs"))["FunctionName"])


def test_logs_prints_a_function_log(server: Server, lam: Any) -> None:
    """``lambdad logs NAME`` prints START, the printed line, END and REPORT, each timestamped."""
    name = printer(lam)
    response, _ = invoke_json(lam, name, {"word": "once"})
    request_id = response["ResponseMetadata"]["RequestId"]

    def logged() -> list[str]:
        done = run([*LAMBDAD, "logs", name, "--endpoint", server.endpoint])
        assert done.returncode == 0, done.stderr
        messages = [line.split(" ", 1)[1] for line in done.stdout.splitlines()]
        return messages if any(m.startswith("REPORT") for m in messages) else []

    messages = wait_until(logged)
    assert messages[0].startswith("INIT_START Runtime Version: python3.11")
    assert messages[1] == f"START RequestId: {request_id} Version: $LATEST"
    assert "said once" in messages
    assert messages.index("said once") < messages.index(f"END RequestId: {request_id}")
    assert messages[-1].startswith(f"REPORT RequestId: {request_id}\t")


@pytest.fixture
def follower() -> Iterator[Any]:
    """Start ``lambdad logs --follow``; its stdout lines arrive on a queue. Stopped with SIGINT."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> queue.Queue[str]:
        # A test run started in the background (as CI may be) ignores SIGINT, and a child
        # inherits that: while the child starts, this process catches it, so that the child
        # gets the default and Python turns a Ctrl-C into KeyboardInterrupt as for a user.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(
                [*LAMBDAD, "logs", "--follow", *args], stdout=subprocess.PIPE, text=True
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        started.append(process)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        return lines

    yield start
    for process in started:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0


def read_until(lines: queue.Queue[str], wanted: str, timeout: float = 15.0) -> list[str]:
    """Lines from ``lines`` up to the first whose message is ``wanted``; fail at the deadline."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{wanted!r} not printed within {timeout} s; got {seen}")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(line)
        if line.split(" ", 1)[-1] == wanted:
            return seen


def test_logs_follow_shows_new_events(server: Server, lam: Any, follower: Any) -> None:
    """``lambdad logs --follow`` keeps running and prints events of invokes made after it began."""
    name = printer(lam)
    invoke_json(lam, name, {"word": "before"})
    lines = follower(name, "--endpoint", server.endpoint)
    read_until(lines, "said before")
    invoke_json(lam, name, {"word": "after"})
    later = read_until(lines, "said after")
    assert not any(line.endswith("said before") for line in later)


def test_logs_follow_with_a_filter(server: Server, lam: Any, follower: Any) -> None:
    """``lambdad logs --follow --filter PATTERN`` prints only the events the CloudWatch Logs
    filter pattern matches (the engine of FilterLogEvents), new ones as they come."""
    name = printer(lam)
    lines = follower(name, "--endpoint", server.endpoint, "--filter", "said -skip")
    invoke_json(lam, name, {"word": "skip"})
    invoke_json(lam, name, {"word": "kept"})
    later = read_until(lines, "said kept")
    assert [line.split(" ", 1)[1] for line in later] == ["said kept"]


def test_logs_filter_without_follow_and_a_bad_pattern(server: Server, lam: Any) -> None:
    """``lambdad logs --filter`` prints the matching events and ends; a malformed pattern is
    refused with the server's "Invalid filter pattern"."""
    name = printer(lam)
    invoke_json(lam, name, {"word": "one"})
    invoke_json(lam, name, {"word": "two"})

    def matching() -> list[str]:
        done = run([*LAMBDAD, "logs", name, "--endpoint", server.endpoint, "--filter", "?one ?two"])
        assert done.returncode == 0, done.stderr
        found = [line.split(" ", 1)[1] for line in done.stdout.splitlines()]
        return found if len(found) == 2 else []

    assert wait_until(matching) == ["said one", "said two"]
    bad = run([*LAMBDAD, "logs", name, "--endpoint", server.endpoint, "--filter", '"open'])
    assert bad.returncode == 1
    assert "Invalid filter pattern" in bad.stderr


def test_logs_of_one_region_leave_out_another(server: Server, lam: Any, client_of: Any) -> None:
    """A same-named function in another region does not show in ``lambdad logs --region``
    (each read asked until its lines arrived: CloudWatch Logs delivers them with a delay)."""
    name = printer(lam, " in east")
    west = client_of(server, "us-west-2")
    west.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    print('said in west')\n"})},
    )
    invoke_json(west, name, {})
    invoke_json(lam, name, {"word": "hi"})

    def logged(region: str) -> list[str]:
        argv = [*LAMBDAD, "logs", name, "--endpoint", server.endpoint, "--region", region]
        done = run(argv)
        assert done.returncode == 0, done.stderr
        return [line.split(" ", 1)[1] for line in done.stdout.splitlines()]

    east_log = wait_until(lambda: (log := logged("us-east-1")) and "said hi in east" in log and log)
    assert "said in west" not in east_log
    # Asked until it arrived too: a cluster's workers send their lines on independently.
    west_log = wait_until(lambda: (log := logged("us-west-2")) and "said in west" in log and log)
    assert "said hi in east" not in west_log


# --------------------------------------------------------------------------- lambdad doctor


def test_doctor_reports_sandbox_and_runtimes(server: Server) -> None:
    """``lambdad doctor`` prints the sandbox kind, its protections and every runtime's program."""
    done = run([*LAMBDAD, "doctor", "--endpoint", server.endpoint])
    assert done.returncode == 0, done.stderr
    report = server.get_json("/_lambdad/doctor")
    out = done.stdout.splitlines()
    assert "sandbox:" in out
    assert f"  kind: {report['sandbox']['kind']}" in out
    assert "  memory limit: " + report["sandbox"]["memory limit"] in out
    assert "runtimes:" in out
    assert f"  python3.11: {os.path.realpath(sys.executable)}" in out
    node = [line for line in out if line.startswith("  nodejs20.x: ")]
    assert node
    assert node[0].endswith("node")
    assert "  provided.al2023: the function's own bootstrap" in out
    runtimes = report["runtimes"]
    for runtime in ("python3.14", "python3.15", "nodejs24.x", "nodejs26.x"):
        assert any(line.startswith(f"  {runtime}: ") for line in out), runtime
    assert runtimes["python3.15"].endswith("preview)")
    assert runtimes["nodejs26.x"].endswith("preview)")
    assert not runtimes["nodejs24.x"].endswith("preview)")


def test_doctor_without_a_server_fails_cleanly() -> None:
    """``lambdad doctor`` against nothing exits 1 with a one-line message, not a traceback."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    done = run([*LAMBDAD, "doctor", "--endpoint", endpoint])
    assert done.returncode == 1
    assert done.stderr.startswith(f"lambdad doctor: cannot reach {endpoint}")
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- lambdad serve


def serve(tmp_path: Path, port: int, *args: str, env: dict[str, str] | None = None) -> Server:
    """``lambdad serve ARGS`` in ``tmp_path``, waited on until ``port`` answers health checks."""
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    full_env = {**os.environ, "LAMBDAD_TIME_SCALE": "0.01", **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*LAMBDAD, "serve", "--data-dir", str(data_dir), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=tmp_path,
        )
    srv = Server(process, port, data_dir, log_path, full_env)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"lambdad exited early:\n{srv.log()}")
        try:
            return bool(srv.get_json("/_lambdad/health")["status"] == "ok")
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=30)
    except BaseException:
        srv.stop(signal.SIGKILL)
        raise
    return srv


def test_serve_reads_a_config_file_and_lambdad_env_vars(tmp_path: Path, client_of: Any) -> None:
    """``--config`` sets the port; a ``LAMBDAD_*`` variable beats the file's value."""
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(f'port = {port}\naccount_id = "111111111111"\n')
    srv = serve(tmp_path, port, "--config", str(config), env={"LAMBDAD_ACCOUNT_ID": "123456789012"})
    try:
        fn = client_of(srv).create_function(
            FunctionName="configured",
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})},
        )
        assert fn["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:configured"
    finally:
        assert srv.stop() == 0


def test_sigint_stops_serve_cleanly(start_server: Any, client_of: Any) -> None:
    """SIGINT (Ctrl-C) stops lambdad with exit 0 and no runtime process left running (on a
    cluster: the worker that ran the function)."""
    srv = start_server()
    client = client_of(srv)
    name = unique("sigint")
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={
            "ZipFile": make_zip(
                {"app.py": IDENTITY + "def handler(e, c):\n    return environment_identity()\n"}
            )
        },
    )
    _, identity = invoke_json(client, name, {})
    runtime = environment_pids(identity)
    assert runtime, "the runtime is running"
    node = node_of(srv, identity)
    assert node is not None, "the runtime is a process of lambdad (of a node of its cluster)"
    shutdown(node, signal.SIGINT)
    assert "Traceback" not in node.log()
    assert_environment_gone(identity, timeout=0)


@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        ({"LAMBDAD_TIME_SCALE": "abc"}, None, "setting time_scale: expected float, got 'abc'"),
        ({"LAMBDAD_MAX_ENVIRONMENTS": "lots"}, None, "max_environments: expected int, got 'lots'"),
        ({}, "colour = 'blue'\n", "unknown settings colour"),
        ({}, "port = [", "settings.toml: not valid TOML: "),
    ],
    ids=["env-float", "env-int", "file-unknown-key", "file-bad-toml"],
)
def test_bad_settings_exit_with_a_message(
    tmp_path: Path, env: dict[str, str], config: str | None, message: str
) -> None:
    """A bad setting makes ``lambdad serve`` exit non-zero at once with a message, no traceback."""
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data")]
    if config is not None:
        (tmp_path / "settings.toml").write_text(config)
        args += ["--config", str(tmp_path / "settings.toml")]
    done = run([*LAMBDAD, *args], env={**os.environ, **env}, timeout=30)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("lambdad: ")


def test_serve_on_a_busy_port_exits_with_a_message(tmp_path: Path) -> None:
    """``lambdad serve`` on a port already taken exits 1 naming the address, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [*LAMBDAD, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        done = run(argv, timeout=30)
    assert done.returncode == 1
    assert done.stderr == f"lambdad: cannot start: 127.0.0.1:{port} is already in use\n"
