"""AWS schedule expressions (``rate(...)``, ``cron(...)``, ``at(...)``) and their occurrences.

Pure: no I/O, no clock. :func:`parse_expression` checks an expression and its IANA time zone
and returns a :class:`ScheduleExpression`, whose :meth:`~ScheduleExpression.next_after` answers
the first occurrence strictly after an instant, in UTC.

- ``rate(value unit)``: ``minute``/``minutes``, ``hour``/``hours``, ``day``/``days``; the
  singular only for 1 and the plural only above it, as AWS insists. Occurrences are counted
  from an ``anchor`` (the schedule's start or the rule's creation), a day being 24 hours of
  UTC whatever the time zone (as EventBridge Scheduler counts them).
- ``cron(minutes hours day-of-month month day-of-week year)``: AWS's six fields, evaluated
  here (``docs/schedules.md`` says why no library was used). Lists ``,``, ranges ``-`` (which
  may wrap, ``FRI-MON``, as in Quartz), steps ``/``, ``*``; ``?`` in exactly one of
  day-of-month and day-of-week; ``L``, ``LW`` and ``15W`` in day-of-month; ``L`` (Saturday),
  ``5L`` (last Thursday) and ``3#2`` (second Tuesday) in day-of-week, whose days are numbered
  1-7 = SUN-SAT; years 1970-2199.
- ``at(yyyy-mm-ddThh:mm:ss)``: one occurrence.

Cron and at() are read in the expression's time zone. Daylight-saving changes are applied as
EventBridge Scheduler applies them: a local time that does not exist (02:30 on a
spring-forward day in New York) is skipped; a local time that happens twice (01:30 on a
fall-back day) fires once, at its first instant. An ``at()`` inside a gap fires at the instant
the zone database gives it (02:30 EST, which is 03:30 EDT).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import functools
import re
import zoneinfo
from collections.abc import Iterator

__all__ = ["InvalidExpression", "ScheduleExpression", "parse_expression"]

UTC = datetime.UTC
_MINUTE = datetime.timedelta(minutes=1)
_FIRST_YEAR, _LAST_YEAR = 1970, 2199
_MONTHS = {name.upper(): n for n, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_RATE = re.compile(r"rate\((\d+) (minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\(([^()]*)\)")
_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class InvalidExpression(ValueError):
    """An expression (or time zone) AWS would refuse.

    ``str(exc)`` is EventBridge Scheduler's message (``Invalid Schedule Expression <text>``);
    ``reason`` says what is wrong, for logs and for callers that word it their own way
    (EventBridge rules answer ``Parameter ScheduleExpression is not valid.`` whatever it is).
    """

    def __init__(self, expression: str, reason: str = "", message: str | None = None) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(message or f"Invalid Schedule Expression {expression}")


# ---------------------------------------------------------------------------- cron fields


@dataclasses.dataclass(frozen=True, slots=True)
class _Days:
    """Which days of a month a cron expression's day fields choose (one of them is ``?``)."""

    #: Plain day-of-month numbers (1-31), or None when day-of-month is ``?`` or special.
    month_days: frozenset[int] | None = None
    last_day: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: int | None = None  # 15W
    #: Plain day-of-week numbers (1-7 = SUN-SAT).
    week_days: frozenset[int] | None = None
    last_of_week_day: int | None = None  # 5L
    nth: tuple[int, int] | None = None  # 3#2: (weekday, n)

    def of(self, year: int, month: int) -> tuple[int, ...]:
        return _days_of(self, year, month)


def _aws_weekday(date: datetime.date) -> int:
    """1 = Sunday ... 7 = Saturday, as AWS numbers them."""
    return (date.weekday() + 1) % 7 + 1


@functools.lru_cache(maxsize=4096)
def _days_of(days: _Days, year: int, month: int) -> tuple[int, ...]:
    length = calendar.monthrange(year, month)[1]
    first = _aws_weekday(datetime.date(year, month, 1))

    def weekday(day: int) -> int:
        return (first - 1 + day - 1) % 7 + 1

    chosen: set[int] = set()
    if days.month_days is not None:
        chosen.update(d for d in days.month_days if d <= length)
    if days.last_day:
        chosen.add(length)
    if days.last_weekday:
        day = length
        while weekday(day) in (1, 7):
            day -= 1
        chosen.add(day)
    if days.nearest_weekday is not None and days.nearest_weekday <= length:
        chosen.add(_nearest_weekday(days.nearest_weekday, length, weekday(days.nearest_weekday)))
    if days.week_days is not None:
        chosen.update(d for d in range(1, length + 1) if weekday(d) in days.week_days)
    if days.last_of_week_day is not None:
        day = length
        while weekday(day) != days.last_of_week_day:
            day -= 1
        chosen.add(day)
    if days.nth is not None:
        wanted, n = days.nth
        day = 1 + (wanted - first) % 7 + 7 * (n - 1)
        if day <= length:
            chosen.add(day)
    return tuple(sorted(chosen))


