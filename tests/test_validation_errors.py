"""Validation through boto3: every bad input gets the error code, status and message AWS gives."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from tests.conftest import ROLE, bound_message, invoke_json, make_zip, refused, unique

CORRUPT = "Could not unzip uploaded file. Please check your file, then try to upload again."

# ----------------------------------------------------------------------------- validation


RESERVED_MESSAGE = (
    "Lambda was unable to configure your environment variables because the environment "
    "variables you have provided contains reserved keys that are currently not supported for "
    "modification. Reserved keys used in this request: AWS_REGION, AWS_LAMBDA_RUNTIME_API"
)
#: The current botocore model's FunctionName pattern, which AWS quotes.
NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
    r"(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        pytest.param(
            {"FunctionName": "bad name!"},
            "ValidationException",
            "1 validation error detected: Value 'bad name!' at 'functionName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: " + NAME_PATTERN,
            id="name-pattern",
        ),
        pytest.param(
            {"FunctionName": "n" * 65},
            "InvalidParameterValueException",
            f"1 validation error detected: Value '{'n' * 65}' at 'functionName' failed to "
            "satisfy constraint: Member must have length less than or equal to 64",
            id="name-65",
        ),
        pytest.param(
            {"FunctionName": "n" * 141},
            "ValidationException",
            f"1 validation error detected: Value '{'n' * 141}' at 'functionName' failed to "
            "satisfy constraint: Member must have length less than or equal to 140",
            id="name-141",
        ),
        pytest.param(
            {"FunctionName": "fn:live"},
            "InvalidParameterValueException",
            None,
            id="name-with-qualifier",
        ),
        pytest.param(
            {"Handler": None},
            "InvalidParameterValueException",
            "Runtime and Handler are mandatory parameters for functions created with deployment "
            "packages.",
            id="no-handler",
        ),
        pytest.param(
            {"Handler": "app handler"}, "ValidationException", None, id="handler-whitespace"
        ),
        pytest.param(
            {"MemorySize": 64},
            "ValidationException",
            bound_message("memorySize", 64, "greater", 128),
            id="memory-64",
        ),
        pytest.param(
            {"MemorySize": 20000},
            "ValidationException",
            "'MemorySize' value failed to satisfy constraint: Member must have value less than "
            "or equal to 10240",
            id="memory-20000",
        ),
        pytest.param(
            {"Timeout": 0},
            "ValidationException",
            bound_message("timeout", 0, "greater", 1),
            id="t-0",
        ),
        pytest.param(
            {"Timeout": 901},
            "ValidationException",
            bound_message("timeout", 901, "less", 900),
            id="t-901",
        ),
        pytest.param(
            {"EphemeralStorage": {"Size": 100}},
            "ValidationException",
            bound_message("ephemeralStorage.size", 100, "greater", 512),
            id="tmp-100",
        ),
        pytest.param(
            {"EphemeralStorage": {"Size": 20000}},
            "ValidationException",
            bound_message("ephemeralStorage.size", 20000, "less", 10240),
            id="tmp-20000",
        ),
        pytest.param(
            {
                "Environment": {
                    "Variables": {"AWS_REGION": "x", "OK_KEY": "1", "AWS_LAMBDA_RUNTIME_API": "y"}
                }
            },
            "InvalidParameterValueException",
            RESERVED_MESSAGE,
            id="reserved-env",
        ),
        pytest.param(
            {"Environment": {"Variables": {"_HANDLER": "x"}}},
            "ValidationException",
            "1 validation error detected: Value at 'environment.variables' failed to satisfy "
            "constraint: Map keys must satisfy constraint: [Member must satisfy regular "
            "expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            id="env-key-pattern",
        ),
        pytest.param({"Role": "not-a-role"}, "ValidationException", None, id="role"),
    ],
)
def test_create_function_validation(
    unchecked: Any, overrides: dict[str, Any], code: str, message: str | None
) -> None:
    """CreateFunction refuses each invalid setting with AWS's code, HTTP 400 and message."""
    params: dict[str, Any] = {
        "FunctionName": unique(),
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})},
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    with refused(code, 400, message):
        unchecked.create_function(**params)
    if "FunctionName" not in overrides:
        with refused("ResourceNotFoundException", 404):
            unchecked.get_function(FunctionName=params["FunctionName"])


def test_limits_themselves_are_accepted(lam: Any, new_function: Any) -> None:
    """The largest memory, timeout, /tmp, environment and the 64-character name are valid."""
    name = unique() + "n" * (64 - len(unique()))
    assert len(name) == 64
    variables = {"ALPHA": "x" * (4096 - len('{"ALPHA":""}'))}
    created = new_function(
        FunctionName=name,
        MemorySize=10240,
        Timeout=900,
        EphemeralStorage={"Size": 10240},
        Environment={"Variables": variables},
    )
    assert (created["MemorySize"], created["Timeout"]) == (10240, 900)
    assert created["EphemeralStorage"] == {"Size": 10240}
    assert created["Environment"] == {"Variables": variables}
    lam.delete_function(FunctionName=name)


