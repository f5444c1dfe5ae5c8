"""Domain values rendered as the AWS wire shapes of botocore's ``lambda`` model."""

from __future__ import annotations

from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.model import LATEST, Alias, FunctionConfig

#: What AWS leaves out of the items of ListFunctions and ListVersionsByFunction.
_NOT_LISTED = ("State", "StateReason", "StateReasonCode", "LastUpdateStatus")


def function_configuration(
    scope: Scope, cfg: FunctionConfig, *, qualifier: str | None = None
) -> dict[str, Any]:
    """FunctionConfiguration. ``FunctionArn`` carries ``qualifier`` (the version or alias the
    request named, ``$LATEST`` included) or else the version's own number; unqualified for an
    unnamed ``$LATEST``."""
    arn_qualifier = qualifier or (None if cfg.version == LATEST else cfg.version)
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
        "LastUpdateStatus": cfg.last_update_status.value,
        "PackageType": cfg.package_type,
        "Architectures": list(cfg.architectures),
        "EphemeralStorage": {"Size": cfg.ephemeral_storage},
        "SnapStart": {"ApplyOn": cfg.snap_start, "OptimizationStatus": "Off"},
        "LoggingConfig": _logging(cfg),
    }
    if cfg.runtime:
        shape["Runtime"] = cfg.runtime
    if cfg.handler:
        shape["Handler"] = cfg.handler
    if cfg.environment:
        shape["Environment"] = {"Variables": dict(cfg.environment)}
    if cfg.dead_letter_target:
        shape["DeadLetterConfig"] = {"TargetArn": cfg.dead_letter_target}
    if cfg.kms_key_arn:
        shape["KMSKeyArn"] = cfg.kms_key_arn
    if cfg.layers:
        shape["Layers"] = [{"Arn": arn, "CodeSize": 0} for arn in cfg.layers]
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
