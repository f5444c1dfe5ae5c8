"""CloudWatch's metric reads over ``lambdad.observe.metrics.Metrics``: GetMetricData,
GetMetricStatistics and ListMetrics, one small handler each, reached through
``lambdad.api.cloudwatch_front`` (CBOR or JSON 1.0); PutMetricData is in ``cloudwatch_put``.
Messages are CloudWatch's where known."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api import cloudwatch_put  # noqa: F401  (registers PutMetricData)
from lambdad.api.cloudwatch_front import Answer, operation
from lambdad.api.cloudwatch_params import (
    dimensions_of,
    invalid,
    metrics_of,
    page_offset,
    page_token,
    time_range,
    when,
)
from lambdad.api.lambda_api import scope_of
from lambdad.control.metric_requests import (
    GetMetricDataRequest,
    GetMetricStatisticsRequest,
    ListMetricsRequest,
    MetricStat,
)
from lambdad.observe.metric_queries import STATISTICS, BadQuery, Datapoint, check_query

#: GetMetricStatistics answers at most this many datapoints.
MAX_STATISTICS_POINTS = 1440
#: GetMetricData's default MaxDatapoints.
MAX_DATA_POINTS = 100_800
#: GetMetricData takes at most this many queries.
MAX_QUERIES = 500
LIST_PAGE = 500
RECENT = 3 * 3600
_QUERY_ID = re.compile(r"[a-z][A-Za-z0-9_]*")
_PERCENTILE = re.compile(r"p(\d{1,2}(\.\d{1,10})?|100)")
#: The other statistics CloudWatch knows (trimmed and windsorized means, percentile ranks,
#: trimmed counts and sums, the interquartile mean): valid, not answered by lambdad.
_OTHER_STATISTICS = re.compile(
    r"(tm|wm|tc|ts)(\d{1,2}(\.\d{1,10})?|100)|(tm|wm|tc|ts|pr)\([^()]{0,64}\)|iqm",
    re.IGNORECASE,
)


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
    start, end = time_range(req.start_time, req.end_time)
    asked = math.ceil((end - start) / req.period)
    if asked > MAX_STATISTICS_POINTS:
        raise errors.InvalidParameterCombinationException(
            f"You have requested up to {asked:,} datapoints, which exceeds the limit of"
            f" {MAX_STATISTICS_POINTS:,}. You may reduce the datapoints requested by increasing"
            " Period, or decreasing the time range."
        )
    dims = dimensions_of(req.dimensions, "Dimensions")
    points = await _query(
        request, req.namespace, req.metric_name, dims, start, end, req.period, statistics + extended
    )
    datapoints: list[dict[str, Any]] = []
    for point in points:
        if req.unit is not None and point.unit != req.unit:
            continue
        shape: dict[str, Any] = {"Timestamp": when(point.timestamp), "Unit": point.unit}
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
        return await metrics_of(request).query_async(
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
    if not _supported(stat.stat) and _OTHER_STATISTICS.fullmatch(stat.stat) is None:
        raise errors.ValidationException(
            f"The value {stat.stat[:64]} for parameter {where}.MetricStat.Stat is not a valid"
            " statistic."
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
    start, end = time_range(req.start_time, req.end_time)
    offset = page_offset(req.next_token)
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
        dims = dimensions_of(
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
                "Timestamps": [when(t) for t, _ in taken],
                "Values": [v for _, v in taken],
                "StatusCode": "PartialData" if partial else "Complete",
                "Messages": [],
            }
        )
    answer: Answer = {"MetricDataResults": shapes, "Messages": []}
    if more:
        answer["NextToken"] = page_token(offset + limit - room)
    return answer


# ---------------------------------------------------------------------------- ListMetrics


@operation("ListMetrics", ListMetricsRequest)
async def list_metrics(request: web.Request, req: ListMetricsRequest) -> Answer:
    offset = page_offset(req.next_token)
    since = time.time() - RECENT if req.recently_active is not None else None
    found = await metrics_of(request).list_metrics_async(
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
        answer["NextToken"] = page_token(offset + LIST_PAGE)
    return answer
