"""Domain values rendered as the AWS wire shapes of botocore's ``lambda`` model."""

from __future__ import annotations

from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.layer_model import LayerPolicy, LayerStatement, LayerVersion
from lambdad.control.model import (
    LATEST,
    Alias,
    FunctionConfig,
    State,
    UpdateStatus,
    runtime_version_arn,
)

#: What AWS leaves out of the items of ListFunctions and ListVersionsByFunction.
_NOT_LISTED = (
    "State",
    "StateReason",
    "StateReasonCode",
    "LastUpdateStatus",
    "LastUpdateStatusReason",
    "LastUpdateStatusReasonCode",
)


def function_configuration(
    scope: Scope, cfg: FunctionConfig, *, qualifier: str | None = None, bare_arn: bool = False
) -> dict[str, Any]:
    """FunctionConfiguration. ``FunctionArn`` carries ``qualifier`` (the version or alias the
    request named, ``$LATEST`` included) or else the version's own number; unqualified for an
    unnamed ``$LATEST``, and with ``bare_arn`` (CreateFunction with ``Publish`` answers the
    new version under the function's ARN, as AWS does).

    As on AWS: a version being created (``Pending``) has no ``LastUpdateStatus``; an update
    in progress or failed says why; every zip function names its ``RuntimeVersionConfig``;
    ``Environment`` is there once ``Environment.Variables`` was given, even empty."""
    own = None if cfg.version == LATEST else cfg.version
    arn_qualifier = None if bare_arn else qualifier or own
    shape: dict[str, Any] = {
        "FunctionName": cfg.name,
        "FunctionArn": scope.function_arn(cfg.name, arn_qualifier),
        "Role": cfg.role,
        "CodeSize": cfg.code_size,
        "Description": cfg.description,
        "Timeout": cfg.timeout,
        "MemorySize": cfg.memory_size,
        "LastModified": cfg.last_modified,
        "CodeSha256": cfg.code_sha256,
        "Version": cfg.version,
        "TracingConfig": {"Mode": cfg.tracing_mode},
        "RevisionId": cfg.revision_id,
        "State": cfg.state.value,
        "PackageType": cfg.package_type,
        "Architectures": list(cfg.architectures),
        "EphemeralStorage": {"Size": cfg.ephemeral_storage},
        "SnapStart": {
            "ApplyOn": cfg.snap_start,
            "OptimizationStatus": "On" if cfg.snap_start_on else "Off",
        },
        "LoggingConfig": _logging(cfg),
    }
    if cfg.state_reason_code:
        shape["StateReason"] = cfg.state_reason or ""
        shape["StateReasonCode"] = cfg.state_reason_code
    if cfg.state is not State.PENDING:
        shape["LastUpdateStatus"] = cfg.last_update_status.value
        if cfg.last_update_status is not UpdateStatus.SUCCESSFUL and (
            cfg.last_update_status_reason_code
        ):
            shape["LastUpdateStatusReason"] = cfg.last_update_status_reason or ""
            shape["LastUpdateStatusReasonCode"] = cfg.last_update_status_reason_code
    if cfg.runtime:
        shape["Runtime"] = cfg.runtime
        shape["RuntimeVersionConfig"] = {
            "RuntimeVersionArn": cfg.runtime_version_arn
            or runtime_version_arn(scope.region, cfg.runtime)
        }
    if cfg.handler:
        shape["Handler"] = cfg.handler
    if cfg.environment or cfg.environment_set:
        shape["Environment"] = {"Variables": dict(cfg.environment)}
    if cfg.dead_letter_target:
        shape["DeadLetterConfig"] = {"TargetArn": cfg.dead_letter_target}
    if cfg.kms_key_arn:
        shape["KMSKeyArn"] = cfg.kms_key_arn
    if cfg.layers:
        shape["Layers"] = [{"Arn": layer.arn, "CodeSize": layer.code_size} for layer in cfg.layers]
    if cfg.tenant_isolation_mode:
        shape["TenancyConfig"] = {"TenantIsolationMode": cfg.tenant_isolation_mode}
    if cfg.durable_execution_timeout is not None:
        shape["DurableConfig"] = {
            "ExecutionTimeout": cfg.durable_execution_timeout,
            "RetentionPeriodInDays": cfg.durable_retention_days,
        }
    return shape


