"""SnapStart for Python (issue 4, item 3): versions restored from a template that ran init once.

Every test drives a real ``lambdad serve`` with boto3; the template and the environments
forked from it are real processes (cells of the Linux sandbox where lambdad runs it).
"""

from __future__ import annotations

import base64
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import (
    IDENTITY,
    MEET,
    Rendezvous,
    Server,
    assert_environment_gone,
    create_function,
    environment_pids,
    invoke_json,
    node_of,
    refused,
    shutdown,
    unique,
    wait_until,
)

SNAP = {"ApplyOn": "PublishedVersions"}

#: Init takes a moment, sets module state, seeds ``random`` with a constant and registers hooks;
#: the handler says which process ran init and which runs it.
APP = (
    IDENTITY
    + MEET
    + """
import os, random, time, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

time.sleep(0.5 * float(os.environ.get("TIME_SCALE", "1")))
INIT_PID = os.getpid()
INIT_TOKEN = uuid.uuid4().hex
TEMPLATE = environment_identity()
random.seed(42)
BEFORE = []
AFTER = []


@register_before_snapshot
def before():
    BEFORE.append(os.getpid())


def after(tag):
    AFTER.append((tag, os.getpid()))


register_after_restore(after, "restored")


def handler(event, context):
    if event.get("meet"):
        with open("/tmp/mine-%d" % os.getpid(), "w") as handle:
            handle.write("x")
        meet()
    if event.get("mb"):
        block = bytearray(event["mb"] * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
    return {
        "init_pid": INIT_PID,
        "pid": os.getpid(),
        "token": INIT_TOKEN,
        "before": BEFORE,
        "after": AFTER,
        "random": random.random(),
        "type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "identity": environment_identity(),
        "template": TEMPLATE,
        "tmp": sorted(n for n in os.listdir("/tmp") if n.startswith("mine-")),
    }
"""
)


def create(client: Any, code: str = APP, **kwargs: Any) -> str:
    options: dict[str, Any] = {
        "SnapStart": SNAP,
        "Timeout": 30,
        "Environment": {"Variables": {"TIME_SCALE": "0.01"}},
        **kwargs,
    }
    created = create_function(client, code, name=unique("snap"), runtime="python3.12", **options)
    return str(created["FunctionName"])


def publish_active(client: Any, name: str) -> str:
    """Publish (Pending first), wait with botocore's waiter, return the version."""
    published = client.publish_version(FunctionName=name)
    assert published["State"] == "Pending", published
    assert published["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    version = str(published["Version"])
    client.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
    )
    return version


def report_of(tail: str) -> str:
    return next(line for line in tail.splitlines() if line.startswith("REPORT "))