def test_runtime_messages(lam: Any, new_function: Any) -> None:
    """An unknown runtime gets the enum message; a deprecated one the "no longer supported" one."""
    with refused("InvalidParameterValueException", 400) as error:
        new_function(Runtime="python9.9")
    assert error["Message"].startswith(
        "Value python9.9 at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        "value set: [python3.9, "
    )
    assert error["Message"].endswith("] or be a valid ARN")
    with refused("InvalidParameterValueException", 400) as error:
        new_function(Runtime="python3.7")
    assert error["Message"].startswith(
        "The runtime parameter of python3.7 is no longer supported for creating or updating AWS "
        "Lambda functions. We recommend you use "
    )
    assert error["Message"].endswith(" while creating or updating functions.")


def test_environment_over_4kb_is_refused(lam: Any, new_function: Any) -> None:
    """Variables whose JSON is over 4 KB are refused on create and on update."""
    big = {"Variables": {"ALPHA": "x" * 2100, "BETA": "y" * 2100}}
    prefix = (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: "
    )
    with refused("InvalidParameterValueException", 400) as error:
        new_function(Environment=big)
    assert error["Message"].startswith(prefix)
    name = new_function(Environment={"Variables": {"ALPHA": "x" * 2000}})["FunctionName"]
    with refused("InvalidParameterValueException", 400) as error:
        lam.update_function_configuration(FunctionName=name, Environment=big)
    assert error["Message"].startswith(prefix)
    with refused("InvalidParameterValueException", 400, RESERVED_MESSAGE):
        lam.update_function_configuration(
            FunctionName=name,
            Environment={"Variables": {"AWS_REGION": "x", "AWS_LAMBDA_RUNTIME_API": "y"}},
        )
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Environment"] == {"Variables": {"ALPHA": "x" * 2000}}


def test_update_function_configuration_validation(unchecked: Any, new_function: Any) -> None:
    """UpdateFunctionConfiguration applies the same range checks and changes nothing on failure."""
    name = new_function()["FunctionName"]
    with refused("ValidationException", 400, bound_message("memorySize", 64, "greater", 128)):
        unchecked.update_function_configuration(FunctionName=name, MemorySize=64)
    with refused("ValidationException", 400, bound_message("timeout", 901, "less", 900)):
        unchecked.update_function_configuration(FunctionName=name, Timeout=901)
    with refused("InvalidParameterValueException", 400):
        unchecked.update_function_configuration(FunctionName=name, Runtime="python2.7")
    config = unchecked.get_function_configuration(FunctionName=name)
    assert (config["MemorySize"], config["Timeout"], config["Runtime"]) == (128, 3, "python3.11")


def _zip_with_link(name: str, target: str) -> bytes:
    return make_zip(
        {"app.py": "def handler(e, c):\n    return 1\n", name: target}, {name: 0o120777}
    )


def _huge_zip() -> bytes:
    """251 MB of zeros, deflated to a few hundred KB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("app.py", "def handler(e, c):\n    return 1\n")
        with archive.open("big.bin", "w") as out:
            chunk = bytes(1 << 20)
            for _ in range(251):
                out.write(chunk)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("package", "message"),
    [
        pytest.param(b"PK\x03\x04 this is not a zip at all", CORRUPT, id="corrupt"),
        pytest.param(make_zip({"app.py": "x = 1\n"})[:-30], CORRUPT, id="truncated"),
        pytest.param(make_zip({"app.py": "x = 1\n", "../evil": "owned\n"}), CORRUPT, id="dot-dot"),
        pytest.param(make_zip({"/etc/evil": "owned\n"}), CORRUPT, id="absolute"),
        pytest.param(_zip_with_link("link", "../../etc/passwd"), CORRUPT, id="symlink-out"),
        pytest.param(_zip_with_link("link", "/etc/passwd"), CORRUPT, id="symlink-absolute"),
    ],
)
def test_bad_packages_are_refused(
    lam: Any, new_function: Any, package: bytes, message: str
) -> None:
    """Unreadable zips and entries escaping the package root are InvalidParameterValue, 400."""
    with refused("InvalidParameterValueException", 400, message):
        lam.create_function(
            FunctionName=unique(),
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": package},
        )
    name = new_function()["FunctionName"]
    with refused("InvalidParameterValueException", 400, message):
        lam.update_function_code(FunctionName=name, ZipFile=package)


def test_a_symlink_inside_the_package_is_accepted(lam: Any, new_function: Any) -> None:
    """A symlink that stays inside the package is kept, and the function runs through it."""
    fn = new_function(
        files={"real.py": "def handler(e, c):\n    return 'via link'\n", "app.py": "real.py"},
        modes={"app.py": 0o120777},
    )
    assert invoke_json(lam, fn["FunctionName"], {})[1] == "via link"


def test_unzipped_size_over_250mb_is_refused(lam: Any, new_function: Any) -> None:
    """A small zip that would unpack to 251 MB is refused with AWS's unzipped-size message."""
    package = _huge_zip()
    assert len(package) < 1024 * 1024
    message = "Unzipped size must be smaller than 262144000 bytes"
    with refused("InvalidParameterValueException", 400, message):
        new_function(files={}, Code={"ZipFile": package})
    name = new_function()["FunctionName"]
    with refused("InvalidParameterValueException", 400, message):
        lam.update_function_code(FunctionName=name, ZipFile=package)


def test_a_request_over_70167211_bytes_is_413(lam: Any) -> None:
    """A CreateFunction body over 70167211 bytes is 413 RequestEntityTooLargeException."""
    with refused(
        "RequestEntityTooLargeException",
        413,
        "Request must be smaller than 70167211 bytes for the CreateFunction operation",
    ):
        lam.create_function(
            FunctionName=unique(),
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": bytes(52_700_000)},
        )


def test_a_zip_over_50mb_is_413(lam: Any, new_function: Any) -> None:
    """A zip over 52428800 bytes whose request is under the body limit is still 413."""
    name = new_function()["FunctionName"]
    with refused("RequestEntityTooLargeException", 413):
        lam.update_function_code(FunctionName=name, ZipFile=bytes(52_428_801))
