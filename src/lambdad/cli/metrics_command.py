"""``lambdad metrics FUNCTION``: a function's metrics, one line per minute (or period)."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import urllib.error
import urllib.parse
from typing import Any

from lambdad.cli.client_commands import _common, _endpoint, _get

#: What ``lambdad metrics`` shows by default: metric and statistic.
DEFAULT = [
    ("Invocations", "Sum"),
    ("Errors", "Sum"),
    ("Throttles", "Sum"),
    ("Duration", "p50"),
    ("Duration", "p99"),
    ("ConcurrentExecutions", "Maximum"),
]


def add_parser(commands: Any) -> None:
    metrics = commands.add_parser("metrics", help="print a function's metrics per minute")
    metrics.add_argument("function", help="function name")
    metrics.add_argument("--qualifier", help="a version or alias (the Resource dimension)")
    metrics.add_argument("--minutes", type=int, default=15, help="how far back (15)")
    metrics.add_argument("--period", type=int, default=60, help="seconds per line (60)")
    metrics.add_argument(
        "--metric",
        action="append",
        help="METRIC[:STAT], e.g. Duration:p90 (repeatable; default: the usual six)",
    )
    _common(metrics)
    metrics.set_defaults(run=run_metrics)


def _wanted(args: argparse.Namespace) -> list[tuple[str, str]]:
    if not args.metric:
        return DEFAULT
    return [(name, stat or "Sum") for name, _, stat in (m.partition(":") for m in args.metric)]


def _column(base: str, args: argparse.Namespace, metric: str, stat: str) -> dict[int, float]:
    dims = [f"FunctionName={args.function}"]
    if args.qualifier:
        dims.append(f"Resource={args.function}:{args.qualifier}")
    now = time.time()
    query = urllib.parse.urlencode(
        [
            ("metric", metric),
            ("stat", stat),
            ("period", str(args.period)),
            ("start", str(now - args.minutes * 60)),
            ("end", str(now + 60)),
            *(("dimension", d) for d in dims),
        ]
    )
    page = _get(f"{base}/_lambdad/metrics/query?{query}", args.region)
    return {int(p["timestamp"]): float(p[stat]) for p in page["datapoints"]}


def run_metrics(args: argparse.Namespace) -> int:
    base = _endpoint(args)
    wanted = _wanted(args)
    try:
        columns = [_column(base, args, metric, stat) for metric, stat in wanted]
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        print(f"lambdad metrics: {exc.code} {body}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lambdad metrics: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    header = ["TIME (UTC)", *(f"{m}:{s}" for m, s in wanted)]
    rows = [header]
    for stamp in sorted({t for column in columns for t in column}):
        moment = datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%H:%M")
        cells = [_shown(column.get(stamp)) for column in columns]
        rows.append([moment, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _shown(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if value.is_integer() else f"{value:.2f}"
