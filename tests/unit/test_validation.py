"""Unit tests of the pure control-plane checks in ``lambdad.control.validation``."""

from __future__ import annotations

import botocore.session
import pytest

from lambdad.control import validation as v
from lambdad.errors import (
    InvalidParameterValueException,
    LambdaError,
    NotAuthorizedOnResource,
    PreconditionFailedException,
    ResourceNotFoundException,
    ValidationException,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"


def parse(raw: str) -> tuple[str, str | None]:
    return v.parse_function_name(raw, account_id=ACCOUNT, region=REGION)


def raised(exc_type: type[LambdaError], call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(exc_type) as info:
        call(*args)
    assert type(info.value) is exc_type
    return info.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("my-fn", ("my-fn", None)),
        ("my-fn:prod", ("my-fn", "prod")),
        ("my-fn:$LATEST", ("my-fn", "$LATEST")),
        (f"{ACCOUNT}:function:my-fn", ("my-fn", None)),
        (f"{ACCOUNT}:function:my-fn:7", ("my-fn", "7")),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:my-fn", ("my-fn", None)),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:my_fn:live", ("my_fn", "live")),
    ],
)
def test_parse_function_name_accepts_every_form(raw: str, expected: tuple[str, str | None]) -> None:
    """Names, partial ARNs and full ARNs all yield the bare name and the optional qualifier."""
    assert parse(raw) == expected


def test_parse_function_name_takes_the_loosest_model_form() -> None:
    """Dots and ``$LATEST.PUBLISHED`` (GetFunction's and Invoke's pattern) split like any name;
    each operation's own pattern is the decoder's check, not this one's."""
    assert parse("my.fn") == ("my.fn", None)
    assert parse("my-fn:$LATEST.PUBLISHED") == ("my-fn", "$LATEST.PUBLISHED")


def test_parse_function_name_of_no_function_is_not_found() -> None:
    """A value that no model pattern allows (from a path outside the Lambda API) names no
    function."""
    message = raised(ResourceNotFoundException, parse, "my fn")
    assert message == "Function not found: my fn"


def test_parse_function_name_other_region_is_not_found() -> None:
    """An ARN of another region is a ResourceNotFoundException naming both regions."""
    raw = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:my-fn"
    message = raised(ResourceNotFoundException, parse, raw)
    assert message == "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"


def test_parse_function_name_other_account_is_access_denied() -> None:
    """An ARN of another account is AccessDeniedException naming that account's ARN (AWS:
    whether or not the function exists; the API layer names the action)."""
    message = raised(NotAuthorizedOnResource, parse, "999999999999:function:my-fn")
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform this operation on "
        "resource: arn:aws:lambda:us-east-1:999999999999:function:my-fn"
    )


def test_create_name_over_64_is_invalid_parameter() -> None:
    """CreateFunction caps a plain name at 64 characters with an InvalidParameterValueException."""
    v.validate_function_name_for_create("a" * 64)
    message = raised(InvalidParameterValueException, v.validate_function_name_for_create, "a" * 65)
    assert message == (
        f"1 validation error detected: Value '{'a' * 65}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64"
    )


def test_merge_qualifier_conflict() -> None:
    """A qualifier in the name and a different Qualifier parameter conflict."""
    assert v.merge_qualifier("1", None) == "1"
    assert v.merge_qualifier(None, "live") == "live"
    message = raised(InvalidParameterValueException, v.merge_qualifier, "1", "2")
    assert message == (
        "The derived qualifier from the function name does not match the specified qualifier."
    )


def test_supported_runtimes_pass() -> None:
    """Every runtime lambdad runs is accepted for a Zip function."""
    assert "python3.14" in v.SUPPORTED_RUNTIMES
    for runtime in v.SUPPORTED_RUNTIMES:
        v.validate_runtime(runtime, "Zip")