def _nearest_weekday(day: int, length: int, weekday: int) -> int:
    """The weekday (Monday-Friday) nearest ``day``, never leaving the month (Quartz's W)."""
    if weekday == 7:  # Saturday: the Friday before, or the Monday after on the 1st
        return day + 2 if day == 1 else day - 1
    if weekday == 1:  # Sunday: the Monday after, or the Friday before on the last day
        return day - 2 if day == length else day + 1
    return day


def _number(token: str, names: dict[str, int] | None) -> int:
    if names is not None and token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise ValueError(f"{token!r} is not a number")
    return int(token)


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """The values a plain field (lists, ranges, steps, ``*``) chooses within low..high."""
    chosen: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            step = _number(step_text, None)
            if step < 1:
                raise ValueError("step must be positive")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(base, names)
            end = high if slash else start
        for value in (start, end):
            if not low <= value <= high:
                raise ValueError(f"{value} is out of {low}-{high}")
        span = end - start if end >= start else end - start + (high - low + 1)
        for offset in range(0, span + 1, step):
            chosen.add(low + (start - low + offset) % (high - low + 1))
    return frozenset(chosen)


_NTH = re.compile(r"(\w+)#([1-5])")
_LAST_OF = re.compile(r"(\w+)L")
_NEAREST = re.compile(r"(\d{1,2})W")


def _day_fields(day_of_month: str, day_of_week: str) -> _Days:
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ValueError("exactly one of day-of-month and day-of-week must be ?")
    if day_of_week == "?":
        if day_of_month == "L":
            return _Days(last_day=True)
        if day_of_month == "LW":
            return _Days(last_weekday=True)
        nearest = _NEAREST.fullmatch(day_of_month)
        if nearest is not None:
            day = int(nearest.group(1))
            if not 1 <= day <= 31:
                raise ValueError(f"{day} is out of 1-31")
            return _Days(nearest_weekday=day)
        return _Days(month_days=_values(day_of_month, 1, 31))
    if day_of_week == "L":
        return _Days(week_days=frozenset({7}))
    nth = _NTH.fullmatch(day_of_week)
    if nth is not None:
        return _Days(nth=(_one_day(nth.group(1)), int(nth.group(2))))
    last = _LAST_OF.fullmatch(day_of_week)
    if last is not None:
        return _Days(last_of_week_day=_one_day(last.group(1)))
    return _Days(week_days=_values(day_of_week, 1, 7, _DAYS))


def _one_day(token: str) -> int:
    day = _number(token, _DAYS)
    if not 1 <= day <= 7:
        raise ValueError(f"{day} is out of 1-7")
    return day


@dataclasses.dataclass(frozen=True, slots=True)
class _Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: _Days
    months: tuple[int, ...]
    years: tuple[int, ...]

    @classmethod
    def parse(cls, fields: str) -> _Cron:
        parts = fields.split(" ")
        if len(parts) != 6 or not all(parts):
            raise ValueError("a cron expression has six fields separated by one space")
        minutes, hours, day_of_month, month, day_of_week, year = parts
        return cls(
            minutes=tuple(sorted(_values(minutes, 0, 59))),
            hours=tuple(sorted(_values(hours, 0, 23))),
            days=_day_fields(day_of_month, day_of_week),
            months=tuple(sorted(_values(month, 1, 12, _MONTHS))),
            years=tuple(sorted(_values(year, _FIRST_YEAR, _LAST_YEAR))),
        )

    def local_times(self, start: datetime.datetime) -> Iterator[datetime.datetime]:
        """Every matching naive local minute at or after ``start`` (naive, whole minute)."""
        for year in self.years:
            if year < start.year:
                continue
            same_year = year == start.year
            for month in self.months:
                if same_year and month < start.month:
                    continue
                same_month = same_year and month == start.month
                for day in self.days.of(year, month):
                    if same_month and day < start.day:
                        continue
                    same_day = same_month and day == start.day
                    for hour in self.hours:
                        if same_day and hour < start.hour:
                            continue
                        same_hour = same_day and hour == start.hour
                        for minute in self.minutes:
                            if same_hour and minute < start.minute:
                                continue
                            yield datetime.datetime(year, month, day, hour, minute)


