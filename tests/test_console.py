"""The web console (docs/console.md) in a real headless Chromium driven by Playwright.

Chromium is Debian's ``chromium`` package (``pytest_sessionstart`` installs it where it can);
Playwright is the ``playwright`` package of the test extras, never ``playwright install``.
``LAMBDAD_CONSOLE_SCREENSHOTS=1`` saves a screenshot of each page to ``docs/console/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REPO,
    Recorder,
    Server,
    create_function,
    free_port,
    launch_server,
    shutdown,
    unique,
    wait_until,
)
from tests.test_durable import RETRYING, durable_function, sdk_files

__all__ = ["sdk_files"]  # the durable SDK fixture, used by name

pytestmark = pytest.mark.slow

SCREENSHOTS = os.environ.get("LAMBDAD_CONSOLE_SCREENSHOTS") == "1"
#: Generous: one CPU-starved page load of a shared test machine; never a timed assertion.
WAIT_MS = 30_000

CODE = """
import json

def handler(event, context):
    print("console-test says", json.dumps(event))
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event, "ok": True}
"""


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's), or a skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: apt-get install chromium (the test run installs it as root)")
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield chrome
        chrome.close()


class Console:
    """A lambdad with its console on a port of its own."""

    def __init__(self, server: Server, console_port: int) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{console_port}/console/"


def _console(tmp: Path, settings: dict[str, str]) -> Console:
    port = free_port()
    server = launch_server(tmp, {"LAMBDAD_CONSOLE_PORT": str(port), **settings})
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/console/assets/console.css", timeout=5):
                return True
        except OSError:
            return False

    wait_until(up, timeout=30)
    return Console(server, port)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    found = _console(tmp_path_factory.mktemp("console"), {})
    yield found
    shutdown(found.server)


@pytest.fixture(scope="module")
def function(console: Console) -> str:
    """A Python function that prints its event and answers it, Active."""
    client = console.server.client()
    name = unique("console")
    create_function(client, CODE, name=name, MemorySize=256, Description="console test")
    wait_until(
        lambda: client.get_function(FunctionName=name)["Configuration"]["State"] == "Active",
        timeout=60,
    )
    client.publish_version(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Description="second")
    wait_until(
        lambda: (
            client.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"]
            == "Successful"
        ),
        timeout=60,
    )
    client.publish_version(FunctionName=name)
    client.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}},
    )
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=1
    )
    client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    client.create_function_url_config(FunctionName=name, AuthType="NONE")
    client.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn="arn:aws:sqs:us-east-1:000000000000:console-queue",
        Enabled=False,
    )
    client.invoke(FunctionName=name, Payload=b"{}")
    return name


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    found = context.new_page()
    found.set_default_timeout(WAIT_MS)
    yield found
    context.close()


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        target = REPO / "docs" / "console" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)


def test_list_shows_functions(console: Console, function: str, page: Any) -> None:
    """The function list shows each function with its state, runtime, memory and last
    invocation; a function can be opened by name."""
    page.goto(console.url)
    row = page.locator(f'tr[data-function="{function}"]')
    row.wait_for()
    text = row.inner_text()
    assert "Active" in text
    assert "python3.11" in text
    assert "256 MB" in text
    assert row.locator("td.last-invocation").inner_text() != "—"
    shot(page, "functions")
    page.fill("#goto input", function)
    page.press("#goto input", "Enter")
    page.wait_for_selector("body[data-loaded=function]")
    assert page.locator("h1").inner_text() == function


def test_function_page_shows_configuration_versions_and_aliases(
    console: Console, function: str, page: Any
) -> None:
    """The function page shows the configuration (code size included), its versions, its
    aliases with their weights, reserved and provisioned concurrency, the event invoke config,
    the URL and the event source mapping."""
    page.goto(console.url + f"#/fn/{function}")
    page.wait_for_selector("body[data-loaded=function]")
    body = page.locator("#tab-body").inner_text()
    assert "Code size" in body
    assert "256 MB" in body
    versions = page.locator("#versions").inner_text()
    assert "$LATEST" in versions
    assert "1" in versions.split()
    assert "second" in versions
    aliases = page.locator("#aliases").inner_text()
    assert "live" in aliases
    assert "2: 25 %" in aliases
    assert "1: 75 %" in aliases
    assert "Reserved concurrency\n7" in body or "Reserved concurrency\t7" in body
    assert "Maximum retry attempts\n1" in body or "Maximum retry attempts\t1" in body
    assert ".lambda-url." in page.locator("#urls").inner_text()
    assert "console-queue" in page.locator("#mappings").inner_text()
    provisioned = page.locator("#provisioned tbody tr").inner_text().split("\t")
    assert provisioned[:2] == ["2", "1"]
    assert provisioned[3] in ("IN_PROGRESS", "READY")
    shot(page, "function")


def test_invoke_shows_result_log_tail_and_report(
    console: Console, function: str, page: Any
) -> None:
    """Invoke runs the function with the edited event and shows its result, its log tail and
    the REPORT figures (what Lambda's console shows for a test invoke)."""
    page.goto(console.url + f"#/fn/{function}/invoke")
    page.fill("#event", '{"hello": "console"}')
    page.click("#invoke")
    result = page.locator("#result")
    result.wait_for()
    assert json.loads(result.inner_text()) == {"echo": {"hello": "console"}, "ok": True}
    tail = page.locator("#log-tail").inner_text()
    assert 'console-test says {"hello": "console"}' in tail
    assert "REPORT RequestId" in tail
    report = page.locator("#report").inner_text()
    assert "Duration" in report
    assert "Max Memory Used" in report
    shot(page, "invoke")


def test_invoke_shows_a_function_error(console: Console, function: str, page: Any) -> None:
    """A function that raises shows as failed with its error document (Lambda answers 200 with
    X-Amz-Function-Error: Unhandled); an event that is not JSON is refused in the page."""
    page.goto(console.url + f"#/fn/{function}/invoke")
    page.fill("#event", "{not json")
    page.click("#invoke")
    assert "not valid JSON" in page.locator("#invoke-result").inner_text()
    page.fill("#event", '{"fail": true}')
    page.click("#invoke")
    result = page.locator("#result")
    result.wait_for()
    assert json.loads(result.inner_text())["errorMessage"] == "asked to fail"
    assert "Failed: Unhandled" in page.locator("#invoke-result").inner_text()


def test_list_pages_through_many_functions(console: Console, function: str, page: Any) -> None:
    """The list shows 50 functions a page (ListFunctions' MaxItems and Marker) and pages on."""
    client = console.server.client()
    names = [f"page-{i:03d}-{unique('p')}" for i in range(55)]
    for name in names:
        create_function(client, name=name)
    page.goto(console.url)
    page.locator("#functions tbody tr").first.wait_for()
    assert page.locator("#functions tbody tr").count() == 50
    seen = set(
        page.locator("#functions tbody tr").evaluate_all("rs => rs.map(r => r.dataset.function)")
    )
    while not set(names) <= seen:
        before = page.locator("#functions tbody tr").first.get_attribute("data-function")
        page.click("#next-page")
        page.wait_for_function(
            "b => document.querySelector('#functions tbody tr')?.dataset.function !== b",
            arg=before,
        )
        seen |= set(
            page.locator("#functions tbody tr").evaluate_all(
                "rs => rs.map(r => r.dataset.function)"
            )
        )
    assert "Page 2" in page.locator("main").inner_text()
    for name in names:
        client.delete_function(FunctionName=name)


def test_invoke_a_version(console: Console, function: str, page: Any) -> None:
    """Invoke can run a published version (or an alias): the answer says which version ran
    (X-Amz-Executed-Version)."""
    page.goto(console.url + f"#/fn/{function}/invoke")
    page.locator('#qualifier option[value="1"]').wait_for(state="attached")
    page.select_option("#qualifier", "1")
    page.click("#invoke")
    page.locator("#result").wait_for()
    assert page.locator("#executed-version").inner_text() == "version 1"


def test_saved_test_event_comes_back(console: Console, function: str, page: Any) -> None:
    """A saved test event is kept in the browser and can be picked again."""
    page.goto(console.url + f"#/fn/{function}/invoke")
    page.fill("#event", '{"saved": 1}')
    page.fill("#event-name", "mine")
    page.click("#save-event")
    page.reload()
    page.select_option("#saved-events", "mine")
    assert page.locator("#event").input_value() == '{"saved": 1}'


def test_logs_page_shows_a_line_and_filters(console: Console, function: str, page: Any) -> None:
    """The logs tab shows the function's log lines, live, and a filter pattern keeps only the
    lines that match it."""
    marker = unique("line")
    client = console.server.client()
    client.invoke(FunctionName=function, Payload=json.dumps({"m": marker}).encode())
    page.goto(console.url + f"#/fn/{function}/logs")
    lines = page.locator("#log-lines")
    page.wait_for_function(
        "m => document.getElementById('log-lines').textContent.includes(m)", arg=marker
    )
    later = unique("line")
    client.invoke(FunctionName=function, Payload=json.dumps({"m": later}).encode())
    page.wait_for_function(
        "m => document.getElementById('log-lines').textContent.includes(m)", arg=later
    )
    shot(page, "logs")
    page.fill("#log-filter", f'"{later}"')
    page.click("#apply-filter")
    page.wait_for_function(
        "m => document.getElementById('log-lines').textContent.includes(m)", arg=later
    )
    assert marker not in lines.inner_text()
    assert "START RequestId" not in lines.inner_text()


def test_metrics_chart_renders(console: Console, function: str, page: Any) -> None:
    """The metrics tab draws the invocations chart from lambdad's metrics (inline SVG), again
    over another range."""
    client = console.server.client()
    client.invoke(FunctionName=function, Payload=b"{}")
    deadline = time.monotonic() + 30
    page.goto(console.url + f"#/fn/{function}/metrics")
    while True:
        page.wait_for_selector("body[data-loaded=metrics]")
        chart = page.locator('.chart[data-metric="Invocations"]')
        if int(chart.get_attribute("data-points") or 0) > 0:
            break
        assert time.monotonic() < deadline, "no Invocations datapoint shown"
        page.reload()
    assert chart.locator("svg .point").count() >= 1
    assert page.locator('.chart[data-metric="Duration (ms)"] svg').count() == 1
    shot(page, "metrics")
    page.evaluate("delete document.body.dataset.loaded")
    page.select_option("#range", "86400")  # a day: wider periods, the same invocations
    page.wait_for_selector("body[data-loaded=metrics]")
    assert int(chart.get_attribute("data-points") or 0) > 0


def test_traces_tab_says_when_there_are_none(console: Console, function: str, page: Any) -> None:
    """The traces tab of a function with no sampled invocation says so in a plain sentence,
    not an error."""
    page.goto(console.url + f"#/fn/{function}/traces")
    found = page.locator("#traces-none, .timeline, #tab-body p.muted").first
    found.wait_for()
    assert "error" not in (found.get_attribute("class") or "")


def test_traces_tab_draws_a_sampled_invocation(console: Console, page: Any) -> None:
    """A function with TracingConfig Active, invoked with a sampled trace header, shows its
    trace in the traces tab as a timeline with lambdad's spans (the function's segments named
    with their X-Ray origin, its Initialization and Invocation indented under them)."""
    client = console.server.client()
    name = unique("traced")
    create_function(client, CODE, name=name, TracingConfig={"Mode": "Active"})
    wait_until(
        lambda: client.get_function(FunctionName=name)["Configuration"]["State"] == "Active",
        timeout=60,
    )
    client.invoke(FunctionName=name, Payload=b"{}")
    page.goto(console.url + f"#/fn/{name}/traces")
    page.locator(".timeline").first.wait_for()
    labels = page.locator(".timeline .label").all_inner_texts()
    assert f"{name} (AWS::Lambda)" in labels, labels
    assert f"{name} (AWS::Lambda::Function)" in labels, labels
    assert "Invocation" in labels, labels
    invocation = page.locator(".timeline .label", has_text="Invocation").first
    assert "padding-left:24px" in (invocation.get_attribute("style") or "")  # under both
    shot(page, "traces")


def _events(client: Any, arn: str) -> list[str]:
    history = client.get_durable_execution_history(DurableExecutionArn=arn)
    return [e["EventType"] for e in history["Events"]]


def test_durable_executions_are_listed_and_shown(
    console: Console, page: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A durable function's page lists its executions (filtered by status), and an execution's
    page shows its status, input, result and its history's events in the order the API gives
    them, each event's details on demand (what AWS's console shows for an execution)."""
    client = console.server.client()
    name = durable_function(client, recorder, sdk_files)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    response = client.invoke(
        FunctionName=name, Payload=b'{"wait": 1, "tag": "web"}', DurableExecutionName="web-run"
    )
    assert json.loads(response["Payload"].read()) == {"sum": 3, "input": "web"}
    arn = response["DurableExecutionArn"]

    page.goto(console.url + f"#/fn/{name}")
    section = page.locator("#durable-executions")
    row = section.locator('tr[data-execution="web-run"]')
    row.wait_for()
    assert "SUCCEEDED" in row.inner_text()
    if SCREENSHOTS:
        section.screenshot(path=str(REPO / "docs" / "console" / "durable-executions.png"))
    page.select_option("#execution-filter", "RUNNING")
    section.get_by_text("No RUNNING executions.").wait_for()
    page.select_option("#execution-filter", "SUCCEEDED")
    row.wait_for()

    row.locator("a").click()
    page.wait_for_selector("body[data-loaded=execution]")
    assert page.locator("#execution-status").inner_text() == "SUCCEEDED"
    assert page.locator("#stop-execution").count() == 0
    assert json.loads(page.locator("#execution-input").inner_text()) == {"wait": 1, "tag": "web"}
    assert json.loads(page.locator("#execution-result").inner_text()) == {"sum": 3, "input": "web"}
    shown = page.locator("#history tbody tr").evaluate_all("rows => rows.map(r => r.dataset.event)")
    assert shown == _events(client, arn)
    key = [t for t in shown if not t.startswith("Invocation")]
    assert key == [
        "ExecutionStarted",
        "StepStarted",
        "StepSucceeded",
        "WaitStarted",
        "WaitSucceeded",
        "StepStarted",
        "StepSucceeded",
        "ExecutionSucceeded",
    ]
    first = page.locator("#history tbody tr").first
    assert not first.locator("pre").is_visible()
    first.locator("summary").click()
    assert "ExecutionStartedDetails" in first.locator("pre").inner_text()
    shot(page, "durable-execution")


ECHO = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return event
"""


def test_durable_executions_are_paged_newest_first(
    console: Console, page: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """The executions section shows 20 executions a page, newest first, with Next and
    Previous (ListDurableExecutionsByFunction's Marker; AWS's console lists newest first)."""
    client = console.server.client()
    name = durable_function(client, recorder, sdk_files, ECHO)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    runs = [f"run-{i:02}" for i in range(21)]
    for run in runs:
        client.invoke(FunctionName=name, Payload=b"{}", DurableExecutionName=run)

    page.goto(console.url + f"#/fn/{name}")
    rows = page.locator("#executions tbody tr")
    page.locator('#executions tr[data-execution="run-20"]').wait_for()
    names = "rows => rows.map(r => r.dataset.execution)"
    assert rows.evaluate_all(names) == runs[:0:-1]
    page.click("#executions-next")
    page.locator('#executions tr[data-execution="run-00"]').wait_for()
    assert rows.evaluate_all(names) == ["run-00"]
    page.get_by_role("button", name="← Previous").click()
    page.locator('#executions tr[data-execution="run-20"]').wait_for()
    assert rows.count() == 20


def test_a_waiting_execution_is_stopped_from_the_console(
    console: Console, page: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """Stop on a running execution's page (after a confirmation) stops it: the page and
    GetDurableExecution then say STOPPED (AWS: StopDurableExecution ends a running execution)."""
    client = console.server.client()
    name = durable_function(client, recorder, sdk_files)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"wait": 300}')
    arn = response["DurableExecutionArn"]
    wait_until(lambda: "WaitStarted" in _events(client, arn), timeout=60)

    page.goto(console.url + "#/exec/" + urllib.parse.quote(arn, safe=""))
    page.wait_for_selector("body[data-loaded=execution]")
    assert page.locator("#execution-status").inner_text() == "RUNNING"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop-execution")
    page.locator("#execution-status", has_text="STOPPED").wait_for()
    assert page.locator("#stop-execution").count() == 0
    assert client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "STOPPED"
    assert _events(client, arn)[-1] == "ExecutionStopped"


def test_a_waiting_execution_is_paused_and_resumed_from_the_console(
    console: Console, page: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """Pause on a running execution's page pauses it (PAUSED, Resume offered instead); Resume
    runs it again (AWS: PauseDurableExecution, ResumeDurableExecution)."""
    client = console.server.client()
    name = durable_function(client, recorder, sdk_files)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"wait": 300}')
    arn = response["DurableExecutionArn"]
    wait_until(lambda: _events(client, arn)[-1:] == ["InvocationCompleted"], timeout=60)

    page.goto(console.url + "#/exec/" + urllib.parse.quote(arn, safe=""))
    page.wait_for_selector("body[data-loaded=execution]")
    page.click("#pause-execution")
    page.locator("#execution-status", has_text="PAUSED").wait_for()
    assert page.locator("#pause-execution").count() == 0
    assert client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "PAUSED"
    page.click("#resume-execution")
    page.locator("#execution-status", has_text="RUNNING").wait_for()
    assert page.locator("#resume-execution").count() == 0
    assert _events(client, arn)[-2:] == ["ExecutionPaused", "ExecutionResumed"]
    client.stop_durable_execution(DurableExecutionArn=arn)


def test_a_failed_execution_shows_its_error(
    console: Console, page: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A failed execution's page shows FAILED and the handler's error object (AWS:
    GetDurableExecution's Error); an execution that does not exist shows the API's error
    in the page, not a broken page."""
    client = console.server.client()
    name = durable_function(client, recorder, sdk_files, RETRYING)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    response = client.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert response.get("FunctionError")
    arn = response["DurableExecutionArn"]

    page.goto(console.url + "#/exec/" + urllib.parse.quote(arn, safe=""))
    page.wait_for_selector("body[data-loaded=execution]")
    assert page.locator("#execution-status").inner_text() == "FAILED"
    error = json.loads(page.locator("#execution-error").inner_text())
    assert error["ErrorType"] == "ValueError"
    assert "the handler gave up" in error["ErrorMessage"]
    assert page.locator("#execution-result").count() == 0

    head, _, tail = arn.rsplit("/", 2)  # .../durable-execution/<name>/<id>
    missing_arn = f"{head}/no-such-run/{tail}"
    page.goto(console.url + "#/exec/" + urllib.parse.quote(missing_arn, safe=""))
    missing = page.locator("#execution-load-error")
    missing.wait_for()
    assert "ResourceNotFoundException" in missing.inner_text()


def test_api_request_without_console_header_is_refused(console: Console) -> None:
    """A console request that changes something without X-Lambdad-Console is refused (403),
    so a cross-site form cannot invoke through a logged-in browser."""
    url = console.url.replace("/console/", "/2015-03-31/functions/x/invocations")
    request = urllib.request.Request(url, data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403


# ---------------------------------------------------------------- SigV4 mode


@pytest.fixture(scope="module")
def signed_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, dict]]:
    tmp = tmp_path_factory.mktemp("signed-console")
    data = tmp / "data"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdad.cli.main",
            "keys",
            "create",
            "--account-id",
            "111122223333",
            "--name",
            "alice",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        check=True,
    )
    key = json.loads(made.stdout)
    found = _console(tmp, {"LAMBDAD_AUTH": "sigv4"})
    yield found, key
    shutdown(found.server)


def test_sigv4_login_flow(signed_console: tuple[Console, dict], page: Any) -> None:
    """With SigV4 auth on, the console asks for an access key; a wrong secret gets the login
    page again with a message, the right one shows the caller's own account's functions, and
    logging out ends the session."""
    console, key = signed_console
    client = _signed_client(console.server, key)
    name = unique("signed")
    create_function(client, CODE, name=name, Role="arn:aws:iam::111122223333:role/r")

    page.goto(console.url)
    assert page.url.endswith("/console/login")
    shot(page, "login")
    page.fill("#access_key_id", key["AccessKeyId"])
    page.fill("#secret_access_key", "not-the-secret")
    page.click("button[type=submit]")
    assert "not valid" in page.locator("#login-error").inner_text()

    page.fill("#secret_access_key", key["SecretAccessKey"])
    page.click("button[type=submit]")
    page.locator(f'tr[data-function="{name}"]').wait_for()
    assert "111122223333" in page.locator("#who").inner_text()

    page.click("#logout-button")
    page.wait_for_url("**/console/login")
    page.goto(console.url)
    assert page.url.endswith("/console/login")


def _signed_client(server: Server, key: dict) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_requests_without_a_session_get_the_login_page_or_403(
    signed_console: tuple[Console, dict],
) -> None:
    """Without a session a page request is sent to the login page and an API request gets
    MissingAuthenticationTokenException (403) — never a 500."""
    console, _ = signed_console
    base = console.url.removesuffix("/console/")
    with urllib.request.urlopen(base + "/console/", timeout=10) as response:
        assert response.url.endswith("/console/login")
        assert b"Access key id" in response.read()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(base + "/2015-03-31/functions/", timeout=10)
    assert caught.value.code == 403
    assert caught.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    bad = urllib.request.Request(
        base + "/console/login", data=b"access_key_id=%ff&region=..", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bad, timeout=10)
    assert caught.value.code == 401


def test_console_endpoints_take_bad_input_without_a_5xx(console: Console) -> None:
    """The console's own paths answer odd input plainly: names that are no function are left
    out of the summary, asset names that climb out of the assets are not found."""
    base = console.url.removesuffix("/console/")
    odd = "&".join(f"name={n}" for n in ["%00", "a" * 300, "arn%3Aaws%3Ax", "", "%F0%9F%98%80"])
    with urllib.request.urlopen(base + "/_lambdad/console/summary?" + odd, timeout=10) as r:
        assert json.loads(r.read()) == {"functions": {}}
    for path in ["/console/assets/..%2Fconsole.py", "/console/assets/.hidden", "/console/nothing"]:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + path, timeout=10)
        assert caught.value.code == 404, path


def test_logs_tail_answers_the_last_matching_lines_then_reads_on(
    console: Console, function: str
) -> None:
    """``/_lambdad/logs?tail=N`` (the console's first read) answers the last N lines matching
    the filter and a position after which only newer lines are read."""
    client = console.server.client()
    marks = [unique("tail") for _ in range(3)]
    for mark in marks:
        client.invoke(FunctionName=function, Payload=json.dumps({"m": mark}).encode())
    query = f"/_lambdad/logs?function={function}&filter=console-test&tail=2"
    first = console.server.get_json(query)
    messages = [e["message"] for e in first["events"]]
    assert len(messages) == 2
    assert marks[1] in messages[0]
    assert marks[2] in messages[1]
    newer = unique("tail")
    client.invoke(FunctionName=function, Payload=json.dumps({"m": newer}).encode())
    position, seen = first["next"], []
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:  # a wait ends at any line, matching or not
        page = console.server.get_json(
            f"/_lambdad/logs?function={function}&filter=console-test&after={position}&wait=10"
        )
        position, seen = page["next"], seen + [e["message"] for e in page["events"]]
    assert len(seen) == 1
    assert newer in seen[0]


def test_a_taken_console_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    """The console's port (9001 unless set) already in use does not stop lambdad: the console
    listens on a free port, says which, and serves its page there."""
    import re
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    server = launch_server(tmp_path, {"LAMBDAD_CONSOLE_PORT": str(port)})
    try:
        said: list[str] = []

        def announced() -> bool:
            said[:] = re.findall(r"web console on (http://\S+)", server.log_path.read_text())
            return bool(said)

        wait_until(announced, timeout=30)
        assert f":{port}/" not in said[0]
        with urllib.request.urlopen(said[0], timeout=10) as answer:
            assert answer.status == 200
            assert b"<html" in answer.read().lower()
    finally:
        shutdown(server)
        taken.close()