def tail_of(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def test_a_published_version_is_restored_without_running_init_again(lam: Any) -> None:
    """Publish: Pending, then Active; the version's first environment is a fork of the template
    (init's module state, another process), with snap-start, hooks and Restore Duration."""
    name = create(lam)
    version = publish_active(lam, name)
    config = lam.get_function_configuration(FunctionName=name, Qualifier=version)
    assert config["State"] == "Active"
    assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    latest = lam.get_function_configuration(FunctionName=name)
    assert latest["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    assert lam.publish_version(FunctionName=name)["Version"] == version, "nothing new to publish"

    response, body = invoke_json(lam, name, {}, Qualifier=version, LogType="Tail")
    assert "FunctionError" not in response, body
    assert body["pid"] != body["init_pid"], "init ran in the template, not in this process"
    assert body["before"] == [body["init_pid"]], "before-snapshot hooks ran once, in the template"
    assert body["after"] == [["restored", body["pid"]]], "after-restore hooks ran here, once"
    assert body["type"] == "snap-start"
    assert body["stream"] is None
    report = report_of(tail_of(response))
    assert "\tRestore Duration: " in report, report
    assert "\tBilled Restore Duration: " in report, report
    assert "Init Duration" not in report, report

    again, warm = invoke_json(lam, name, {}, Qualifier=version, LogType="Tail")
    assert warm["pid"] == body["pid"]
    assert warm["after"] == body["after"]
    assert "Restore Duration" not in report_of(tail_of(again))

    _, on_latest = invoke_json(lam, name, {})
    assert on_latest["type"] == "on-demand"
    assert on_latest["pid"] == on_latest["init_pid"], "$LATEST runs init on demand"


def test_two_environments_of_a_version_draw_different_random_numbers(
    lam: Any, server: Server, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """Two concurrent environments restored from one template (init seeded ``random`` with 42)
    draw different numbers, and each ran its own after-restore hooks. On a cluster each worker
    makes a template of its own (AWS restores one snapshot everywhere): two environments on
    two workers come from two inits, and still draw different numbers."""
    meeting = rendezvous(2)
    name = create(lam, Environment={"Variables": {"TIME_SCALE": "0.01", **meeting.env}})
    version = publish_active(lam, name)
    bodies: list[Any] = []

    def call() -> None:
        client = server.client()
        bodies.append(invoke_json(client, name, {"meet": True}, Qualifier=version)[1])
        client.close()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(bodies) == 2, bodies
    first, second = bodies
    same_node = node_of(server, first["template"]) is node_of(server, second["template"])
    if same_node:
        assert first["token"] == second["token"], "both come from the same init"
    assert first["pid"] != second["pid"] or first["identity"] != second["identity"]
    assert first["random"] != second["random"]
    if server.get_json("/_lambdad/doctor")["sandbox"]["kind"] == "linux":
        # Each fork has a cgroup of its own and a /tmp of its own.
        assert first["identity"]["cell"] != second["identity"]["cell"]
        assert first["identity"]["cell"] != first["template"]["cell"]
        assert first["tmp"] == [f"mine-{first['pid']}"]
        assert second["tmp"] == [f"mine-{second['pid']}"]
    assert [tag for tag, _ in first["after"]] == ["restored"]
    assert [tag for tag, _ in second["after"]] == ["restored"]


def test_an_init_that_fails_makes_the_version_failed(lam: Any) -> None:
    """A SnapStart version whose init raises is Failed (FunctionError), and the waiter says so."""
    name = create(lam, code="raise RuntimeError('no snapshot for you')\n")
    published = lam.publish_version(FunctionName=name)
    assert published["State"] == "Pending"
    version = str(published["Version"])
    waiter = lam.get_waiter("published_version_active")
    with pytest.raises(Exception, match="Failed"):
        waiter.wait(
            FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
        )
    config = lam.get_function_configuration(FunctionName=name, Qualifier=version)
    assert (config["State"], config["StateReasonCode"]) == ("Failed", "FunctionError")
    with refused("ResourceConflictException", 409):
        lam.invoke(FunctionName=name, Qualifier=version)


def test_snapstart_on_an_unsupported_runtime_is_refused(lam: Any) -> None:
    """SnapStart needs python3.12 or later: AWS's message otherwise, on create and update."""
    with refused(
        "InvalidParameterValueException",
        400,
        "python3.11 is not supported for SnapStart enabled functions.",
    ):
        create(lam, Runtime="python3.11")
    name = create(lam)
    with refused(
        "InvalidParameterValueException",
        400,
        "python3.11 is not supported for SnapStart enabled functions.",
    ):
        lam.update_function_configuration(FunctionName=name, Runtime="python3.11")


def test_snapstart_refuses_large_ephemeral_storage_and_provisioned_concurrency(lam: Any) -> None:
    """AWS: SnapStart supports neither ephemeral storage over 512 MB nor provisioned
    concurrency (on the version, or on an alias of it)."""
    storage = "SnapStart is not supported for functions with ephemeral storage greater than 512 MB."
    with refused("InvalidParameterValueException", 400, storage):
        create(lam, EphemeralStorage={"Size": 1024})
    name = create(lam, code="def handler(event, context):\n    return 1\n")
    with refused("InvalidParameterValueException", 400, storage):
        lam.update_function_configuration(FunctionName=name, EphemeralStorage={"Size": 513})
    version = publish_active(lam, name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    provisioned = (
        "Provisioned concurrency is not supported for SnapStart enabled function versions."
    )
    for qualifier in (version, "live"):
        with refused("InvalidParameterValueException", 400, provisioned):
            lam.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=1
            )


@pytest.mark.root
def test_a_forked_environment_has_its_own_memory_limit(lam: Any, server: Server) -> None:
    """A 128 MB SnapStart function allocating 300 MB in a restored environment is
    Runtime.OutOfMemory, as for other cells (Linux sandbox only)."""
    if server.get_json("/_lambdad/doctor")["sandbox"]["kind"] != "linux":
        pytest.skip("memory limits need the Linux sandbox")
    name = create(lam, MemorySize=128)
    version = publish_active(lam, name)
    response, body = invoke_json(lam, name, {"mb": 300}, Qualifier=version)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory", body
    _, fine = invoke_json(lam, name, {"mb": 1}, Qualifier=version)
    assert fine["token"], "the next invoke is restored from the same template"


def test_deleting_and_stopping_leave_no_template_or_fork_behind(
    start_server: Callable[..., Server],
) -> None:
    """Deleting a SnapStart version ends its template and forks (the other version's template
    lives on); a restarted lambdad makes templates again on first use; stopping leaves no
    process or cgroup behind."""
    srv = start_server()
    client = srv.client()
    name = create(client)
    version = publish_active(client, name)
    _, body = invoke_json(client, name, {}, Qualifier=version)
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"TIME_SCALE": "0.01", "SECOND": "2"}}
    )
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    kept = publish_active(client, name)
    _, other = invoke_json(client, name, {}, Qualifier=kept)
    assert other["token"] != body["token"]

    client.delete_function(FunctionName=name, Qualifier=version)
    # The fork closes with its pool; the template with the version.
    assert_environment_gone(body["identity"], timeout=20)
    assert_environment_gone(body["template"], timeout=20)
    _, still = invoke_json(client, name, {}, Qualifier=kept)
    if node_of(srv, still["template"]) is node_of(srv, other["template"]):  # (a cluster's
        # api node may route it to another worker, which makes a template of its own)
        assert still["token"] == other["token"], "the other version's template was kept"
    assert environment_pids(other["template"]), "the other version's template still runs"

    data = srv.data_dir
    client.close()
    shutdown(srv)
    again = start_server(data_dir=data)
    client = again.client()
    response, restored = invoke_json(client, name, {}, Qualifier=kept)
    assert "FunctionError" not in response, restored
    assert restored["type"] == "snap-start"
    assert restored["pid"] != restored["init_pid"], "the template was made again on first use"
    assert restored["token"] != other["token"], "by a new init"
    client.close()


