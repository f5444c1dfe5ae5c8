"""CloudWatch's metrics API over ``lambdad.observe.metrics.Metrics``: GetMetricData,
GetMetricStatistics, ListMetrics and PutMetricData, one small handler each, reached through
``lambdad.api.cloudwatch_front`` (CBOR or JSON 1.0). Messages are CloudWatch's where known."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.cloudwatch_front import Answer, operation
from lambdad.api.lambda_api import scope_of
from lambdad.api.prometheus import METRICS
from lambdad.control.metric_requests import (
    Dimension,
    GetMetricDataRequest,
    GetMetricStatisticsRequest,
    ListMetricsRequest,
    MetricDatum,
    MetricStat,
    PutMetricDataRequest,
)
from lambdad.observe import emf
from lambdad.observe.metric_queries import STATISTICS, BadQuery, Datapoint, check_query
from lambdad.observe.metrics import Metrics

#: GetMetricStatistics answers at most this many datapoints.
MAX_STATISTICS_POINTS = 1440
#: GetMetricData's default MaxDatapoints.
MAX_DATA_POINTS = 100_800
#: GetMetricData takes at most this many queries.
MAX_QUERIES = 500
LIST_PAGE = 500
#: How far back and ahead PutMetricData takes a timestamp (CloudWatch's two weeks, two hours).
PAST, FUTURE = 14 * 86400, 2 * 3600
RECENT = 3 * 3600
#: The timestamps a request may name: years 1 to 9999 (what an ISO 8601 date can say).
EARLIEST, LATEST = -62_135_596_800.0, 253_402_300_799.0
_QUERY_ID = re.compile(r"[a-z][A-Za-z0-9_]*")
_PERCENTILE = re.compile(r"p(\d{1,2}(\.\d{1,10})?|100)")


def _metrics(request: web.Request) -> Metrics:
    return request.app[METRICS]


def invalid(message: str) -> errors.InvalidParameterValueException:
    return errors.InvalidParameterValueException(message)


def _seconds(value: float | str, member: str) -> float:
    """A request timestamp as epoch seconds (a JSON client may send ISO 8601)."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.UTC)
            value = parsed.timestamp()
        except (ValueError, OverflowError):
            value = math.nan
    if not EARLIEST <= value <= LATEST:  # NaN too
        raise invalid(f"The parameter {member} must be a valid ISO 8601 date.")
    return value


def _range(start: float | str, end: float | str) -> tuple[float, float]:
    first, last = _seconds(start, "StartTime"), _seconds(end, "EndTime")
    if last <= first:
        raise invalid("The parameter StartTime must be less than the parameter EndTime.")
    return first, last


