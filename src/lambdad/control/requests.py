"""The typed requests of the Lambda API that the control plane takes.

``lambdad.api`` decodes every request against botocore's ``lambda`` model (types, required
members, lengths, ranges, patterns, enums) and converts it into one of these Structs, so the
control plane never sees a raw dict. Field names are snake_case; each maps to its wire member
(PascalCase, or the explicit ``name=``). ``None`` means the member was not given (a JSON
``null`` is "not given", as on AWS). The service's own rules (reserved environment keys,
memory and timeout limits, deprecated runtimes, ...) are checked by the control plane.
"""

from __future__ import annotations

import msgspec


class Wire(msgspec.Struct, rename="pascal", frozen=True, kw_only=True):
    """Base of every request value: PascalCase wire names, immutable, keyword-only."""


# ---------------------------------------------------------------------------- nested shapes


class FunctionCode(Wire, frozen=True, kw_only=True):
    zip_file: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    s3_object_version: str | None = None
    image_uri: str | None = None


class Environment(Wire, frozen=True, kw_only=True):
    variables: dict[str, str] | None = None


class DeadLetterConfig(Wire, frozen=True, kw_only=True):
    target_arn: str | None = None


class TracingConfig(Wire, frozen=True, kw_only=True):
    mode: str | None = None


class EphemeralStorage(Wire, frozen=True, kw_only=True):
    size: int


class SnapStart(Wire, frozen=True, kw_only=True):
    apply_on: str | None = None


class LoggingConfig(Wire, frozen=True, kw_only=True):
    log_format: str | None = None
    application_log_level: str | None = None
    system_log_level: str | None = None
    log_group: str | None = None


class TenancyConfig(Wire, frozen=True, kw_only=True):
    tenant_isolation_mode: str


class DurableConfig(Wire, frozen=True, kw_only=True):
    execution_timeout: int | None = None
    retention_period_in_days: int | None = None
    kms_key_arn: str | None = msgspec.field(default=None, name="KMSKeyArn")


class AliasRoutingConfiguration(Wire, frozen=True, kw_only=True):
    additional_version_weights: dict[str, float] | None = None


class Destination(Wire, frozen=True, kw_only=True):
    destination: str | None = None


class DestinationConfig(Wire, frozen=True, kw_only=True):
    on_success: Destination | None = None
    on_failure: Destination | None = None


class LayerVersionContentInput(Wire, frozen=True, kw_only=True):
    zip_file: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    s3_object_version: str | None = None


# ---------------------------------------------------------------------------- functions


class FunctionSettings(Wire, frozen=True, kw_only=True):
    """The configuration members CreateFunction and UpdateFunctionConfiguration share."""

    role: str | None = None
    handler: str | None = None
    description: str | None = None
    timeout: int | None = None
    memory_size: int | None = None
    environment: Environment | None = None
    runtime: str | None = None
    dead_letter_config: DeadLetterConfig | None = None
    kms_key_arn: str | None = msgspec.field(default=None, name="KMSKeyArn")
    tracing_config: TracingConfig | None = None
    layers: list[str] | None = None
    ephemeral_storage: EphemeralStorage | None = None
    snap_start: SnapStart | None = None
    logging_config: LoggingConfig | None = None
    durable_config: DurableConfig | None = None


class CreateFunctionRequest(FunctionSettings, frozen=True, kw_only=True):
    function_name: str
    code: FunctionCode
    publish: bool = False
    publish_to: str | None = None
    package_type: str | None = None
    tags: dict[str, str] | None = None
    architectures: list[str] | None = None
    #: Set at create only: the model has no TenancyConfig in UpdateFunctionConfiguration.
    tenancy_config: TenancyConfig | None = None


class UpdateFunctionConfigurationRequest(FunctionSettings, frozen=True, kw_only=True):
    function_name: str
    revision_id: str | None = None


class UpdateFunctionCodeRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    zip_file: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    image_uri: str | None = None
    architectures: list[str] | None = None
    publish: bool = False
    publish_to: str | None = None
    dry_run: bool = False
    revision_id: str | None = None


