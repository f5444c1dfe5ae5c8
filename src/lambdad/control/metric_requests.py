"""The typed requests of CloudWatch's metrics API (botocore's ``cloudwatch`` model) that
lambdad serves; decoded and checked against the model by ``lambdad.api``. Field names are
snake_case, wire names PascalCase; ``None`` means "not given". Timestamps arrive as epoch
seconds (``float``; a JSON-protocol client may send an ISO 8601 string)."""

from __future__ import annotations

from lambdad.control.requests import Wire


class Dimension(Wire, frozen=True, kw_only=True):
    name: str
    value: str


class DimensionFilter(Wire, frozen=True, kw_only=True):
    name: str
    value: str | None = None


class Metric(Wire, frozen=True, kw_only=True):
    namespace: str | None = None
    metric_name: str | None = None
    dimensions: list[Dimension] | None = None


class MetricStat(Wire, frozen=True, kw_only=True):
    metric: Metric
    period: int
    stat: str
    unit: str | None = None


class MetricDataQuery(Wire, frozen=True, kw_only=True):
    id: str
    metric_stat: MetricStat | None = None
    expression: str | None = None
    label: str | None = None
    return_data: bool | None = None
    period: int | None = None
    account_id: str | None = None


class GetMetricDataRequest(Wire, frozen=True, kw_only=True):
    metric_data_queries: list[MetricDataQuery]
    start_time: float | str
    end_time: float | str
    next_token: str | None = None
    scan_by: str | None = None
    max_datapoints: int | None = None


class GetMetricStatisticsRequest(Wire, frozen=True, kw_only=True):
    namespace: str
    metric_name: str
    dimensions: list[Dimension] | None = None
    start_time: float | str
    end_time: float | str
    period: int
    statistics: list[str] | None = None
    extended_statistics: list[str] | None = None
    unit: str | None = None


class ListMetricsRequest(Wire, frozen=True, kw_only=True):
    namespace: str | None = None
    metric_name: str | None = None
    dimensions: list[DimensionFilter] | None = None
    next_token: str | None = None
    recently_active: str | None = None
    include_linked_accounts: bool | None = None
    owning_account: str | None = None


class StatisticSet(Wire, frozen=True, kw_only=True):
    sample_count: float
    sum: float
    minimum: float
    maximum: float


class MetricDatum(Wire, frozen=True, kw_only=True):
    metric_name: str
    dimensions: list[Dimension] | None = None
    timestamp: float | str | None = None
    value: float | None = None
    statistic_values: StatisticSet | None = None
    values: list[float] | None = None
    counts: list[float] | None = None
    unit: str | None = None
    storage_resolution: int | None = None


class EntityMetricData(Wire, frozen=True, kw_only=True):
    """Metrics with an entity: the entity is accepted and not kept."""

    entity: dict[str, object] | None = None
    metric_data: list[MetricDatum] | None = None


class PutMetricDataRequest(Wire, frozen=True, kw_only=True):
    namespace: str
    metric_data: list[MetricDatum] | None = None
    entity_metric_data: list[EntityMetricData] | None = None
    strict_entity_validation: bool | None = None
