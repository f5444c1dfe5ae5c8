"""A zygote per Python interpreter in the Linux sandbox (issue 4, item 3).

A ``python3.X`` function whose runtime resolves to an interpreter other than lambdad's own
starts as a fork of a cell init made by a sandbox helper on that interpreter (which has already
imported the bootstrap), not as a fresh interpreter. Every test drives a real ``lambdad serve``
with boto3 and reads, from inside the function, what process it is: a forked runtime's
``/proc/self/cmdline`` is its helper's (``<python> -S .../cellinit.py spawner ...``), an exec'd
one's is ``<python> -s /var/runtime/python/bootstrap.py``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.runtime import runtimes
from lambdad.runtime.sandbox.helper import CELLINIT
from lambdad.runtime.sandbox.linux import SPARE_CELLS
from tests.cells import Host, alive, api_connections, interpreter_of
from tests.conftest import ROLE, Server, create_function, make_zip, unique, wait_until

LAMBDAD_PYTHON = os.path.realpath(sys.executable)
#: The runtimes whose exact interpreter this host has and which are not lambdad's own.
OTHERS = [
    runtime
    for runtime, version in sorted(runtimes.PYTHON_RUNTIMES.items(), key=lambda r: r[1])
    if (found := runtimes.find_python(version)) is not None and found != LAMBDAD_PYTHON
]
#: python3.12 where the host has it (SnapStart's oldest), else any other interpreter.
OTHER = "python3.12" if "python3.12" in OTHERS else (OTHERS or ["none"])[0]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not OTHERS, reason="this host has no Python interpreter (3.9+) besides lambdad's own"
    ),
]

LINUX = {"LAMBDAD_SANDBOX": "linux"}

WHOAMI = """
import os, sys

def cmdline(pid):
    with open("/proc/%s/cmdline" % pid, "rb") as handle:
        return handle.read().decode().split("\\0")[:-1]

def handler(event, context):
    return {
        "version": list(sys.version_info[:2]),
        "executable": sys.executable,
        "self": cmdline("self"),
        "parent": os.getppid(),
        "parent_cmdline": cmdline(os.getppid()),
        "echo": event,
    }
"""


def interpreter(runtime: str) -> str:
    found = runtimes.find_python(runtimes.PYTHON_RUNTIMES[runtime])
    assert found is not None
    return found


def create(client: Any, runtime: str) -> str:
    created = create_function(client, WHOAMI, name=unique("zyg"), runtime=runtime, Timeout=30)
    return str(created["FunctionName"])


def whoami(client: Any, name: str, event: Any = None) -> dict[str, Any]:
    response = client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return dict(body)


def assert_forked_on(seen: dict[str, Any], runtime: str) -> None:
    """The runtime is ``runtime``'s interpreter, forked from a cell init of its own helper."""
    python = interpreter(runtime)
    assert seen["version"] == list(runtimes.PYTHON_RUNTIMES[runtime]), seen
    assert seen["self"][:4] == [python, "-S", str(CELLINIT), "spawner"], (
        "not exec'd: the process still has its helper's command line",
        seen,
    )
    assert seen["parent"] == 1, "its parent is the cell's init"
    assert seen["parent_cmdline"] == seen["self"], "the init is a fork of the same helper"


def assert_execd_on(seen: dict[str, Any], python: str) -> None:
    assert seen["self"] == [python, "-s", "/var/runtime/python/bootstrap.py"], seen


@pytest.fixture
def linux_server(start_server: Callable[..., Server]) -> Callable[..., Server]:
    def start(data_dir: Path | None = None, **settings: str) -> Server:
        return start_server({**LINUX, **settings}, data_dir=data_dir)

    return start


@pytest.fixture
def lam(linux_server: Callable[..., Server]) -> Iterator[Any]:
    """A client of a Linux-sandbox lambdad, whatever ``LAMBDAD_SANDBOX`` the suite runs with."""
    client = linux_server().client()
    yield client
    client.close()