class FunctionRequest(Wire, frozen=True, kw_only=True):
    """A call that names a function and nothing else (GetFunctionConcurrency, ...)."""

    function_name: str


class QualifiedFunctionRequest(Wire, frozen=True, kw_only=True):
    """GetFunction, GetFunctionConfiguration, DeleteFunction: a function and a qualifier."""

    function_name: str
    qualifier: str | None = None


class ListFunctionsRequest(Wire, frozen=True, kw_only=True):
    master_region: str | None = None
    function_version: str | None = None
    marker: str | None = None
    max_items: int | None = None


class ListByFunctionRequest(Wire, frozen=True, kw_only=True):
    """ListVersionsByFunction, ListFunctionEventInvokeConfigs, ...: one page of a function's."""

    function_name: str
    marker: str | None = None
    max_items: int | None = None


class PublishVersionRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    code_sha256: str | None = None
    description: str | None = None
    revision_id: str | None = None
    publish_to: str | None = None


# ---------------------------------------------------------------------------- aliases


class CreateAliasRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    name: str
    function_version: str
    description: str | None = None
    routing_config: AliasRoutingConfiguration | None = None


class UpdateAliasRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    name: str
    function_version: str | None = None
    description: str | None = None
    routing_config: AliasRoutingConfiguration | None = None
    revision_id: str | None = None


class AliasRequest(Wire, frozen=True, kw_only=True):
    """GetAlias, DeleteAlias."""

    function_name: str
    name: str


class ListAliasesRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    function_version: str | None = None
    marker: str | None = None
    max_items: int | None = None


# ---------------------------------------------------------------------------- tags, concurrency


class TagResourceRequest(Wire, frozen=True, kw_only=True):
    resource: str
    tags: dict[str, str]


class UntagResourceRequest(Wire, frozen=True, kw_only=True):
    resource: str
    tag_keys: list[str]


class ListTagsRequest(Wire, frozen=True, kw_only=True):
    resource: str


class PutFunctionConcurrencyRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    reserved_concurrent_executions: int


# ---------------------------------------------------------------------------- async settings


class PutFunctionEventInvokeConfigRequest(Wire, frozen=True, kw_only=True):
    """PutFunctionEventInvokeConfig and UpdateFunctionEventInvokeConfig."""

    function_name: str
    qualifier: str | None = None
    maximum_retry_attempts: int | None = None
    maximum_event_age_in_seconds: int | None = None
    destination_config: DestinationConfig | None = None


class PutFunctionRecursionConfigRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    recursive_loop: str


class PutProvisionedConcurrencyConfigRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    qualifier: str | None = None
    provisioned_concurrent_executions: int


class ProvisionedConcurrencyConfigRequest(Wire, frozen=True, kw_only=True):
    """GetProvisionedConcurrencyConfig, DeleteProvisionedConcurrencyConfig (the qualifier may
    come in the function name instead)."""

    function_name: str
    qualifier: str | None = None


# ---------------------------------------------------------------------------- function URLs


class Cors(Wire, frozen=True, kw_only=True):
    """A function URL's cross-origin settings (every member optional, as in the model)."""

    allow_credentials: bool | None = None
    allow_headers: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_origins: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: int | None = None


class FunctionUrlConfigRequest(Wire, frozen=True, kw_only=True):
    """Create/UpdateFunctionUrlConfig: the function, its alias (None: ``$LATEST``) and the
    settings the request gives (Create requires ``AuthType``; the model says so)."""

    function_name: str
    qualifier: str | None = None
    auth_type: str | None = None
    cors: Cors | None = None
    invoke_mode: str | None = None


class ListFunctionUrlConfigsRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    marker: str | None = None
    max_items: int | None = None


# ---------------------------------------------------------------------------- layers


class PublishLayerVersionRequest(Wire, frozen=True, kw_only=True):
    layer_name: str
    content: LayerVersionContentInput
    description: str | None = None
    compatible_runtimes: list[str] | None = None
    compatible_architectures: list[str] | None = None
    license_info: str | None = None


class ListLayersRequest(Wire, frozen=True, kw_only=True):
    compatible_runtime: str | None = None
    compatible_architecture: str | None = None
    marker: str | None = None
    max_items: int | None = None


