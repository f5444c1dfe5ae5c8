"""Input checks of the control plane, answering with AWS Lambda's own error codes and messages.

Pure functions: nothing here touches a store, the clock or the network. Each ``validate_*``
returns ``None`` or raises a :mod:`lambdad.errors` exception whose message is the one AWS sends.

Two families of errors, as on AWS:

- :class:`~lambdad.errors.ValidationException` for shape constraints (lengths, patterns, ranges,
  enums): ``1 validation error detected: Value '…' at 'field' failed to satisfy constraint: …``,
  several joined by ``; `` under ``N validation errors detected``. The model's own constraints
  are checked by the wire decoder (``lambdad.api.wire``) with the builders below; this module
  checks only the service's tighter limits inside them (Timeout up to 900, not 5400, ...).
- :class:`~lambdad.errors.InvalidParameterValueException` for the service's own rules
  (reserved environment keys, deprecated runtimes, routing rules, …).

Functions that take a whole setting (handler with runtime, logging config) expect the
*effective* value: for an update, the stored configuration merged with the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from lambdad.errors import (
    InvalidParameterValueException,
    NotAuthorizedOnResource,
    PreconditionFailedException,
    ResourceNotFoundException,
    ValidationException,
)
from lambdad.runtime_ids import RUNTIME_IDS

#: A name, partial ARN or ARN with an optional qualifier: the loosest of the model's function
#: name patterns (GetFunction's, with dots and ``$LATEST.PUBLISHED``), with named groups. The
#: decoder has already checked each request against its own operation's pattern.
_FUNCTION_NAME_RE = re.compile(
    r"(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?"
    r"(?:(?P<region>(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_\-.]+)(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_\-]+))?"
)

#: Every runtime lambdad runs; python3.15 and nodejs26.x are previews (docs/runtimes.md).
SUPPORTED_RUNTIMES: frozenset[str] = frozenset(RUNTIME_IDS)
#: Runtimes AWS refuses for create and update (plus the old ones of families lambdad runs).
DEPRECATED_RUNTIMES: frozenset[str] = frozenset(
    {
        "nodejs",
        "nodejs4.3",
        "nodejs4.3-edge",
        "nodejs6.10",
        "nodejs8.10",
        "nodejs10.x",
        "nodejs12.x",
        "nodejs14.x",
        "nodejs16.x",
        "python2.7",
        "python3.6",
        "python3.7",
        "python3.8",
        "java8",
        "dotnetcore1.0",
        "dotnetcore2.0",
        "dotnetcore2.1",
        "dotnetcore3.1",
        "go1.x",
        "ruby2.5",
        "ruby2.7",
    }
)
_RUNTIME_SUCCESSORS = {"python": "python3.14", "nodejs": "nodejs24.x", "go1.x": "provided.al2023"}

#: Environment keys AWS refuses (wire spec §3).
RESERVED_ENV_KEYS: frozenset[str] = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
ENV_MAX_BYTES = 4096
_RUNTIME_AND_HANDLER = (
    "Runtime and Handler are mandatory parameters for functions created with deployment packages."
)
MAX_TAGS = 50


# ---- message builders -------------------------------------------------------------------


def constraint(value: object, field: str, rule: str) -> str:
    """One ``Value '…' at 'field' failed to satisfy constraint: rule`` clause."""
    return f"Value '{value}' at '{field}' failed to satisfy constraint: {rule}"


def validation_error(clauses: Iterable[str]) -> ValidationException:
    """The ValidationException AWS sends for one or more constraint clauses."""
    found = list(clauses)
    plural = "s" if len(found) > 1 else ""
    return ValidationException(
        f"{len(found)} validation error{plural} detected: {'; '.join(found)}"
    )


def _at_most(value: int, field: str, maximum: int) -> None:
    """The service's maximum inside the model's wider range (whose minimum the decoder checks)."""
    if value > maximum:
        rule = f"Member must have value less than or equal to {maximum}"
        raise validation_error([constraint(value, field, rule)])


# ---- function names and qualifiers ------------------------------------------------------


#: Names parsed before (every invoke parses its function's): (raw, account, region) -> result.
_PARSED: dict[tuple[str, str, str], tuple[str, str | None]] = {}
_PARSED_KEPT = 4096


def parse_function_name(
    raw: str, *, account_id: str, region: str, principal_arn: str | None = None
) -> tuple[str, str | None]:
    """Split a name, partial ARN or full ARN (each with an optional ``:qualifier``).

    Returns ``(name, qualifier or None)``. The request's length and pattern are the model's,
    checked when it is decoded; a value that is no function name at all (from a path outside
    the Lambda API) names no function: ResourceNotFoundException. So is an ARN of another
    region ("Functions from 'r' are not reachable in this region ('us-east-1')"). An ARN of
    another account is AccessDeniedException, whether or not the function exists, as AWS
    answers a caller no resource policy grants (the API layer names the action).
    """
    key = (raw, account_id, region)
    parsed = _PARSED.get(key)
    if parsed is not None:
        return parsed
    match = _FUNCTION_NAME_RE.fullmatch(raw)
    if match is None:
        raise ResourceNotFoundException(f"Function not found: {raw}")
    name, qualifier = match["name"], match["qualifier"]
    if match["region"] is not None and match["region"] != region:
        raise ResourceNotFoundException(
            f"Functions from '{match['region']}' are not reachable in this region ('{region}')"
        )
    if match["account"] is not None and match["account"] != account_id:
        arn = f"arn:aws:lambda:{region}:{match['account']}:function:{name}"
        raise NotAuthorizedOnResource(
            principal_arn or f"arn:aws:iam::{account_id}:root",
            f"{arn}:{qualifier}" if qualifier else arn,
        )
    if len(_PARSED) >= _PARSED_KEPT:
        _PARSED.clear()
    parsed = _PARSED[key] = (name, qualifier)
    return parsed


def account_of_function(raw: str) -> str | None:
    """The account a function name's ARN (or partial ARN) names; None for a plain name."""
    if ":" not in raw:  # a plain name (most invocations): no pattern to run
        return None
    match = _FUNCTION_NAME_RE.fullmatch(raw)
    return None if match is None else match["account"]


