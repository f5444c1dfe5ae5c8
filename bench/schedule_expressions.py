"""Microseconds per ``ScheduleExpression.next_after`` for a few typical expressions.

Run: ``PYTHONPATH=src python bench/schedule_expressions.py``. Each figure is the mean of
20,000 calls from the same instant (the parsed fields are cached, so this is the search alone).
"""

from __future__ import annotations

import datetime
import timeit

from lambdad.control.schedule_expressions import parse_expression

CASES = [
    ("rate(5 minutes)", "UTC"),
    ("cron(0/15 10-16 ? * MON-FRI *)", "UTC"),
    ("cron(30 2 * * ? *)", "America/New_York"),
    ("cron(0 9 LW * ? *)", "Europe/London"),
    ("cron(0 10 ? * 6#3 *)", "UTC"),
    ("cron(0 0 29 2 ? *)", "UTC"),
    ("at(2027-01-01T00:00:00)", "Europe/London"),
]


def main() -> None:
    after = datetime.datetime(2026, 3, 7, 12, 34, tzinfo=datetime.UTC)
    print("| expression | time zone | µs per next_after |")
    print("|---|---|---|")
    for text, zone in CASES:
        expression = parse_expression(text, zone)
        runs = 20_000
        seconds = timeit.timeit(lambda e=expression: e.next_after(after), number=runs)
        print(f"| `{text}` | {zone} | {seconds / runs * 1e6:.1f} |")


if __name__ == "__main__":
    main()