@pytest.fixture
def own(linux_server: Callable[..., Server]) -> Iterator[tuple[Server, Any]]:
    """A dedicated lambdad (its helpers are this test's alone) and a client of it."""
    srv = linux_server()
    client = srv.client()
    yield srv, client
    client.close()


def zygote_state(srv: Server, runtime: str) -> str:
    return str(srv.get_json("/_lambdad/doctor")["sandbox"][f"python {interpreter(runtime)}"])


# ------------------------------------------------------------------------------------ forks


def test_a_function_on_another_interpreter_runs_forked_from_its_zygote(
    own: tuple[Server, Any],
) -> None:
    """A python3.12 function (lambdad runs on another version) is a fork of a 3.12 cell init;
    its helper starts at that first cold start, and is kept for the next."""
    srv, client = own
    assert zygote_state(srv, OTHER).startswith("zygote (its helper starts at the first cold")
    assert len(Host(srv).spawners()) == 1, "only lambdad's own interpreter's helper at start"
    name = create(client, OTHER)
    first = whoami(client, name)
    assert_forked_on(first, OTHER)
    assert zygote_state(srv, OTHER).startswith(f"zygote (python {first['version'][0]}.")
    again = create(client, OTHER)
    assert_forked_on(whoami(client, again), OTHER)
    helpers = Host(srv).spawners()
    assert sorted(interpreter_of(p) for p in helpers) == sorted(
        {LAMBDAD_PYTHON, interpreter(OTHER)}
    ), "one helper per interpreter in use, kept between cold starts"


@pytest.mark.skipif(len(OTHERS) < 2, reason="this host has fewer than two other interpreters")
def test_two_other_versions_run_side_by_side_each_on_its_own_zygote(
    own: tuple[Server, Any],
) -> None:
    """Two other versions and lambdad's own, warm at once: each right version, each forked."""
    srv, client = own
    own_runtime = next(r for r in runtimes.PYTHON_RUNTIMES if interpreter(r) == LAMBDAD_PYTHON)
    chosen = [OTHERS[0], OTHERS[-1], own_runtime]
    names = {runtime: create(client, runtime) for runtime in chosen}
    for runtime, name in names.items():
        assert_forked_on(whoami(client, name, {"cold": runtime}), runtime)
    for runtime, name in names.items():
        seen = whoami(client, name, {"warm": runtime})
        assert seen["echo"] == {"warm": runtime}
        assert_forked_on(seen, runtime)
    helpers = Host(srv).spawners()
    assert sorted(interpreter_of(p) for p in helpers) == sorted(interpreter(r) for r in chosen)


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory a cell can see (a cell's ``/tmp`` is its own, so not below /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="lambdad-zygote-test-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


#: A Python older than the helper supports (it says its version in its hello, then stops).
OLD_PYTHON = next(
    iter(sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))), None
) or shutil.which("python3.8")

BROKEN_HELPERS = {
    "exits": ('echo "this python cannot run the helper" >&2; exit 3', "exited with status 3"),
    "too old": (f'exec {OLD_PYTHON} "$@"', "is older than 3.9, the oldest the helper runs on"),
}