def validate_function_name_for_create(name: str) -> None:
    """Check a bare name (as returned by :func:`parse_function_name`) for CreateFunction.

    AWS caps a plain name at 64 characters (the model allows 140 for an ARN) and answers that
    one with an InvalidParameterValueException worded like a validation error.
    """
    if len(name) > 64:
        raise InvalidParameterValueException(
            "1 validation error detected: "
            + constraint(name, "functionName", "Member must have length less than or equal to 64")
        )


def merge_qualifier(from_name: str | None, from_parameter: str | None) -> str | None:
    """The qualifier of a request that may carry one in the name and one as a parameter."""
    if from_name and from_parameter and from_name != from_parameter:
        raise InvalidParameterValueException(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return from_parameter or from_name


# ---- runtime and handler ----------------------------------------------------------------


#: Managed runtimes SnapStart supports (AWS: Java 11+, Python 3.12+, .NET 8+); lambdad runs
#: the Python ones.
SNAP_START_RUNTIMES = frozenset({"python3.12", "python3.13", "python3.14"})


def validate_snap_start_runtime(apply_on: str, runtime: str | None) -> None:
    """SnapStart on a runtime that does not support it: AWS's message."""
    if apply_on == "PublishedVersions" and runtime not in SNAP_START_RUNTIMES:
        raise InvalidParameterValueException(
            f"{runtime} is not supported for SnapStart enabled functions."
        )


#: AWS: "SnapStart doesn't support provisioned concurrency, Amazon EFS, or ephemeral storage
#: greater than 512 MB." (the exact messages are not published; these say the same).
SNAP_START_STORAGE = (
    "SnapStart is not supported for functions with ephemeral storage greater than 512 MB."
)
SNAP_START_PROVISIONED = (
    "Provisioned concurrency is not supported for SnapStart enabled function versions."
)


def validate_snap_start_storage(apply_on: str, ephemeral_mb: int) -> None:
    if apply_on == "PublishedVersions" and ephemeral_mb > 512:
        raise InvalidParameterValueException(SNAP_START_STORAGE)


def validate_runtime(runtime: str | None, package_type: str) -> None:
    """Runtime against the package type and the runtimes lambdad runs.

    Zip needs a runtime; Image refuses one. A deprecated runtime gets AWS's "no longer
    supported" message, any other unknown one the enum message listing lambdad's runtimes.
    """
    if package_type == "Image":
        if runtime is not None:
            raise InvalidParameterValueException(
                "Please don't provide Handler or Runtime or Layer when the intended function "
                "PackageType is Image."
            )
        return
    if runtime is None:
        raise InvalidParameterValueException(_RUNTIME_AND_HANDLER)
    if runtime in SUPPORTED_RUNTIMES:
        return
    if runtime in DEPRECATED_RUNTIMES:
        raise InvalidParameterValueException(_deprecated_message(runtime))
    raise InvalidParameterValueException(
        f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        f"value set: [{', '.join(RUNTIME_IDS)}] or be a valid ARN"
    )


def _deprecated_message(runtime: str) -> str:
    family = "python" if runtime.startswith("python") else runtime
    family = "nodejs" if runtime.startswith("nodejs") else family
    successor = _RUNTIME_SUCCESSORS.get(family)
    advice = f"the new runtime ({successor})" if successor else "a supported runtime"
    return (
        f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS "
        f"Lambda functions. We recommend you use {advice} while creating or updating functions."
    )


def validate_handler(handler: str | None, runtime: str | None) -> None:
    """A handler is required whenever there is a runtime (a Zip function); its length and
    pattern are the model's, checked when the request is decoded."""
    if handler is None and runtime is not None:
        raise InvalidParameterValueException(_RUNTIME_AND_HANDLER)


# ---- sizes and simple strings -----------------------------------------------------------


def validate_memory_size(v: int) -> None:
    """At most 10240 MB: the model allows 128-32768 (checked when decoded); above 10240 is the
    service's own refusal."""
    if v > 10240:
        raise ValidationException(
            "'MemorySize' value failed to satisfy constraint: "
            "Member must have value less than or equal to 10240"
        )


def validate_timeout(v: int) -> None:
    """At most 900 seconds (the model's 1-5400 is checked when decoded)."""
    _at_most(v, "timeout", 900)


def validate_ephemeral_storage(v: int) -> None:
    """At most 10240 MB of ``/tmp`` (the model's 512-32768 is checked when decoded)."""
    _at_most(v, "ephemeralStorage.size", 10240)


# ---- environment, logging, tags ---------------------------------------------------------


def validate_environment(variables: Mapping[str, str]) -> None:
    """Reserved keys (in request order), then the 4 KB limit on the JSON map (the key pattern
    is the model's, checked when decoded)."""
    reserved = [key for key in variables if key in RESERVED_ENV_KEYS]
    if reserved:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not supported "
            f"for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    measured = json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode("utf-8")) > ENV_MAX_BYTES:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided exceeded the 4KB limit. String measured: " + measured
        )


