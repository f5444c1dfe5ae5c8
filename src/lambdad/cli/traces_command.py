"""``lambdad traces FUNCTION``: a function's recent traces, each as a timeline of its spans."""

from __future__ import annotations

import argparse
import datetime
import sys
import urllib.error
import urllib.parse
from typing import Any

from lambdad.cli.client_commands import _common, _endpoint, _get


def add_parser(commands: Any) -> None:
    traces = commands.add_parser("traces", help="print a function's recent traces")
    traces.add_argument("function", help="function name or ARN")
    traces.add_argument("--limit", type=int, default=10, help="how many traces (10)")
    _common(traces)
    traces.set_defaults(run=run_traces)


def run_traces(args: argparse.Namespace) -> int:
    base = _endpoint(args)
    query = urllib.parse.urlencode({"function": args.function, "limit": args.limit})
    try:
        page = _get(f"{base}/_lambdad/traces?{query}", args.region)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        print(f"lambdad traces: {exc.code} {body}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lambdad traces: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    for trace in page["Traces"]:
        _print_trace(trace)
    return 0


def _print_trace(trace: dict[str, Any]) -> None:
    """The trace id and start, then one line per span: offset, duration, depth-indented name."""
    began = trace["StartTime"]
    stamp = datetime.datetime.fromtimestamp(began, datetime.UTC).isoformat(timespec="milliseconds")
    print(f"{trace['TraceId']}  {stamp}")
    spans = trace["Spans"]
    depth = _depths(spans)
    for span in spans:
        offset = (span["StartTime"] - began) * 1000
        took = (span["EndTime"] - span["StartTime"]) * 1000
        mark = " !" if span["Error"] else ""
        indent = "  " * depth.get(span["Id"], 0)
        print(f"  +{offset:9.1f} ms {took:9.1f} ms  {indent}{span['Name']}{mark}")


def _depths(spans: list[dict[str, Any]]) -> dict[str, int]:
    parents = {s["Id"]: s["ParentId"] for s in spans}
    depths: dict[str, int] = {}
    for span_id in parents:
        depth, at, seen = 0, parents.get(span_id), {span_id}
        while at in parents and at not in seen:
            seen.add(at)
            depth, at = depth + 1, parents.get(at)
        depths[span_id] = depth
    return depths