@pytest.mark.parametrize("broken_how", sorted(BROKEN_HELPERS))
@pytest.mark.slow
def test_an_interpreter_whose_helper_cannot_start_is_execd_and_said_once(
    linux_server: Callable[..., Server], outside_tmp: Path, broken_how: str
) -> None:
    """A python3.12 that cannot run the helper (it exits, or is too old): its functions are
    exec'd (and work), lambdad logs why once, ``lambdad doctor`` says so, others still fork."""
    helper_run, reason = BROKEN_HELPERS[broken_how]
    if broken_how == "too old" and OLD_PYTHON is None:
        pytest.skip("this host has no python3.8 to play a too old interpreter")
    target = LAMBDAD_PYTHON  # what the broken python3.12 runs when it does run
    bin_dir = outside_tmp / "broken" / "bin"
    bin_dir.mkdir(parents=True)
    broken = bin_dir / "python3.12"
    broken.write_text(
        f'#!/bin/sh\ncase "$*" in *cellinit.py*) {helper_run};; esac\nexec {target} "$@"\n'
    )
    broken.chmod(0o755)
    srv = linux_server(LAMBDAD_PYTHON_SEARCH_PATH=str(bin_dir))
    client = srv.client()
    try:
        for _ in range(2):
            seen = whoami(client, create(client, "python3.12"))
            assert_execd_on(seen, target)  # the script exec'd it with the same arguments
        state = zygote_state_of(srv, str(broken))
        assert state.startswith("exec (no zygote: "), state
        assert reason in state, state
        assert srv.log().count(f"no zygote for {broken}") == 1, srv.log()
        for runtime in [r for r in OTHERS if r != "python3.12"][:1]:
            assert_forked_on(whoami(client, create(client, runtime)), runtime)
    finally:
        client.close()


def zygote_state_of(srv: Server, python: str) -> str:
    return str(srv.get_json("/_lambdad/doctor")["sandbox"][f"python {python}"])


def test_fork_python_off_execs_every_interpreter(linux_server: Callable[..., Server]) -> None:
    """``LAMBDAD_FORK_PYTHON=0``: no zygote anywhere, every Python runtime exec'd."""
    srv = linux_server(LAMBDAD_FORK_PYTHON="0")
    client = srv.client()
    try:
        assert_execd_on(whoami(client, create(client, OTHER)), interpreter(OTHER))
        assert zygote_state(srv, OTHER) == "exec (LAMBDAD_FORK_PYTHON=0)"
        assert len(Host(srv).spawners()) == 1, "no helper per interpreter without zygotes"
    finally:
        client.close()


# ------------------------------------------------------------------------------------ leaks


def warm_two_versions(client: Any) -> list[str]:
    names = [create(client, OTHER), create(client, OTHER)]
    for name in names:
        assert_forked_on(whoami(client, name), OTHER)
    return names


@pytest.mark.slow
def test_sigterm_ends_every_helpers_cells(linux_server: Callable[..., Server]) -> None:
    """Stopping lambdad ends the cells of every helper: processes, cgroups, dirs, helpers."""
    srv = linux_server()
    host = Host(srv)
    client = srv.client()
    warm_two_versions(client)
    client.close()
    # Two environments (an init and a runtime each), and the spares of both helpers.
    assert wait_until(lambda: len(host.cell_processes()) == 4 + 2 * SPARE_CELLS)
    cells, helpers = host.cell_processes(), host.spawners()
    assert len(helpers) == 2
    assert srv.stop() == 0, srv.log()
    assert not [pid for pid in [*cells, *helpers] if alive(pid)]
    assert host.cell_groups() == []
    assert host.instance_dirs() == []
    assert host.cell_dirs() == []


@pytest.mark.slow
def test_sigkill_ends_every_helpers_cells_and_restart_reclaims(
    linux_server: Callable[..., Server],
) -> None:
    """After a SIGKILL of lambdad, each helper ends its own (frozen) cells; a restart finds
    nothing left and forks the function again."""
    srv = linux_server()
    host = Host(srv)
    client = srv.client()
    names = warm_two_versions(client)
    client.close()
    assert wait_until(lambda: len(host.cell_processes()) == 4 + 2 * SPARE_CELLS)
    cells, helpers = host.cell_processes(), host.spawners()
    old_groups, old_dirs = set(host.cell_groups()), set(host.cell_dirs())
    srv.stop(signal.SIGKILL)
    wait_until(lambda: not [pid for pid in [*cells, *helpers] if alive(pid)], timeout=10)

    again = linux_server(data_dir=srv.data_dir)
    assert not old_groups & set(host.cell_groups())
    assert not old_dirs & set(Host(again).cell_dirs())
    client = again.client()
    try:
        assert_forked_on(whoami(client, names[0]), OTHER)
    finally:
        client.close()


