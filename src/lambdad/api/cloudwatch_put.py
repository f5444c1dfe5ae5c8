"""CloudWatch's PutMetricData over ``Metrics.record_custom`` (the store EMF metrics go to),
reached through ``lambdad.api.cloudwatch_front``."""

from __future__ import annotations

import math
import time

from aiohttp import web

from lambdad import errors
from lambdad.api.cloudwatch_front import Answer, operation
from lambdad.api.cloudwatch_params import dimensions_of, invalid, metrics_of, seconds
from lambdad.api.lambda_api import scope_of
from lambdad.control.metric_requests import MetricDatum, PutMetricDataRequest
from lambdad.observe import emf

#: How far back and ahead PutMetricData takes a timestamp (CloudWatch's two weeks, two hours).
PAST, FUTURE = 14 * 86400, 2 * 3600
#: At most this many values in one datum's Values, and data in one request.
MAX_VALUES, MAX_DATA = 150, 1000


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
    if len(values) > MAX_VALUES:
        raise invalid(
            f"The collection {where}.Values must not have more than {MAX_VALUES} members."
        )
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
    if len(data) > MAX_DATA:
        raise invalid(f"The collection MetricData must not have more than {MAX_DATA} members.")
    now = time.time()
    points: list[emf.Point] = []
    for index, datum in enumerate(data, 1):
        where = f"MetricData.member.{index}"
        at = now if datum.timestamp is None else seconds(datum.timestamp, f"{where}.Timestamp")
        if not now - PAST <= at <= now + FUTURE:
            raise invalid(
                f"The parameter {where}.Timestamp must specify a time no more than two weeks in"
                " the past and no more than two hours in the future."
            )
        dims = dimensions_of(datum.dimensions, f"{where}.Dimensions")
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
    metrics = metrics_of(request)
    for point in points:  # every datum checked before any is kept
        metrics.record_custom(scope.account_id, scope.region, point)
    return {}