class ListLayerVersionsRequest(ListLayersRequest, frozen=True, kw_only=True):
    layer_name: str


class LayerVersionRequest(Wire, frozen=True, kw_only=True):
    """GetLayerVersion, DeleteLayerVersion, GetLayerVersionPolicy."""

    layer_name: str
    version_number: int


class GetLayerVersionByArnRequest(Wire, frozen=True, kw_only=True):
    arn: str


class AddLayerVersionPermissionRequest(Wire, frozen=True, kw_only=True):
    layer_name: str
    version_number: int
    statement_id: str
    action: str
    principal: str
    organization_id: str | None = None
    revision_id: str | None = None


class RemoveLayerVersionPermissionRequest(Wire, frozen=True, kw_only=True):
    layer_name: str
    version_number: int
    statement_id: str
    revision_id: str | None = None


class PutRuntimeManagementConfigRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    update_runtime_on: str
    qualifier: str | None = None
    runtime_version_arn: str | None = None


# ---------------------------------------------------------------------------- function policies


class AddPermissionRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    statement_id: str
    action: str
    principal: str
    source_arn: str | None = None
    source_account: str | None = None
    event_source_token: str | None = None
    qualifier: str | None = None
    revision_id: str | None = None
    principal_org_id: str | None = msgspec.field(default=None, name="PrincipalOrgID")
    function_url_auth_type: str | None = None
    invoked_via_function_url: bool | None = None


class RemovePermissionRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    statement_id: str
    qualifier: str | None = None
    revision_id: str | None = None


class GetResourcePolicyRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str


class ResourcePolicyRequest(Wire, frozen=True, kw_only=True):
    """DeleteResourcePolicy."""

    resource_arn: str
    revision_id: str | None = None


class PutResourcePolicyRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str
    policy: str
    revision_id: str | None = None


# ---------------------------------------------------------------------------- event source mappings


class Filter(Wire, frozen=True, kw_only=True):
    pattern: str | None = None


class FilterCriteria(Wire, frozen=True, kw_only=True):
    filters: list[Filter] | None = None


class ScalingConfig(Wire, frozen=True, kw_only=True):
    maximum_concurrency: int | None = None


class MetricsConfig(Wire, frozen=True, kw_only=True):
    metrics: list[str] | None = None


class SourceAccessConfiguration(Wire, frozen=True, kw_only=True):
    type: str | None = None
    uri: str | None = msgspec.field(default=None, name="URI")


class MappingSettings(Wire, frozen=True, kw_only=True):
    """What Create and Update of an event source mapping both set."""

    function_name: str | None = None
    enabled: bool | None = None
    batch_size: int | None = None
    filter_criteria: FilterCriteria | None = None
    scaling_config: ScalingConfig | None = None
    metrics_config: MetricsConfig | None = None
    maximum_batching_window_in_seconds: int | None = None
    parallelization_factor: int | None = None
    destination_config: DestinationConfig | None = None
    maximum_record_age_in_seconds: int | None = None
    bisect_batch_on_function_error: bool | None = None
    maximum_retry_attempts: int | None = None
    tumbling_window_in_seconds: int | None = None
    function_response_types: list[str] | None = None
    source_access_configurations: list[SourceAccessConfiguration] | None = None


class CreateEventSourceMappingRequest(MappingSettings, frozen=True, kw_only=True):
    event_source_arn: str | None = None
    starting_position: str | None = None
    #: Epoch seconds.
    starting_position_timestamp: float | str | None = None
    tags: dict[str, str] | None = None
    #: Kafka's topics (Kafka is not polled: refused); MQ's one queue.
    topics: list[str] | None = None
    queues: list[str] | None = None


class UpdateEventSourceMappingRequest(MappingSettings, frozen=True, kw_only=True):
    uuid: str = msgspec.field(name="UUID")


class EventSourceMappingRequest(Wire, frozen=True, kw_only=True):
    uuid: str = msgspec.field(name="UUID")


class ListEventSourceMappingsRequest(Wire, frozen=True, kw_only=True):
    event_source_arn: str | None = None
    function_name: str | None = None
    marker: str | None = None
    max_items: int | None = None