@pytest.mark.slow
def test_many_environments_on_another_interpreter_leak_nothing(
    linux_server: Callable[..., Server],
) -> None:
    """Environments of a second helper made and retired leave processes, cgroups, mounts and
    fds (lambdad's and every helper's) as they were."""
    srv = linux_server()
    host = Host(srv)
    setup = srv.client()
    name = create(setup, OTHER)
    assert_forked_on(whoami(setup, name), OTHER)
    setup.close()
    wait_until(lambda: api_connections(srv.port) == 0)
    assert wait_until(lambda: host.counts()["cell processes"] == 2 + 2 * SPARE_CELLS)
    baseline = host.counts()
    assert baseline["spawners"] == 2
    client = srv.client()
    for index in range(30):
        client.update_function_configuration(FunctionName=name, Description=f"round {index}")
        assert whoami(client, name, {"i": index})["echo"] == {"i": index}
    client.close()
    try:
        wait_until(lambda: host.counts() == baseline, timeout=10)
    except AssertionError:
        pytest.fail(f"leaked: {host.counts()} vs {baseline}")


# ------------------------------------------------------------------------------------ snapstart


@pytest.mark.skipif("python3.12" not in OTHERS, reason="SnapStart needs python3.12 on this host")
def test_a_snapstart_template_on_python312_is_a_fork_of_its_zygote(lam: Any) -> None:
    """A SnapStart version's template on 3.12 starts as a fork of a 3.12 cell init, and its
    restored environments (forks of the template) serve as 3.12 with a private ``/tmp``."""
    name = unique("zygsnap")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": WHOAMI})},
        SnapStart={"ApplyOn": "PublishedVersions"},
        Timeout=30,
    )
    version = str(lam.publish_version(FunctionName=name)["Version"])
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
    )
    response = lam.invoke(FunctionName=name, Qualifier=version, LogType="Tail")
    seen = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, seen
    assert "Restore Duration" in base64.b64decode(response["LogResult"]).decode()
    python = interpreter("python3.12")
    assert seen["version"] == [3, 12]
    assert seen["self"][:4] == [python, "-S", str(CELLINIT), "spawner"], seen
    assert seen["parent"] != 1, "a restored environment is a child of its template"
    assert seen["parent_cmdline"] == seen["self"], "the template is a fork of the 3.12 zygote"


# ------------------------------------------------------------------------------------ extensions

#: An external extension that registers, says it is ready, and ends at shutdown.
EXTENSION = f"""#!{LAMBDAD_PYTHON}
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
body = json.dumps({{"events": ["SHUTDOWN"]}}).encode()
headers = {{"Lambda-Extension-Name": "ext"}}
request = urllib.request.Request(api + "/register", data=body, method="POST", headers=headers)
ext_id = urllib.request.urlopen(request).headers["Lambda-Extension-Identifier"]
headers = {{"Lambda-Extension-Identifier": ext_id}}
urllib.request.urlopen(urllib.request.Request(api + "/event/next", headers=headers)).read()
"""


def test_a_runtime_started_after_its_extensions_is_forked_too(lam: Any) -> None:
    """With an external extension (the environment is made before its runtime starts), the
    runtime on another interpreter is still a fork of that interpreter's zygote."""
    layer = lam.publish_layer_version(
        LayerName=unique("zygext"),
        Content={"ZipFile": make_zip({"extensions/ext": EXTENSION}, {"extensions/ext": 0o755})},
    )
    name = unique("zygext")
    lam.create_function(
        FunctionName=name,
        Runtime=OTHER,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": WHOAMI})},
        Layers=[layer["LayerVersionArn"]],
        Timeout=30,
    )
    assert_forked_on(whoami(lam, name), OTHER)
