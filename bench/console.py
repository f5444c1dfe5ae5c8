"""The web console's page loads with 1,000 functions, in a real headless Chromium.

Run: ``python bench/console.py [--functions 1000] [--loads 20]`` (needs ``playwright`` from the
test extras and Debian's ``chromium``). A lambdad of its own gets ``--functions`` functions; then
each page is loaded ``--loads`` times from scratch (a new navigation: HTML, CSS and JS fetched
and run, every API call of the page made) and timed from the navigation's start to the moment
the page has drawn its data (``performance.now()`` when the page marks itself loaded). Printed:
p50, p99 and max per page, in ms, beside the floor (one static file loaded the same way). The
bar (issue 14): under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from invoke_latency import create, free_port, percentile, start_lambdad, wait_http

SOURCE = "def handler(event, context):\n    return event\n"


def timed_loads(page: object, url: str, marker: str, loads: int) -> list[float]:
    """``loads`` timed loads of ``url``. A load whose requests Chromium aborted because the
    host's network changed (``net::ERR_NETWORK_CHANGED``: cells' interfaces made or removed
    by any lambdad on the host) is counted and made again; any other failure ends the run."""
    found: list[float] = []
    failed: list[str] = []

    def note(request: object) -> None:
        failed.append(str(request.failure))  # type: ignore[attr-defined]

    page.on("requestfailed", note)  # type: ignore[attr-defined]
    retried = 0
    while len(found) < loads:
        page.goto("about:blank")  # type: ignore[attr-defined]
        failed.clear()
        page.goto(url)  # type: ignore[attr-defined]
        try:
            page.wait_for_selector(  # type: ignore[attr-defined]
                f"body[data-loaded={marker}], .error", state="attached", timeout=20_000
            )
            loaded = page.evaluate(f"document.body.dataset.loaded === '{marker}'")  # type: ignore[attr-defined]
        except Exception:
            loaded = False
        if not loaded:
            if any("ERR_NETWORK_CHANGED" in f for f in failed) and retried < loads:
                retried += 1
                continue
            print("not loaded:", page.inner_text("body")[:2000], failed, file=sys.stderr)  # type: ignore[attr-defined]
            raise RuntimeError(f"{url} did not load")
        found.append(float(page.evaluate("Number(document.body.dataset.shownAt)")))  # type: ignore[attr-defined]
    page.remove_listener("requestfailed", note)  # type: ignore[attr-defined]
    if retried:
        print(f"  ({retried} loads made again after ERR_NETWORK_CHANGED)")
    return found


def api_times(port: int, pid: int, names: list[str], rounds: int = 100) -> None:
    """The list page's API calls alone, timed from a client on the same host (ms), on the
    console's port (which serves the API too)."""
    base = f"http://127.0.0.1:{port}"
    middle = len(names) // 2
    calls = {
        "ListFunctions MaxItems=50 (first page)": "/2015-03-31/functions/?MaxItems=50",
        "ListFunctions MaxItems=50 (page 10)": None,
        "console summary of 50": "/_lambdad/console/summary?"
        + "&".join(f"name={n}" for n in names[middle : middle + 50]),
    }
    skip = max(1, min(450, len(names) - 50))
    with urllib.request.urlopen(f"{base}/2015-03-31/functions/?MaxItems={skip}") as answer:
        marker = json.loads(answer.read()).get("NextMarker", "")
    calls["ListFunctions MaxItems=50 (page 10)"] = (
        f"/2015-03-31/functions/?MaxItems=50&Marker={urllib.parse.quote(marker)}"
    )
    for label, path in calls.items():
        ms = []
        cpu = cpu_seconds(pid)
        for _ in range(rounds):
            began = time.perf_counter()
            with urllib.request.urlopen(base + str(path)) as answer:
                answer.read()
            ms.append((time.perf_counter() - began) * 1000)
        per_call = (cpu_seconds(pid) - cpu) / rounds * 1000
        print(
            f"{label}: p50={percentile(ms, 50):.1f} ms p99={percentile(ms, 99):.1f} ms "
            f"(lambdad's CPU {per_call:.1f} ms a call)"
        )


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) the process has used: what a request costs lambdad,
    whatever else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium: apt-get install chromium", file=sys.stderr)
        return 1
    port, console_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_lambdad(port, Path(tmp), {"LAMBDAD_CONSOLE_PORT": str(console_port)})
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            wait_http(f"http://127.0.0.1:{console_port}/console/assets/console.css")
            began = time.monotonic()
            names = [f"fn-{i:04d}" for i in range(args.functions)]
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: create(port, n, SOURCE, "python3.11"), names))
            print(f"{args.functions} functions created in {time.monotonic() - began:.1f} s")
            api_times(console_port, server.pid, names)
            base = f"http://127.0.0.1:{console_port}/console/"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page()
                page.on(
                    "requestfailed",
                    lambda r: print("request failed:", r.url, r.failure, file=sys.stderr),
                )
                page.on(
                    "response",
                    lambda r: (
                        r.status >= 500 and print("answer:", r.status, r.url, file=sys.stderr)
                    ),
                )
                page.set_default_timeout(60_000)
                pages = {
                    "function list (first 50 of them)": (base + "#/", "list"),
                    "function page": (base + f"#/fn/{names[len(names) // 2]}", "function"),
                }
                floor = []
                for _ in range(args.loads):
                    page.goto("about:blank")
                    page.goto(base + "assets/console.css")
                    floor.append(
                        float(
                            page.evaluate("performance.getEntriesByType('navigation')[0].duration")
                        )
                    )
                print(
                    f"floor (one static file, no script): p50={percentile(floor, 50):.0f} ms "
                    f"p99={percentile(floor, 99):.0f} ms"
                )
                for label, (url, marker) in pages.items():
                    timed_loads(page, url, marker, 3)  # warm-up
                    ms = timed_loads(page, url, marker, args.loads)
                    print(
                        f"{label}: n={len(ms)} p50={percentile(ms, 50):.0f} ms "
                        f"p99={percentile(ms, 99):.0f} ms max={max(ms):.0f} ms"
                    )
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