def validate_log_levels(
    log_format: str, application_level: str | None, system_level: str | None
) -> None:
    """Log levels only with the JSON format (``log_format``: the request's, Text if absent)."""
    if (application_level or system_level) and log_format != "JSON":
        raise InvalidParameterValueException(
            'LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your '
            'request or change the LogFormat to "Json" and try again.'
        )


def validate_tags(tags: Mapping[str, str]) -> None:
    """A function's tags (the merged ones, for TagResource): at most 50, no key starting with
    ``aws:``. Key and value lengths and patterns are the model's, checked when decoded."""
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValueException("Number of tags exceeds resource tag limit.")
    for key in tags:
        if key.lower().startswith("aws:"):
            raise InvalidParameterValueException(f"The tag key '{key}' is invalid.")


# ---- aliases, versions, revisions -------------------------------------------------------


def validate_routing_config(weights: Mapping[str, float], function_version: str) -> None:
    """An alias's AdditionalVersionWeights against the version it points to.

    At most one extra version, a published one other than the alias's own, with a weight in
    [0.0, 1.0) (the model allows 1.0 and checks the keys' pattern when decoded); an alias on
    ``$LATEST`` takes no routing. Existence is the caller's check.
    """
    if len(weights) > 1:
        raise InvalidParameterValueException(
            "Number of items in AdditionalVersionWeights cannot be greater than 1"
        )
    field = "routingConfig.additionalVersionWeights"
    for version, weight in weights.items():
        shown = f"{{{version}={weight}}}"
        if not 0.0 <= weight < 1.0:
            rule = (
                "Map value must satisfy constraint: [Member must have value less than or equal "
                "to 1.0, Member must have value greater than or equal to 0.0, "
                "Member must not be null]"
            )
            raise validation_error([constraint(shown, field, rule)])
        if version == function_version:
            raise InvalidParameterValueException(
                f"Invalid function version {function_version}. Function version "
                f"{function_version} is already included in routing configuration."
            )
        if function_version == "$LATEST":
            raise InvalidParameterValueException(
                "$LATEST is not supported for an alias pointing to more than 1 version"
            )