def test_the_plain_sandbox_forks_the_template_process_directly(
    start_server: Callable[..., Server],
) -> None:
    """Under plain processes a SnapStart version is restored by forking the template too,
    and stopping lambdad leaves neither behind."""
    srv = start_server({"LAMBDAD_SANDBOX": "process"})
    client = srv.client()
    name = create(client)
    version = publish_active(client, name)
    response, body = invoke_json(client, name, {}, Qualifier=version, LogType="Tail")
    assert "FunctionError" not in response, body
    assert body["type"] == "snap-start"
    assert body["pid"] != body["init_pid"]
    assert body["before"] == [body["init_pid"]]
    assert body["after"] == [["restored", body["pid"]]]
    assert "\tRestore Duration: " in report_of(tail_of(response))
    client.close()
    shutdown(srv)
    assert_environment_gone(body["identity"])
    assert_environment_gone(body["template"])


def test_a_snapshot_interrupted_by_a_stop_is_made_at_the_next_start(
    start_server: Callable[..., Server], rendezvous: Callable[[int], Rendezvous]
) -> None:
    """lambdad stopped while a version's init runs: the version is Pending, and the next
    lambdad on the same data makes its snapshot (the second init meets the first's party)."""
    meeting = rendezvous(2)
    srv = start_server()
    client = srv.client()
    code = MEET + "meet()\n\ndef handler(event, context):\n    return 'restored'\n"
    name = create(client, code=code, Environment={"Variables": meeting.env})
    version = str(client.publish_version(FunctionName=name)["Version"])
    wait_until(lambda: meeting.count == 1)  # the template is in its init
    data = srv.data_dir
    client.close()
    shutdown(srv)
    again = start_server(data_dir=data)
    client = again.client()
    client.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
    )
    assert invoke_json(client, name, {}, Qualifier=version)[1] == "restored"
    client.close()


@pytest.mark.root
def test_a_killed_lambdad_leaves_no_fork_behind(start_server: Callable[..., Server]) -> None:
    """SIGKILL of lambdad (on a cluster: of the worker holding them): the (frozen)
    environments forked from a template die and their cgroups go, as cells do (the sandbox
    helper ends them); a restart works on."""
    srv = start_server()
    if srv.get_json("/_lambdad/doctor")["sandbox"]["kind"] != "linux":
        pytest.skip("cgroups of forks exist in the Linux sandbox only")
    client = srv.client()
    name = create(client)
    version = publish_active(client, name)
    _, body = invoke_json(client, name, {}, Qualifier=version)
    client.close()
    holder = node_of(srv, body["template"])
    assert holder is not None, "the template runs under lambdad (a node of its cluster)"
    holder.stop(signal.SIGKILL)
    assert_environment_gone(body["identity"], timeout=20)
    assert_environment_gone(body["template"], timeout=20)
    again = start_server(data_dir=srv.data_dir)
    client = again.client()
    assert invoke_json(client, name, {}, Qualifier=version)[1]["type"] == "snap-start"
    client.close()