# ---------------------------------------------------------------------------- expressions


@dataclasses.dataclass(frozen=True)
class ScheduleExpression:
    """A checked schedule expression and the IANA time zone it is read in."""

    text: str
    timezone: str = "UTC"

    def is_one_time(self) -> bool:
        """Whether this is an ``at(...)`` expression (one occurrence)."""
        return self.text.startswith("at(")

    def next_after(
        self, after: datetime.datetime, anchor: datetime.datetime | None = None
    ) -> datetime.datetime | None:
        """The first occurrence strictly after ``after`` (aware), in UTC; None when there is
        none (a past ``at()``, a cron whose years are over).

        ``anchor`` (aware) is where a ``rate()``'s occurrences are counted from: the
        schedule's start date or the rule's creation; the anchor itself is the first
        occurrence. Without one, rates are counted from the Unix epoch (``rate(1 hour)`` on
        the hour of UTC). Cron and at() ignore it.
        """
        if after.tzinfo is None:
            raise ValueError("after must be an aware datetime")
        compiled = _compiled(self.text)
        if isinstance(compiled, int):
            return _next_rate(compiled, after, anchor)
        zone = _zone(self.timezone)
        if isinstance(compiled, datetime.datetime):
            instant = compiled.replace(tzinfo=zone).astimezone(UTC)
            return instant if instant > after else None
        return _next_cron(compiled, zone, after)


def parse_expression(text: str, timezone: str = "UTC") -> ScheduleExpression:
    """``text`` checked as AWS checks a schedule expression, read in ``timezone``.

    Raises InvalidExpression (its ``reason`` says what is wrong).
    """
    try:
        _zone(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidExpression(
            text,
            f"unknown time zone {timezone!r}",
            f"Invalid Schedule Expression Timezone {timezone}",
        ) from None
    try:
        _compiled(text)
    except ValueError as exc:
        raise InvalidExpression(text, str(exc)) from None
    return ScheduleExpression(text, timezone)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> datetime.tzinfo:
    if name == "UTC":
        return UTC
    if not name or name.startswith("/") or ".." in name:
        raise ValueError(f"unknown time zone {name!r}")
    return zoneinfo.ZoneInfo(name)


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> int | datetime.datetime | _Cron:
    """A rate's period in seconds, an at()'s naive local time, or a cron's fields.

    Raises ValueError saying what is wrong."""
    rate = _RATE.fullmatch(text)
    if rate is not None:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ValueError("a rate's value must be a positive whole number")
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError("the unit must be singular for 1 and plural above it")
        return value * _UNIT_SECONDS[unit.rstrip("s")]
    cron = _CRON.fullmatch(text)
    if cron is not None:
        return _Cron.parse(cron.group(1))
    at = _AT.fullmatch(text)
    if at is not None:
        year, month, day, hour, minute, second = (int(part) for part in at.groups())
        if not _FIRST_YEAR <= year <= _LAST_YEAR:
            raise ValueError(f"{year} is out of {_FIRST_YEAR}-{_LAST_YEAR}")
        return datetime.datetime(year, month, day, hour, minute, second)
    raise ValueError("not a rate(...), cron(...) or at(...) expression")


def _next_rate(
    period: int, after: datetime.datetime, anchor: datetime.datetime | None
) -> datetime.datetime:
    origin = (anchor or datetime.datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    if after < origin:
        return origin
    elapsed = (after - origin) // datetime.timedelta(seconds=period)
    return origin + datetime.timedelta(seconds=period * (elapsed + 1))


def _next_cron(
    cron: _Cron, zone: datetime.tzinfo, after: datetime.datetime
) -> datetime.datetime | None:
    # Local times map to instants in order (a repeated hour's first pass is taken), so the
    # first candidate at or after `after`'s wall clock that lands after it is the answer; a
    # candidate in a repeated hour already passed, or in a gap, is passed over.
    local = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    for candidate in cron.local_times(local):
        instant = _instant(candidate, zone)
        if instant is not None and instant > after:
            return instant
    return None


def _instant(local: datetime.datetime, zone: datetime.tzinfo) -> datetime.datetime | None:
    """The UTC instant of a local wall time: its first one if it happens twice, None if the
    clocks skip it."""
    if zone is UTC:
        return local.replace(tzinfo=UTC)
    aware = local.replace(tzinfo=zone)
    instant = aware.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local:
        return None  # in a spring-forward gap
    return instant
