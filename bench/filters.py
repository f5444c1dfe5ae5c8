"""The cost of Lambda's event filtering in lambdad (``lambdad.events.filters``).

Run: ``python bench/filters.py [--rounds 200000]``. Prints a Markdown table: compiling five
patterns (done once per mapping write), building each source's view of a record with a 1 KB JSON
payload, and matching a view against one pattern that accepts it and against five that all
reject it (the worst case: every pattern is tried).
"""

from __future__ import annotations

import argparse
import base64
import json
import timeit
from collections.abc import Callable
from typing import Any

from lambdad.events.filters import compile_criteria, for_dynamodb, for_kinesis, for_sqs

FIVE = [
    json.dumps(p)
    for p in [
        {"body": {"RequestCode": ["BBBB"]}},
        {"body": {"RecordNumber": [{"numeric": [">", 0, "<=", 5]}]}},
        {"body": {"TimeStamp": [{"prefix": "2026-"}]}, "attributes": {"Count": ["1"]}},
        {"$or": [{"body": {"a": [{"exists": True}]}}, {"body": {"b": [{"anything-but": ["x"]}]}}]},
        {"body": {"c": [{"equals-ignore-case": "yes"}]}},
    ]
]
PAYLOAD = {"RecordNumber": 1234, "TimeStamp": "yyyy", "RequestCode": "AAAA", "pad": "x" * 1000}


def microseconds(work: Callable[[], Any], rounds: int) -> float:
    return min(timeit.repeat(work, number=rounds, repeat=3)) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200_000)
    rounds = parser.parse_args().rounds
    body = json.dumps(PAYLOAD)
    sqs = {"messageId": "m", "body": body, "attributes": {"Count": "1"}}
    kinesis = {"kinesis": {"data": base64.b64encode(body.encode()).decode(), "partitionKey": "1"}}
    dynamodb = {"eventName": "INSERT", "dynamodb": {"NewImage": {"pad": {"S": "x" * 1000}}}}
    five = compile_criteria(FIVE)
    one = compile_criteria(['{"body": {"RequestCode": ["AAAA"]}}'])
    view = for_sqs(sqs)
    rows = [
        ("compile 5 patterns", microseconds(lambda: compile_criteria(FIVE), rounds // 50)),
        ("for_sqs (1 KB JSON body)", microseconds(lambda: for_sqs(sqs), rounds)),
        ("for_kinesis (1 KB JSON data)", microseconds(lambda: for_kinesis(kinesis), rounds)),
        ("for_dynamodb", microseconds(lambda: for_dynamodb(dynamodb), rounds)),
        ("match: 1 pattern, accepted", microseconds(lambda: one.matches(view), rounds)),
        ("match: 5 patterns, all reject", microseconds(lambda: five.matches(view), rounds)),
    ]
    print("| step | µs |\n|---|---:|")
    for name, cost in rows:
        print(f"| {name} | {cost:.2f} |")


if __name__ == "__main__":
    main()