def check_revision_id(given: str | None, current: str, api: str = "GetFunction") -> None:
    """A request's optional RevisionId must equal the resource's current one; the message
    names the call that reads it (``GetFunction``, ``GetAlias``, ``GetLayerPolicy``)."""
    if given is not None and given != current:
        raise PreconditionFailedException(
            "The Revision Id provided does not match the latest Revision Id. Call the "
            f"{api} API to retrieve the latest Revision Id"
        )


def check_code_sha256(given: str | None, current: str) -> None:
    """PublishVersion's optional CodeSha256 must equal the one of ``$LATEST``."""
    if given is not None and given != current:
        raise InvalidParameterValueException(
            f"CodeSHA256 ({given}) is different from current CodeSHA256 in $LATEST ({current}). "
            "Please try again with the CodeSHA256 in $LATEST."
        )


# ---- layers ------------------------------------------------------------------------------

#: What AWS prints for an ARN refused by GetLayerVersionByArn (stricter than the model's).
LAYER_VERSION_ARN_PATTERN = (
    r"arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1}:\d{12}:layer:"
    r"[a-zA-Z0-9-_]+:[0-9]+"
)
MAX_FUNCTION_LAYERS = 5

_LAYER_NAME_RE = re.compile(
    r"arn:[a-zA-Z0-9-]+:lambda:(?P<region>[a-zA-Z0-9-]+):(?P<account>\d{12}):layer:"
    r"(?P<name>[a-zA-Z0-9_\-]+)|(?P<plain>[a-zA-Z0-9_\-]+)"
)
_LAYER_VERSION_ARN_RE = re.compile(
    r"arn:[a-zA-Z0-9-]+:lambda:(?P<region>[a-zA-Z0-9-]+):(?P<account>\d{12}):layer:"
    r"(?P<name>[a-zA-Z0-9_\-]+):(?P<version>[0-9]+)"
)


def parse_layer_name(raw: str) -> tuple[str, str | None, str | None]:
    """A ``LayerName`` label: a name or an unversioned layer ARN.

    Returns ``(name, region, account)``, the last two None for a plain name. The label's length
    and pattern are the model's, checked when the request is decoded; a value that is no layer
    name at all names no layer (ResourceNotFoundException).
    """
    match = _LAYER_NAME_RE.fullmatch(raw)
    if match is None:
        raise ResourceNotFoundException("The resource you requested does not exist.")
    if match["plain"] is not None:
        return match["plain"], None, None
    return match["name"], match["region"], match["account"]


def parse_layer_version_arn(arn: str) -> tuple[str, str, str, int] | None:
    """``(region, account, name, version)`` of a layer version ARN, or None if it is not one."""
    match = _LAYER_VERSION_ARN_RE.fullmatch(arn)
    if match is None or len(arn) > 140:
        return None
    return match["region"], match["account"], match["name"], int(match["version"])


def validate_layer_version_arn(arn: str) -> tuple[str, str, str, int]:
    """GetLayerVersionByArn's ``Arn``: a ValidationException unless it names a version."""
    parsed = parse_layer_version_arn(arn)
    if parsed is None:
        raise validation_error(
            [
                constraint(
                    arn,
                    "arn",
                    f"Member must satisfy regular expression pattern: {LAYER_VERSION_ARN_PATTERN}",
                )
            ]
        )
    return parsed


def check_layer_version_number(number: int) -> None:
    """A layer ``VersionNumber`` from 1 (the service's InvalidParameterValueException)."""
    if number < 1:
        raise InvalidParameterValueException("Layer Version Cannot be less than 1")


def validate_function_layers(arns: list[str]) -> list[tuple[str, str, str, int]]:
    """A function's ``Layers`` (each matching the model's pattern, checked when decoded): at
    most 5 layer version ARNs; returns each one parsed.

    More than 5, or an ARN that names no layer version of an account (an ``awslayer``), is an
    InvalidParameterValueException. Existence and duplicates are the caller's checks.
    """
    if len(arns) > MAX_FUNCTION_LAYERS:
        raise InvalidParameterValueException("Cannot reference more than 5 layers.")
    parsed = []
    for arn in arns:
        found = parse_layer_version_arn(arn)
        if found is None:
            raise InvalidParameterValueException(f"Layer version {arn} does not exist.")
        parsed.append(found)
    return parsed