def test_the_runtimes_accepted_are_the_runtimes_run_and_the_models() -> None:
    """The ids CreateFunction accepts are the ones the runtime layer starts (python, node or
    provided), each in botocore's Runtime enum (AWS lists them all), and an unknown id's enum
    message names them in order: one list, ``lambdad.runtime_ids``."""
    from lambdad.runtime import runtimes

    run = {*runtimes.PYTHON_RUNTIMES, *runtimes.NODE_RUNTIMES, *runtimes.PROVIDED_RUNTIMES}
    assert run == v.SUPPORTED_RUNTIMES
    enum = botocore.session.get_session().get_service_model("lambda").shape_for("Runtime").enum
    assert v.SUPPORTED_RUNTIMES.issubset(enum)
    message = raised(InvalidParameterValueException, v.validate_runtime, "cobol85", "Zip")
    assert message == (
        "Value cobol85 at 'runtime' failed to satisfy constraint: Member must satisfy enum value "
        "set: [python3.9, python3.10, python3.11, python3.12, python3.13, python3.14, "
        "python3.15, nodejs18.x, nodejs20.x, nodejs22.x, nodejs24.x, nodejs26.x, provided, "
        "provided.al2, provided.al2023] or be a valid ARN"
    )


def test_deprecated_runtime_recommends_family_successor() -> None:
    """A deprecated python runtime gets AWS's message naming the newest python."""
    message = raised(InvalidParameterValueException, v.validate_runtime, "python3.6", "Zip")
    assert message == (
        "The runtime parameter of python3.6 is no longer supported for creating or updating AWS "
        "Lambda functions. We recommend you use the new runtime (python3.14) while creating or "
        "updating functions."
    )


def test_deprecated_runtime_outside_families_recommends_any() -> None:
    """A deprecated runtime of a family lambdad does not run gets the generic advice."""
    message = raised(InvalidParameterValueException, v.validate_runtime, "java8", "Zip")
    assert message.endswith(
        "We recommend you use a supported runtime while creating or updating functions."
    )


