"""``lambdad durable list|show|history|pause|resume|stop|delete FUNCTION [EXECUTION]``: a
function's durable executions, through the public API (ListDurableExecutionsByFunction,
GetDurableExecution, GetDurableExecutionHistory, Pause-, Resume-, Stop- and
DeleteDurableExecution)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import urllib.error
import urllib.parse
from collections.abc import Callable
from typing import Any

from lambdad.cli.client_commands import _common, _endpoint, _get, _send

_API = "/2025-12-01"


def add_parser(commands: Any) -> None:
    durable = commands.add_parser("durable", help="a function's durable executions")
    durable.add_argument("action", choices=tuple(_ACTIONS))
    durable.add_argument("function", help="function name or ARN")
    durable.add_argument("execution", nargs="?", help="execution name or ARN (all but list)")
    durable.add_argument("--reason", help="why the execution is paused or resumed")
    _common(durable)
    durable.set_defaults(run=run_durable)


def run_durable(args: argparse.Namespace) -> int:
    base = _endpoint(args)
    try:
        return _ACTIONS[args.action](base, args)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        print(f"lambdad durable: {exc.code} {body}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lambdad durable: cannot reach {base}: {exc}", file=sys.stderr)
        return 1


def _executions(base: str, args: argparse.Namespace, name: str | None = None) -> list[Any]:
    function = urllib.parse.quote(args.function, safe="")
    query = f"?{urllib.parse.urlencode({'DurableExecutionName': name})}" if name else ""
    url = f"{base}{_API}/functions/{function}/durable-executions{query}"
    found: list[Any] = _get(url, args.region)["DurableExecutions"]
    return found


def _arn(base: str, args: argparse.Namespace) -> str | None:
    """The execution's ARN: given, or found by its name (None, said on stderr, when not)."""
    if not args.execution:
        print("lambdad durable: name the execution", file=sys.stderr)
        return None
    if args.execution.startswith("arn:"):
        return str(args.execution)
    found = _executions(base, args, args.execution)
    if not found:
        print(f"lambdad durable: no execution {args.execution}", file=sys.stderr)
        return None
    return str(found[0]["DurableExecutionArn"])


def _list(base: str, args: argparse.Namespace) -> int:
    rows = [("NAME", "STATUS", "STARTED", "ENDED")]
    for e in _executions(base, args):
        rows.append(
            (
                e["DurableExecutionName"],
                e["Status"],
                _time(e["StartTimestamp"]),
                _time(e.get("EndTimestamp")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        print("  ".join([*cells, row[3]]))
    return 0


def _show(base: str, args: argparse.Namespace) -> int:
    arn = _arn(base, args)
    if arn is None:
        return 1
    print(json.dumps(_get(_execution_url(base, arn), args.region), indent=2))
    return 0


def _history(base: str, args: argparse.Namespace) -> int:
    arn = _arn(base, args)
    if arn is None:
        return 1
    url = _execution_url(base, arn) + "/history?IncludeExecutionData=true"
    for event in _get(url, args.region)["Events"]:
        details = event.get(f"{event['EventType']}Details") or {}
        said = f" {json.dumps(details)}" if details else ""
        name = f" {event['Name']}" if event.get("Name") else ""
        stamp = _time(event["EventTimestamp"])
        print(f"{event['EventId']:>4} {stamp} {event['EventType']}{name}{said}")
    return 0


def _change(method: str, suffix: str, document: Any = None) -> Callable[..., int]:
    """An action that sends ``method`` to the execution's URL + ``suffix`` and prints what
    the execution is then (or, once deleted, the answer)."""

    def act(base: str, args: argparse.Namespace) -> int:
        arn = _arn(base, args)
        if arn is None:
            return 1
        sent = document(args) if callable(document) else document
        answer = _send(_execution_url(base, arn) + suffix, args.region, method, sent)
        if method == "DELETE":
            print(json.dumps(answer, indent=2))
            return 0
        shown = _get(_execution_url(base, arn), args.region)
        print(f"{shown['DurableExecutionName']} {shown['Status']}")
        return 0

    return act


def _reason(args: argparse.Namespace) -> dict[str, Any]:
    return {"Reason": args.reason} if args.reason is not None else {}


def _execution_url(base: str, arn: str) -> str:
    return f"{base}{_API}/durable-executions/{urllib.parse.quote(arn, safe='')}"


def _time(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


Action = Callable[[str, argparse.Namespace], int]

_ACTIONS: dict[str, Action] = {
    "list": _list,
    "show": _show,
    "history": _history,
    "pause": _change("POST", "/pause", _reason),
    "resume": _change("POST", "/resume", _reason),
    "stop": _change("POST", "/stop"),
    "delete": _change("DELETE", ""),
}
