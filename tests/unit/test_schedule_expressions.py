"""Unit tests of AWS schedule expressions (lambdad.control.schedule_expressions).

The rules come from EventBridge's "Schedule expressions for rules" and EventBridge
Scheduler's "Schedule types" pages: six cron fields, ``?`` in one of the day fields, days of
the week numbered 1-7 = SUN-SAT, ``L``/``W``/``#``, years 1970-2199, rate units singular only
for 1; a local time skipped by a spring-forward change does not fire, one repeated by a
fall-back change fires once.
"""

from __future__ import annotations

import calendar
import datetime
import random
import zoneinfo

import pytest

from lambdad.control.schedule_expressions import (
    InvalidExpression,
    ScheduleExpression,
    parse_expression,
)

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    """An instant written in UTC (``2026-03-08T06:00``)."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def occurrences(expression: ScheduleExpression, after: datetime.datetime, count: int) -> list[str]:
    found: list[str] = []
    current: datetime.datetime | None = after
    for _ in range(count):
        assert current is not None
        current = expression.next_after(current)
        if current is None:
            break
        found.append(current.strftime("%Y-%m-%dT%H:%M"))
    return found


# (expression, time zone, after (UTC), the next occurrences in UTC)
TABLE = [
    # plain fields, lists, ranges, steps, names
    ("cron(15 10 * * ? *)", "UTC", "2026-01-01T10:15", ["2026-01-02T10:15", "2026-01-03T10:15"]),
    (
        "cron(0/15 10 ? * MON-FRI *)",
        "UTC",
        "2026-01-02T10:40",
        ["2026-01-02T10:45", "2026-01-05T10:00"],
    ),
    ("cron(0 18 ? * 2-6 *)", "UTC", "2026-01-02T19:00", ["2026-01-05T18:00", "2026-01-06T18:00"]),
    (
        "cron(0 8 1 JAN,JUL ? *)",
        "UTC",
        "2026-01-01T09:00",
        ["2026-07-01T08:00", "2027-01-01T08:00"],
    ),
    ("cron(5,35 */6 * * ? *)", "UTC", "2026-01-01T06:10", ["2026-01-01T06:35", "2026-01-01T12:05"]),
    (
        "cron(0 22-2/2 * * ? *)",
        "UTC",
        "2026-01-01T21:00",
        ["2026-01-01T22:00", "2026-01-02T00:00", "2026-01-02T02:00"],
    ),
    (
        "cron(0 12 ? * FRI-MON *)",
        "UTC",
        "2026-01-02T13:00",
        ["2026-01-03T12:00", "2026-01-04T12:00", "2026-01-05T12:00", "2026-01-09T12:00"],
    ),
    ("cron(0 12 ? * 1 *)", "UTC", "2026-01-01T00:00", ["2026-01-04T12:00"]),  # 1 is Sunday
    ("cron(0 12 ? * 7 *)", "UTC", "2026-01-01T00:00", ["2026-01-03T12:00"]),  # 7 is Saturday
    # L, W, LW, #
    (
        "cron(0 0 L * ? *)",
        "UTC",
        "2028-01-31T00:00",
        ["2028-02-29T00:00", "2028-03-31T00:00", "2028-04-30T00:00"],
    ),
    ("cron(0 0 L 2 ? *)", "UTC", "2026-03-01T00:00", ["2027-02-28T00:00", "2028-02-29T00:00"]),
    (
        "cron(0 9 LW * ? *)",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-30T09:00", "2026-02-27T09:00", "2026-03-31T09:00"],
    ),
    (
        "cron(0 9 15W * ? *)",
        "UTC",
        "2026-02-01T00:00",
        ["2026-02-16T09:00", "2026-03-16T09:00", "2026-04-15T09:00"],
    ),
    ("cron(0 9 1W * ? *)", "UTC", "2026-07-15T00:00", ["2026-08-03T09:00"]),  # Sat 1st -> Mon 3rd
    (
        "cron(0 9 31W * ? *)",
        "UTC",
        "2026-05-01T00:00",
        ["2026-05-29T09:00", "2026-07-31T09:00"],
    ),  # Sun 31st -> Fri
    ("cron(0 10 ? * 6#3 *)", "UTC", "2026-12-01T00:00", ["2026-12-18T10:00", "2027-01-15T10:00"]),
    ("cron(0 10 ? * MON#5 *)", "UTC", "2026-01-01T00:00", ["2026-03-30T10:00", "2026-06-29T10:00"]),
    ("cron(0 10 ? * 5L *)", "UTC", "2026-01-01T00:00", ["2026-01-29T10:00", "2026-02-26T10:00"]),
    ("cron(0 10 ? * L *)", "UTC", "2026-01-01T00:00", ["2026-01-03T10:00", "2026-01-10T10:00"]),
    # leap years and years
    ("cron(0 0 29 2 ? *)", "UTC", "2026-01-01T00:00", ["2028-02-29T00:00", "2032-02-29T00:00"]),
    ("cron(0 0 29 2 ? 2097-2105)", "UTC", "2026-01-01T00:00", ["2104-02-29T00:00"]),  # not 2100
    (
        "cron(0 0 1 1 ? 2027,2030)",
        "UTC",
        "2026-01-01T00:00",
        ["2027-01-01T00:00", "2030-01-01T00:00"],
    ),
    ("cron(0 0 31 12 ? 2199)", "UTC", "2199-12-31T00:00", []),
    ("cron(0 0 1 1 ? 2020/5)", "UTC", "2026-01-01T00:00", ["2030-01-01T00:00", "2035-01-01T00:00"]),
    # a time zone without daylight saving, and the Southern hemisphere
    ("cron(0 9 * * ? *)", "Asia/Tokyo", "2026-01-01T00:00", ["2026-01-02T00:00"]),
    (
        "cron(0 2 * * ? *)",
        "Australia/Sydney",
        "2026-04-04T00:00",
        ["2026-04-04T15:00", "2026-04-05T16:00"],
    ),
    # America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST
    (
        "cron(30 2 * * ? *)",
        "America/New_York",
        "2026-03-07T00:00",
        ["2026-03-07T07:30", "2026-03-09T06:30"],
    ),
    (
        "cron(0 3 * * ? *)",
        "America/New_York",
        "2026-03-07T09:00",
        ["2026-03-08T07:00", "2026-03-09T07:00"],
    ),
    (
        "cron(30 1 * * ? *)",
        "America/New_York",
        "2026-10-31T06:00",
        ["2026-11-01T05:30", "2026-11-02T06:30"],
    ),
    (
        "cron(0/30 1-2 * * ? *)",
        "America/New_York",
        "2026-11-01T04:00",
        ["2026-11-01T05:00", "2026-11-01T05:30", "2026-11-01T07:00", "2026-11-01T07:30"],
    ),
    (
        "cron(0 * * * ? *)",
        "America/New_York",
        "2026-03-08T05:30",
        ["2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00"],
    ),
    # Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT
    ("cron(30 1 * * ? *)", "Europe/London", "2026-03-28T02:00", ["2026-03-30T00:30"]),
    (
        "cron(30 1 * * ? *)",
        "Europe/London",
        "2026-10-24T01:00",
        ["2026-10-25T00:30", "2026-10-26T01:30"],
    ),
    ("cron(0 0 L 2 ? *)", "Europe/London", "2027-03-01T00:00", ["2028-02-29T00:00"]),
    # rate (from the epoch without an anchor) and at
    ("rate(1 minute)", "UTC", "2026-01-01T00:00", ["2026-01-01T00:01", "2026-01-01T00:02"]),
    ("rate(5 minutes)", "UTC", "2026-01-01T00:03", ["2026-01-01T00:05", "2026-01-01T00:10"]),
    (
        "rate(1 day)",
        "America/New_York",
        "2026-03-07T12:00",
        ["2026-03-08T00:00", "2026-03-09T00:00"],
    ),
    ("at(2026-03-08T02:30:00)", "America/New_York", "2026-01-01T00:00", ["2026-03-08T07:30"]),
    ("at(2026-11-01T01:30:00)", "America/New_York", "2026-01-01T00:00", ["2026-11-01T05:30"]),
    ("at(2026-06-01T12:00:00)", "Europe/London", "2026-06-01T11:00", []),
]


@pytest.mark.parametrize(("text", "zone", "after", "expected"), TABLE)
def test_next_occurrences(text: str, zone: str, after: str, expected: list[str]) -> None:
    """Each expression's next occurrences are AWS's: 1-7 = SUN-SAT, L/W/LW/#, leap years, year
    lists, a skipped spring-forward time, a repeated fall-back time fired once (its first)."""
    expression = parse_expression(text, zone)
    assert occurrences(expression, at(after), max(len(expected), 1)) == expected


def test_rate_counts_from_its_anchor() -> None:
    """A rate's occurrences are counted from the schedule's start, the start itself first."""
    rate = parse_expression("rate(7 minutes)")
    anchor = at("2026-01-01T00:02:30")
    assert rate.next_after(at("2025-12-31T00:00"), anchor) == anchor
    assert rate.next_after(anchor, anchor) == at("2026-01-01T00:09:30")
    assert rate.next_after(at("2026-01-01T01:00"), anchor) == at("2026-01-01T01:05:30")


def test_rate_days_are_24_hours_across_daylight_saving() -> None:
    """Scheduler counts rate(1 day) as 24 hours, so its wall-clock time moves with DST."""
    rate = parse_expression("rate(1 day)", "America/New_York")
    anchor = at("2026-03-07T17:00")  # 12:00 EST
    assert rate.next_after(anchor, anchor) == at("2026-03-08T17:00")  # 13:00 EDT


def test_one_time_and_naive_after() -> None:
    """at() is one-time, rate and cron are not; a naive `after` is refused."""
    assert parse_expression("at(2030-01-01T00:00:00)").is_one_time()
    assert not parse_expression("rate(1 hour)").is_one_time()
    assert not parse_expression("cron(0 0 * * ? *)").is_one_time()
    with pytest.raises(ValueError, match="aware"):
        parse_expression("rate(1 hour)").next_after(datetime.datetime(2026, 1, 1))


INVALID = [
    ("cron(0 0 * * * *)", "exactly one of day-of-month and day-of-week must be ?"),
    ("cron(0 0 ? * ? *)", "exactly one of day-of-month and day-of-week must be ?"),
    ("cron(0 0 * * ?)", "six fields"),
    ("cron(0 0 * * ? * *)", "six fields"),
    ("cron(0  0 * * ? *)", "six fields"),
    ("cron(60 0 * * ? *)", "60 is out of 0-59"),
    ("cron(0 24 * * ? *)", "24 is out of 0-23"),
    ("cron(0 0 32 * ? *)", "32 is out of 1-31"),
    ("cron(0 0 0 * ? *)", "0 is out of 1-31"),
    ("cron(0 0 ? 13 * *)", "13 is out of 1-12"),
    ("cron(0 0 ? * 0 *)", "0 is out of 1-7"),
    ("cron(0 0 ? * 8 *)", "8 is out of 1-7"),
    ("cron(0 0 * * ? 1969)", "1969 is out of 1970-2199"),
    ("cron(0 0 * * ? 2200)", "2200 is out of 1970-2199"),
    ("cron(0 0 ? * 3#6 *)", "'3#6' is not a number"),
    ("cron(0 0 ? * 3#2,4 *)", "not a number"),
    ("cron(0 0 32W * ? *)", "32 is out of 1-31"),
    ("cron(0 0 L-2 * ? *)", "not a number"),
    ("cron(0 0 ? * FOO *)", "'FOO' is not a number"),
    ("cron(0/0 0 * * ? *)", "step must be positive"),
    ("cron(a 0 * * ? *)", "'a' is not a number"),
    ("cron(0 0 1,,2 * ? *)", "'' is not a number"),
    ("rate(1 minutes)", "singular for 1"),
    ("rate(5 minute)", "singular for 1"),
    ("rate(0 minutes)", "positive"),
    ("rate(1 second)", "not a rate"),
    ("rate(-1 minutes)", "not a rate"),
    ("rate(1 week)", "not a rate"),
    ("at(2026-02-30T00:00:00)", "day is out of range"),
    ("at(2026-01-01 00:00:00)", "not a rate"),
    ("at(2026-01-01T24:00:00)", "hour must be in"),
    ("every 5 minutes", "not a rate"),
    ("", "not a rate"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_expressions(text: str, reason: str) -> None:
    """AWS refuses these; Scheduler answers ``Invalid Schedule Expression <expression>``."""
    with pytest.raises(InvalidExpression) as caught:
        parse_expression(text)
    assert str(caught.value) == f"Invalid Schedule Expression {text}"
    assert reason in caught.value.reason
    assert caught.value.expression == text


@pytest.mark.parametrize("zone", ["Mars/Base", "", "../etc/passwd", "/etc/localtime", "EST5EDT0x"])
def test_invalid_time_zones(zone: str) -> None:
    """A time zone that is not an IANA name is refused with the expression."""
    with pytest.raises(InvalidExpression) as caught:
        parse_expression("rate(1 hour)", zone)
    assert str(caught.value) == f"Invalid Schedule Expression Timezone {zone}"


# ---------------------------------------------------------------------------- property test


def _brute_day(dom: str, dow: str, date: datetime.date) -> bool:
    """Whether a date matches the day fields, by definition, one date at a time."""
    length = calendar.monthrange(date.year, date.month)[1]
    weekday = (date.weekday() + 1) % 7 + 1  # 1 = Sunday

    def is_weekday(day: int) -> bool:
        return datetime.date(date.year, date.month, day).weekday() < 5

    if dow == "?":
        if dom == "L":
            return date.day == length
        if dom == "LW":
            return date.day == max(d for d in range(1, length + 1) if is_weekday(d))
        if dom.endswith("W"):
            target = int(dom[:-1])
            if target > length:
                return False
            weekdays = [d for d in range(1, length + 1) if is_weekday(d)]
            nearest = min(weekdays, key=lambda d: (abs(d - target), d > target))
            return date.day == nearest
        return date.day in _brute_values(dom, 1, 31)
    if "#" in dow:
        wanted, n = (int(part) for part in dow.split("#"))
        return weekday == wanted and (date.day - 1) // 7 + 1 == n
    if dow.endswith("L"):
        return weekday == int(dow[:-1]) and date.day + 7 > length
    return weekday in _brute_values(dow, 1, 7)


def _brute_values(field: str, low: int, high: int) -> set[int]:
    if field == "*":
        return set(range(low, high + 1))
    chosen: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        start, _, end = base.partition("-")
        first = low if start == "*" else int(start)
        last = int(end) if end else (high if step or start == "*" else first)
        value = first
        for index in range(10_000):
            if index % int(step or 1) == 0:
                chosen.add(value)
            if value == last:
                break
            value = low if value == high else value + 1
    return chosen


def _brute_next(fields: list[str], zone: str, after: datetime.datetime) -> datetime.datetime:
    """The first UTC minute after `after` whose local time matches, walking minute by minute
    (a repeated local time counts only on its first pass)."""
    minute_field, hour_field, dom, month_field, dow, _ = fields
    minutes, hours = _brute_values(minute_field, 0, 59), _brute_values(hour_field, 0, 23)
    months = _brute_values(month_field, 1, 12)
    days: dict[datetime.date, bool] = {}
    info = UTC if zone == "UTC" else zoneinfo.ZoneInfo(zone)
    current = after.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    for _ in range(400 * 24 * 60):
        local = current.astimezone(info)
        date = local.date()
        if date not in days:
            days[date] = local.month in months and _brute_day(dom, dow, date)
        if days[date] and local.fold == 0 and local.hour in hours and local.minute in minutes:
            return current
        current += datetime.timedelta(minutes=1)
    raise AssertionError("no match within 400 days")


def _random_field(rng: random.Random, low: int, high: int) -> str:
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    return rng.choice(
        [
            "*",
            f"{a}",
            f"{a}-{b}",
            f"{b}-{a}",
            f"{a}/{rng.randint(1, 9)}",
            f"*/{rng.randint(2, 9)}",
            f"{a},{b}",
            f"{a}-{b}/{rng.randint(1, 4)}",
        ]
    )


def _random_days(rng: random.Random) -> tuple[str, str]:
    choice = rng.random()
    if choice < 0.4:
        return rng.choice(
            ["*", _random_field(rng, 1, 31), "L", "LW", f"{rng.randint(1, 31)}W"]
        ), "?"
    if choice < 0.5:
        return "?", f"{rng.randint(1, 7)}#{rng.randint(1, 4)}"
    if choice < 0.6:
        return "?", f"{rng.randint(1, 7)}L"
    return "?", _random_field(rng, 1, 7)


@pytest.mark.parametrize("seed", range(200))
def test_next_after_matches_a_minute_walk(seed: int) -> None:
    """For random cron fields, next_after is strictly increasing and equals the first minute a
    brute-force walk finds (UTC, and New York and London across their DST changes)."""
    rng = random.Random(seed)
    dom, dow = _random_days(rng)
    fields = [_random_field(rng, 0, 59), _random_field(rng, 0, 23), dom, "*", dow, "*"]
    zone = rng.choice(["UTC", "America/New_York", "Europe/London"])
    expression = parse_expression(f"cron({' '.join(fields)})", zone)
    after = rng.choice([at("2026-03-07T00:00"), at("2026-10-24T00:00"), at("2028-02-27T00:00")])
    after += datetime.timedelta(seconds=rng.randint(0, 3 * 86400))
    for _ in range(4):
        found = expression.next_after(after)
        assert found is not None
        assert found > after
        assert found == _brute_next(fields, zone, after), (fields, zone, after)
        after = found