def test_unknown_runtime_lists_enum() -> None:
    """An unknown runtime gets the enum message listing lambdad's runtimes, unquoted value."""
    message = raised(InvalidParameterValueException, v.validate_runtime, "cobol1.0", "Zip")
    assert message.startswith(
        "Value cobol1.0 at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        "value set: [python3.9, "
    )
    assert message.endswith("provided.al2023] or be a valid ARN")


def test_runtime_required_for_zip_and_refused_for_image() -> None:
    """Zip functions need a runtime; Image functions must not name one."""
    message = raised(InvalidParameterValueException, v.validate_runtime, None, "Zip")
    assert message.startswith("Runtime and Handler are mandatory parameters")
    v.validate_runtime(None, "Image")
    message = raised(InvalidParameterValueException, v.validate_runtime, "python3.12", "Image")
    assert "PackageType is Image" in message


def test_handler_required_with_runtime() -> None:
    """A function with a runtime needs a handler; one without (an image) does not."""
    v.validate_handler(None, None)
    v.validate_handler("app.handler", "python3.12")
    message = raised(InvalidParameterValueException, v.validate_handler, None, "provided.al2023")
    assert message == (
        "Runtime and Handler are mandatory parameters for functions created with deployment "
        "packages."
    )


def test_memory_size_service_bound() -> None:
    """Memory the model allows above 10240 gets the service's own wording."""
    v.validate_memory_size(10240)
    message = raised(ValidationException, v.validate_memory_size, 10241)
    assert message == (
        "'MemorySize' value failed to satisfy constraint: "
        "Member must have value less than or equal to 10240"
    )


def test_timeout_and_ephemeral_storage_bounds() -> None:
    """Timeout is at most 900 s and ephemeral storage at most 10240 MB (the model's minimums
    are the decoder's)."""
    v.validate_timeout(900)
    v.validate_ephemeral_storage(512)
    assert raised(ValidationException, v.validate_timeout, 901) == (
        "1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: "
        "Member must have value less than or equal to 900"
    )
    assert raised(ValidationException, v.validate_ephemeral_storage, 10241) == (
        "1 validation error detected: Value '10241' at 'ephemeralStorage.size' failed to satisfy "
        "constraint: Member must have value less than or equal to 10240"
    )


def test_environment_reserved_keys_in_request_order() -> None:
    """Reserved keys are listed in the order the request gave them."""
    variables = {"OK_KEY": "1", "LAMBDA_TASK_ROOT": "y", "AWS_REGION": "x"}
    message = raised(InvalidParameterValueException, v.validate_environment, variables)
    assert message.endswith("Reserved keys used in this request: LAMBDA_TASK_ROOT, AWS_REGION")


def test_environment_size_measures_json() -> None:
    """The 4 KB limit applies to the compact JSON of the map, which the message quotes."""
    v.validate_environment({"KEY": "v" * 4086})  # {"KEY":"…"} is exactly 4096 bytes
    message = raised(InvalidParameterValueException, v.validate_environment, {"KEY": "v" * 4087})
    assert message.endswith('String measured: {"KEY":"' + "v" * 4087 + '"}')
    assert "exceeded the 4KB limit" in message


def test_logging_config_levels_need_json() -> None:
    """Log levels are refused unless the format is JSON, which is not the default."""
    v.validate_log_levels("JSON", "DEBUG", None)
    message = raised(InvalidParameterValueException, v.validate_log_levels, "Text", None, "WARN")
    assert message.startswith('LogLevel is not supported when LogFormat is set to "Text".')


def test_tags_limit_and_reserved_prefix() -> None:
    """50 tags pass and 51 do not (AWS: "Number of tags exceeds resource tag limit."); a key
    starting with ``aws:`` is invalid."""
    v.validate_tags({f"k{i}": "v" for i in range(50)})
    message = raised(
        InvalidParameterValueException, v.validate_tags, {f"x{i}": "" for i in range(51)}
    )
    assert message == "Number of tags exceeds resource tag limit."
    with pytest.raises(InvalidParameterValueException):
        v.validate_tags({"aws:owner": "me"})


def test_routing_config_rules() -> None:
    """One extra published version, not the alias's own, weight below 1, never on $LATEST."""
    v.validate_routing_config({"2": 0.25}, "1")
    v.validate_routing_config({}, "$LATEST")
    assert raised(
        InvalidParameterValueException, v.validate_routing_config, {"2": 0.1, "3": 0.1}, "1"
    ) == ("Number of items in AdditionalVersionWeights cannot be greater than 1")
    assert raised(InvalidParameterValueException, v.validate_routing_config, {"1": 0.5}, "1") == (
        "Invalid function version 1. Function version 1 is already included in routing "
        "configuration."
    )
    assert raised(
        InvalidParameterValueException, v.validate_routing_config, {"2": 0.5}, "$LATEST"
    ) == ("$LATEST is not supported for an alias pointing to more than 1 version")
    weight_message = raised(ValidationException, v.validate_routing_config, {"2": 1.0}, "1")
    assert weight_message.startswith(
        "1 validation error detected: Value '{2=1.0}' at 'routingConfig.additionalVersionWeights'"
    )


def test_revision_and_code_sha_checks() -> None:
    """A stale RevisionId is a precondition failure; a stale CodeSha256 an invalid parameter."""
    v.check_revision_id(None, "r1")
    v.check_revision_id("r1", "r1")
    assert "does not match the latest Revision Id" in raised(
        PreconditionFailedException, v.check_revision_id, "r0", "r1"
    )
    assert raised(InvalidParameterValueException, v.check_code_sha256, "a", "b") == (
        "CodeSHA256 (a) is different from current CodeSHA256 in $LATEST (b). "
        "Please try again with the CodeSHA256 in $LATEST."
    )