def function_list_item(scope: Scope, cfg: FunctionConfig, *, qualified: bool) -> dict[str, Any]:
    """An item of a function or version listing: no state fields; ``qualified`` puts the
    version in every ARN (``…:$LATEST`` too), as ListVersionsByFunction and
    ``ListFunctions(FunctionVersion=ALL)`` do."""
    shape = function_configuration(scope, cfg, qualifier=cfg.version if qualified else None)
    for key in _NOT_LISTED:
        shape.pop(key, None)
    return shape


def _logging(cfg: FunctionConfig) -> dict[str, Any]:
    shape: dict[str, Any] = {"LogFormat": cfg.logging.log_format, "LogGroup": cfg.log_group}
    if cfg.logging.application_log_level:
        shape["ApplicationLogLevel"] = cfg.logging.application_log_level
    if cfg.logging.system_log_level:
        shape["SystemLogLevel"] = cfg.logging.system_log_level
    return shape


def alias_configuration(scope: Scope, alias: Alias) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "AliasArn": scope.function_arn(alias.function_name, alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.weights:
        shape["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return shape


# ------------------------------------------------------------------------- layers


def layer_version_item(scope: Scope, version: LayerVersion) -> dict[str, Any]:
    """LayerVersionsListItem: what ListLayerVersions and ListLayers show of a version. As on
    AWS, an empty description and unset compatibility lists are left out."""
    shape: dict[str, Any] = {
        "LayerVersionArn": scope.layer_version_arn(version.name, version.version),
        "Version": version.version,
        "CreatedDate": version.created,
    }
    if version.description:
        shape["Description"] = version.description
    if version.compatible_runtimes:
        shape["CompatibleRuntimes"] = list(version.compatible_runtimes)
    if version.compatible_architectures:
        shape["CompatibleArchitectures"] = list(version.compatible_architectures)
    if version.license_info is not None:
        shape["LicenseInfo"] = version.license_info
    return shape


def layer_version(scope: Scope, version: LayerVersion, base_url: str) -> dict[str, Any]:
    """GetLayerVersionResponse (and PublishLayerVersion's): the item plus the layer's ARN and
    the content, whose ``Location`` is lambdad's download URL of the archive."""
    return {
        **layer_version_item(scope, version),
        "LayerArn": scope.layer_arn(version.name),
        "Content": {
            "Location": f"{base_url}/_lambdad/code/{version.code_key}.zip",
            "CodeSha256": version.code_sha256,
            "CodeSize": version.code_size,
        },
    }


def layers_list_item(scope: Scope, latest: LayerVersion) -> dict[str, Any]:
    return {
        "LayerName": latest.name,
        "LayerArn": scope.layer_arn(latest.name),
        "LatestMatchingVersion": layer_version_item(scope, latest),
    }


def layer_statement(
    scope: Scope, version: LayerVersion, statement: LayerStatement
) -> dict[str, Any]:
    """One policy statement as AWS writes it: an account becomes its ``root`` principal, an
    organisation a ``aws:PrincipalOrgID`` condition."""
    principal: Any = statement.principal
    if principal.isdigit():
        principal = {"AWS": f"arn:aws:iam::{principal}:root"}
    elif principal != "*":
        principal = {"AWS": principal}
    shape: dict[str, Any] = {
        "Sid": statement.sid,
        "Effect": "Allow",
        "Principal": principal,
        "Action": statement.action,
        "Resource": scope.layer_version_arn(version.name, version.version),
    }
    if statement.organization_id:
        shape["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": statement.organization_id}}
    return shape


def layer_policy(scope: Scope, version: LayerVersion, policy: LayerPolicy) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": [layer_statement(scope, version, s) for s in policy.statements],
    }