def _when(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _dimensions(dimensions: Sequence[Dimension] | None, member: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in dimensions or ():
        if item.name in found:
            raise invalid(f"The collection {member} must not have duplicate dimension names.")
        found[item.name] = item.value
    return found


def _page(token: str | None) -> int:
    """The offset a NextToken of ours stands for (0 without one)."""
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, binascii.Error, KeyError, TypeError, UnicodeError):
        offset = None
    if type(offset) is not int or offset < 0:
        raise errors.InvalidNextToken("The service couldn't process the NextToken.")
    return offset


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _supported(stat: str) -> bool:
    return stat in STATISTICS or _PERCENTILE.fullmatch(stat) is not None


# ---------------------------------------------------------------------------- GetMetricStatistics


@operation("GetMetricStatistics", GetMetricStatisticsRequest)
async def get_metric_statistics(request: web.Request, req: GetMetricStatisticsRequest) -> Answer:
    statistics, extended = list(req.statistics or ()), list(req.extended_statistics or ())
    if not statistics and not extended:
        raise errors.MissingRequiredParameterException(
            "At least one of the parameters Statistics and ExtendedStatistics must be specified."
        )
    if statistics and extended:
        raise errors.InvalidParameterCombinationException(
            "The parameters Statistics and ExtendedStatistics are mutually exclusive and you"
            " have specified both."
        )
    for name in extended:
        if _PERCENTILE.fullmatch(name) is None:
            raise invalid(f"The value {name} for parameter ExtendedStatistics is not valid.")
    start, end = _range(req.start_time, req.end_time)
    asked = math.ceil((end - start) / req.period)
    if asked > MAX_STATISTICS_POINTS:
        raise errors.InvalidParameterCombinationException(
            f"You have requested up to {asked:,} datapoints, which exceeds the limit of"
            f" {MAX_STATISTICS_POINTS:,}. You may reduce the datapoints requested by increasing"
            " Period, or decreasing the time range."
        )
    dims = _dimensions(req.dimensions, "Dimensions")
    points = await _query(
        request, req.namespace, req.metric_name, dims, start, end, req.period, statistics + extended
    )
    datapoints: list[dict[str, Any]] = []
    for point in points:
        if req.unit is not None and point.unit != req.unit:
            continue
        shape: dict[str, Any] = {"Timestamp": _when(point.timestamp), "Unit": point.unit}
        for name in statistics:
            shape[name] = point.values[name]
        if extended:
            shape["ExtendedStatistics"] = {name: point.values[name] for name in extended}
        datapoints.append(shape)
    return {"Label": req.metric_name, "Datapoints": datapoints}


async def _query(
    request: web.Request,
    namespace: str,
    metric: str,
    dims: dict[str, str],
    start: float,
    end: float,
    period: int,
    statistics: list[str],
) -> list[Datapoint]:
    try:
        return await _metrics(request).query_async(
            scope_of(request), namespace, metric, dims, start, end, period, statistics
        )
    except BadQuery as exc:
        raise invalid(str(exc)) from None


# ---------------------------------------------------------------------------- GetMetricData


def _check_stat(stat: MetricStat, where: str) -> tuple[str, str]:
    metric = stat.metric
    if metric.namespace is None:
        raise errors.MissingRequiredParameterException(
            f"The parameter {where}.MetricStat.Metric.Namespace is required."
        )
    if metric.metric_name is None:
        raise errors.MissingRequiredParameterException(
            f"The parameter {where}.MetricStat.Metric.MetricName is required."
        )
    if not _supported(stat.stat):
        raise invalid(
            f"The statistic {stat.stat[:64]} ({where}.MetricStat.Stat) is not supported: lambdad"
            " answers SampleCount, Sum, Minimum, Maximum, Average and percentiles (p99, p99.9)."
        )
    try:
        check_query(0, 1, stat.period, [stat.stat])
    except BadQuery as exc:
        message = str(exc).replace("parameter Period", f"parameter {where}.MetricStat.Period")
        raise invalid(message) from None
    return metric.namespace, metric.metric_name


@operation("GetMetricData", GetMetricDataRequest)
async def get_metric_data(request: web.Request, req: GetMetricDataRequest) -> Answer:
    start, end = _range(req.start_time, req.end_time)
    offset = _page(req.next_token)
    limit = MAX_DATA_POINTS if req.max_datapoints is None else req.max_datapoints
    if limit < 1:
        raise invalid("The parameter MaxDatapoints must be greater than 0.")
    if len(req.metric_data_queries) > MAX_QUERIES:
        raise invalid(
            f"The collection MetricDataQueries must not have more than {MAX_QUERIES} members."
        )
    seen: set[str] = set()
    asked: list[tuple[str, str, MetricStat, str, str, dict[str, str]]] = []
    for index, query in enumerate(req.metric_data_queries, 1):
        where = f"MetricDataQueries.member.{index}"
        if _QUERY_ID.fullmatch(query.id) is None:
            raise invalid(
                f"The value {query.id[:255]} for parameter {where}.Id is not valid: it must start"
                " with a lowercase letter and hold only letters, digits and underscores."
            )
        if query.id in seen:
            raise invalid(f"The value {query.id} for parameter {where}.Id is a duplicate.")
        seen.add(query.id)
        if query.expression is not None and query.metric_stat is not None:
            raise errors.InvalidParameterCombinationException(
                f"The parameters {where}.Expression and {where}.MetricStat are mutually exclusive"
                " and you have specified both."
            )
        if query.expression is not None:
            raise invalid(
                f"Metric math and Metrics Insights expressions are not supported ({where}"
                ".Expression): lambdad answers metric queries given as MetricStat only."
            )
        if query.metric_stat is None:
            raise errors.MissingRequiredParameterException(
                f"The parameter {where}.MetricStat is required (or Expression, which lambdad does"
                " not support)."
            )
        namespace, name = _check_stat(query.metric_stat, where)
        dims = _dimensions(
            query.metric_stat.metric.dimensions, f"{where}.MetricStat.Metric.Dimensions"
        )
        if query.return_data is False:
            continue
        asked.append((query.id, query.label or name, query.metric_stat, namespace, name, dims))
    descending = req.scan_by != "TimestampAscending"
    results: list[tuple[str, str, list[tuple[int, float]]]] = []
    for query_id, label, stat, namespace, name, dims in asked:
        points = await _query(request, namespace, name, dims, start, end, stat.period, [stat.stat])
        series = [
            (p.timestamp, p.values[stat.stat])
            for p in points
            if stat.unit is None or p.unit == stat.unit
        ]
        if descending:
            series.reverse()
        results.append((query_id, label, series))
    return _data_page(results, offset, limit)


def _data_page(
    results: list[tuple[str, str, list[tuple[int, float]]]], offset: int, limit: int
) -> Answer:
    """One page of GetMetricData's answer: at most ``limit`` datapoints after the first
    ``offset`` of all results in order; a result cut short is ``PartialData``."""
    skip, room = offset, limit
    shapes: list[dict[str, Any]] = []
    more = False
    for query_id, label, series in results:
        first = min(skip, len(series))
        skip -= first
        taken = series[first : first + room]
        room -= len(taken)
        partial = first + len(taken) < len(series)
        more = more or partial
        shapes.append(
            {
                "Id": query_id,
                "Label": label,
                "Timestamps": [_when(t) for t, _ in taken],
                "Values": [v for _, v in taken],
                "StatusCode": "PartialData" if partial else "Complete",
                "Messages": [],
            }
        )
    answer: Answer = {"MetricDataResults": shapes, "Messages": []}
    if more:
        answer["NextToken"] = _token(offset + limit - room)
    return answer


# ---------------------------------------------------------------------------- ListMetrics


@operation("ListMetrics", ListMetricsRequest)
async def list_metrics(request: web.Request, req: ListMetricsRequest) -> Answer:
    offset = _page(req.next_token)
    since = time.time() - RECENT if req.recently_active is not None else None
    found = await _metrics(request).list_metrics_async(
        scope_of(request),
        req.namespace,
        req.metric_name,
        [(d.name, d.value) for d in req.dimensions or ()],
        since=since,
    )
    page = found[offset : offset + LIST_PAGE]
    answer: Answer = {
        "Metrics": [
            {
                "Namespace": m.namespace,
                "MetricName": m.name,
                "Dimensions": [{"Name": n, "Value": v} for n, v in m.dimensions],
            }
            for m in page
        ]
    }
    if offset + LIST_PAGE < len(found):
        answer["NextToken"] = _token(offset + LIST_PAGE)
    return answer


# ---------------------------------------------------------------------------- PutMetricData


def _samples(datum: MetricDatum, where: str) -> tuple[tuple[float, float], ...]:
    """The datum's values as (value, times seen) pairs."""
    given = [
        name
        for name, value in (
            ("Value", datum.value),
            ("StatisticValues", datum.statistic_values),
            ("Values", datum.values),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise errors.InvalidParameterCombinationException(
            f"The parameters {where}.{given[0]} and {where}.{given[1]} are mutually exclusive"
            " and you have specified both."
        )
    if not given:
        raise errors.MissingRequiredParameterException(f"The parameter {where}.Value is required.")
    if datum.value is not None:
        _finite(datum.value, f"{where}.Value")
        return ((datum.value, 1.0),)
    if datum.statistic_values is not None:
        stats = datum.statistic_values
        for name, value in (
            ("SampleCount", stats.sample_count),
            ("Sum", stats.sum),
            ("Minimum", stats.minimum),
            ("Maximum", stats.maximum),
        ):
            _finite(value, f"{where}.StatisticValues.{name}")
        count = stats.sample_count
        if count <= 0:
            raise invalid(f"The parameter {where}.StatisticValues.SampleCount must be positive.")
        if stats.minimum > stats.maximum:
            raise invalid(
                f"The parameter {where}.StatisticValues.Minimum must not be greater than Maximum."
            )
        if count < 2:
            return ((stats.sum / count, count),)
        # Count, sum, minimum and maximum kept exactly; the rest of the samples at their mean.
        pairs = [(stats.minimum, 1.0), (stats.maximum, 1.0)]
        if count > 2:
            pairs.append(((stats.sum - stats.minimum - stats.maximum) / (count - 2), count - 2))
        return tuple(pairs)
    values = datum.values or []
    counts = datum.counts if datum.counts is not None else [1.0] * len(values)
    if len(counts) != len(values):
        raise invalid(
            f"The parameters {where}.Values and {where}.Counts must be arrays of the same size."
        )
    if len(values) > 150:
        raise invalid(f"The collection {where}.Values must not have more than 150 members.")
    for number, value in enumerate(values, 1):
        _finite(value, f"{where}.Values.member.{number}")
    for number, times in enumerate(counts, 1):
        _finite(times, f"{where}.Counts.member.{number}")
        if times < 0:
            raise invalid(f"The value {times} for parameter {where}.Counts is not valid.")
    return tuple((v, c) for v, c in zip(values, counts, strict=True) if c > 0)


def _finite(value: float, member: str) -> None:
    if not math.isfinite(value) or abs(value) > 2.0**360:
        raise invalid(f"The value {value} for parameter {member} is invalid.")


@operation("PutMetricData", PutMetricDataRequest)
async def put_metric_data(request: web.Request, req: PutMetricDataRequest) -> Answer:
    if req.namespace.startswith("AWS/"):
        raise invalid(f"The value {req.namespace} for parameter Namespace is invalid.")
    data = list(req.metric_data or ())
    for entity in req.entity_metric_data or ():
        data.extend(entity.metric_data or ())
    if not data:
        raise errors.MissingRequiredParameterException("The parameter MetricData is required.")
    if len(data) > 1000:
        raise invalid("The collection MetricData must not have more than 1000 members.")
    now = time.time()
    points: list[emf.Point] = []
    for index, datum in enumerate(data, 1):
        where = f"MetricData.member.{index}"
        at = now if datum.timestamp is None else _seconds(datum.timestamp, f"{where}.Timestamp")
        if not now - PAST <= at <= now + FUTURE:
            raise invalid(
                f"The parameter {where}.Timestamp must specify a time no more than two weeks in"
                " the past and no more than two hours in the future."
            )
        dims = _dimensions(datum.dimensions, f"{where}.Dimensions")
        samples = _samples(datum, where)
        points.append(
            emf.Point(
                namespace=req.namespace,
                name=datum.metric_name,
                dimensions=tuple(sorted(dims.items())),
                unit=datum.unit or "None",
                timestamp_ms=int(at * 1000),
                values=samples,
            )
        )
    scope = scope_of(request)
    metrics = _metrics(request)
    for point in points:  # every datum checked before any is kept
        metrics.record_custom(scope.account_id, scope.region, point)
    return {}
