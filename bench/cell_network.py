"""The cells' network set-up in a burst, alone: ``--cells`` at once (issue 11).

Run as root: ``python bench/cell_network.py [--cells 100] [--src DIR]``. It makes a bridge of
its own (``lbdbench``, 10.229.0.0/22), forks ``--cells`` processes that each enter a new network
namespace and wait; then releases them together, and each does what a cell's init does for its
network (``cellinit._join_network`` and, where the code has it, ``_network_ready``: the veth
pair, the bridge port, addresses, route, the wait for the port to forward). Printed: the time
from the release until the last cell is done, and the per-cell p50 and maximum. ``--src`` picks
the ``src`` directory whose ``cellinit.py`` is measured (another checkout's, to compare). The
namespaces' creation is not in the figure (each is made before the release) unless
``--namespace`` (then each makes its namespace once released, and that is timed too);
``--no-network`` times the namespaces alone. ``--joined`` measures what a cell does instead
when lambdad has made its network ahead (``ready_networks.py``): the namespaces are made and
set up first (not timed, as lambdad does while idle), and once released each cell only
``setns``es into its own.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BRIDGE = "lbdbench"
CLONE_NEWNET = 0x40000000


def load_cellinit(src: Path) -> Any:
    path = src / "lambdad" / "runtime" / "sandbox" / "cellinit.py"
    spec = importlib.util.spec_from_file_location("bench_cellinit", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def net_of(index: int) -> dict[str, Any]:
    return {
        "bridge": BRIDGE,
        "host_if": f"lvb{index}",
        "address": f"10.229.{1 + index // 250}.{2 + index % 250}",
        "prefix": 22,
        "gateway": "10.229.0.1",
    }


def made_ahead(cellinit: Any, count: int) -> list[int]:
    """``count`` namespaces set up as lambdad makes them ahead (by a child, as lambdad's
    helper does): their descriptors, received over a socket."""
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        made = []
        for index in range(count):
            if cellinit._libc.unshare(CLONE_NEWNET) != 0:
                os._exit(1)
            host = cellinit._join_network(net_of(index))
            cellinit._network_ready(host, net_of(index))
            made.append(os.open("/proc/self/ns/net", os.O_RDONLY))
        for start in range(0, count, 200):
            socket.send_fds(theirs, [b"x"], made[start : start + 200])
        os._exit(0)
    fds: list[int] = []
    while len(fds) < count:
        _data, got, _flags, _addr = socket.recv_fds(ours, 16, 200)
        fds += got
    os.waitpid(pid, 0)
    return fds


def one_joined(fd: int, go_r: int, report_w: int) -> None:
    """In a forked child: once released, join the namespace made ahead for it."""
    libc = ctypes.CDLL(None, use_errno=True)
    os.read(go_r, 1)
    began = time.monotonic()
    if libc.setns(fd, CLONE_NEWNET) != 0:
        os._exit(1)
    os.close(fd)
    os.write(report_w, json.dumps([began, time.monotonic()]).encode().ljust(64))
    time.sleep(0.5)
    os._exit(0)


def one_cell(
    cellinit: Any, index: int, go_r: int, report_w: int, late_ns: bool, network: bool
) -> None:
    """In a forked child: a network namespace, then the cell's network once released."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not late_ns and libc.unshare(CLONE_NEWNET) != 0:
        os._exit(1)
    os.read(go_r, 1)  # EOF: released
    began = time.monotonic()
    if late_ns and libc.unshare(CLONE_NEWNET) != 0:
        os._exit(1)
    if not network:
        os.write(report_w, json.dumps([began, time.monotonic()]).encode().ljust(64))
        time.sleep(0.5)
        os._exit(0)
    net = net_of(index)
    try:
        host = cellinit._join_network(net)
        if hasattr(cellinit, "_network_ready"):
            cellinit._network_ready(host, net)
        said = json.dumps([began, time.monotonic()])
    except OSError as exc:
        said = json.dumps(str(exc)[:50])
    os.write(report_w, said.encode().ljust(64))
    time.sleep(0.5)  # the namespace outlives the others' set-up, as a cell's does
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--namespace", action="store_true", help="time the namespaces too")
    parser.add_argument("--no-network", action="store_true", help="time the namespaces alone")
    parser.add_argument(
        "--joined", action="store_true", help="join namespaces made ahead (lambdad's default)"
    )
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root")
    cellinit = load_cellinit(args.src)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    for command in (
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", "10.229.0.1/22", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ):
        subprocess.run(command, check=True)
    try:
        cellinit._HOST_NET = os.open("/proc/self/ns/net", os.O_RDONLY)
        ready = made_ahead(cellinit, args.cells) if args.joined else []
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        children = []
        for index in range(args.cells):
            pid = os.fork()
            if pid == 0:
                os.close(go_w)
                if args.joined:
                    one_joined(ready[index], go_r, report_w)
                late = args.namespace or args.no_network
                one_cell(cellinit, index, go_r, report_w, late, not args.no_network)
            children.append(pid)
        for fd in ready:
            os.close(fd)
        time.sleep(0.5)  # every child in its namespace, waiting
        released = time.monotonic()
        os.close(go_w)
        spans = [json.loads(os.read(report_r, 64)) for _ in range(args.cells)]
        for pid in children:
            os.waitpid(pid, 0)
    finally:
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    failed = [span for span in spans if isinstance(span, str)]
    if failed:
        raise SystemExit(f"{len(failed)} cells failed, first: {failed[0]}")
    ends = sorted(end - released for _, end in spans)
    each = sorted(end - began for began, end in spans)
    print(
        f"{args.src}: {args.cells} cells, last done {ends[-1] * 1000:.0f} ms; "
        f"per cell p50 {each[len(each) // 2] * 1000:.1f} ms, max {each[-1] * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
