"""Layers through boto3: publishing, finding, listing, deleting and sharing layer versions, and
functions that use them, each answered as AWS Lambda answers it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from lambdad.control.model import FunctionConfig, FunctionLayer
from lambdad.invoke.service import spec_of
from tests.conftest import ROLE, Server, invoke_json, make_zip, refused, unique

ACCOUNT = "000000000000"
REGION = "us-east-1"
LAYER_PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:"
NOT_FOUND = "The resource you requested does not exist."
CORRUPT = "Could not unzip uploaded file. Please check your file, then try to upload again."
MAX_UNZIPPED = 262_144_000

Publish = Callable[..., dict[str, Any]]


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def layer_zip(tag: str = "one") -> bytes:
    return make_zip({"python/helper.py": f"TAG = {tag!r}\n"})


@pytest.fixture
def publish(lam: Any) -> Publish:
    """Publish a layer version; ``LayerName`` defaults to a new unique name."""

    def run(name: str | None = None, package: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
        return dict(
            lam.publish_layer_version(
                LayerName=name or unique("layer"),
                Content={"ZipFile": package if package is not None else layer_zip()},
                **kwargs,
            )
        )

    return run


def versions_of(client: Any, name: str, **kwargs: Any) -> list[int]:
    pages = client.get_paginator("list_layer_versions").paginate(LayerName=name, **kwargs)
    return [v["Version"] for p in pages for v in p["LayerVersions"]]


def listed_layers(client: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Every ListLayers item by layer name, over all pages."""
    pages = client.get_paginator("list_layers").paginate(**kwargs)
    return {item["LayerName"]: item for p in pages for item in p["Layers"]}


# ----------------------------------------------------------------------------- publish


def test_publish_returns_the_layer_version(lam: Any, publish: Publish) -> None:
    """PublishLayerVersion answers 201 with ARNs, version 1, content, dates and metadata."""
    name = unique("layer")
    package = layer_zip()
    published = publish(
        name,
        package,
        Description="helpers",
        CompatibleRuntimes=["python3.11", "python3.12"],
        CompatibleArchitectures=["x86_64", "arm64"],
        LicenseInfo="MIT",
    )
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert published["LayerArn"] == LAYER_PREFIX + name
    assert published["LayerVersionArn"] == f"{LAYER_PREFIX}{name}:1"
    assert published["Version"] == 1
    assert published["Description"] == "helpers"
    assert published["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert published["CompatibleArchitectures"] == ["x86_64", "arm64"]
    assert published["LicenseInfo"] == "MIT"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", published["CreatedDate"])
    content = published["Content"]
    assert (content["CodeSha256"], content["CodeSize"]) == (sha256_b64(package), len(package))
    with urllib.request.urlopen(content["Location"], timeout=30) as download:
        assert download.read() == package


def test_publish_leaves_out_unset_fields(publish: Publish) -> None:
    """A version published with content only has no description, license or compatibility."""
    published = publish()
    for key in ("Description", "LicenseInfo", "CompatibleRuntimes", "CompatibleArchitectures"):
        assert key not in published


def test_version_numbers_are_never_reused(lam: Any, publish: Publish) -> None:
    """Versions count up from 1 per layer, and deleting versions never frees their numbers."""
    name = unique("layer")
    other = unique("layer")
    assert [publish(name)["Version"] for _ in range(3)] == [1, 2, 3]
    assert publish(other)["Version"] == 1, "each layer counts on its own"
    lam.delete_layer_version(LayerName=name, VersionNumber=3)
    assert publish(name)["Version"] == 4
    for version in (1, 2, 4):
        lam.delete_layer_version(LayerName=name, VersionNumber=version)
    assert versions_of(lam, name) == []
    assert name not in listed_layers(lam)
    assert publish(name)["Version"] == 5


def test_publish_into_a_layer_arn(lam: Any, publish: Publish) -> None:
    """LayerName may be the layer's ARN; the version lands on the same layer."""
    name = unique("layer")
    publish(name)
    assert publish(LAYER_PREFIX + name)["LayerVersionArn"] == f"{LAYER_PREFIX}{name}:2"


@pytest.mark.parametrize(
    ("overrides", "code", "status", "message"),
    [
        pytest.param(
            {"Content": {"S3Bucket": "bucket", "S3Key": "layer.zip"}},
            "InvalidParameterValueException",
            400,
            "lambdad accepts layer content as Content.ZipFile only; S3 locations "
            "(S3Bucket, S3Key, S3ObjectVersion) are not supported.",
            id="s3",
        ),
        pytest.param(
            {"Content": {}}, "InvalidParameterValueException", 400, "Missing Content", id="empty"
        ),
        pytest.param(
            {"Content": {"ZipFile": b"not a zip"}},
            "InvalidParameterValueException",
            400,
            CORRUPT,
            id="corrupt",
        ),
        pytest.param(
            {"CompatibleRuntimes": ["python3.11"] * 16},
            "ValidationException",
            400,
            "1 validation error detected: Value '[" + ", ".join(["python3.11"] * 16) + "]' at "
            "'compatibleRuntimes' failed to satisfy constraint: Member must have length less "
            "than or equal to 15",
            id="runtimes-16",
        ),
        pytest.param(
            {"CompatibleArchitectures": ["x86_64", "arm64", "x86_64"]},
            "ValidationException",
            400,
            "1 validation error detected: Value '[x86_64, arm64, x86_64]' at "
            "'compatibleArchitectures' failed to satisfy constraint: Member must have length "
            "less than or equal to 2",
            id="architectures-3",
        ),
        pytest.param(
            {"CompatibleArchitectures": ["sparc"]},
            "ValidationException",
            400,
            # AWS lists the member's rules and "Member must not be null" (seen in a CloudFormation
            # error quoted in aws-cloudformation/cfn-lint#4428).
            "1 validation error detected: Value '[sparc]' at 'compatibleArchitectures' failed "
            "to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum "
            "value set: [x86_64, arm64], Member must not be null]",
            id="architecture-enum",
        ),
        pytest.param(
            {"Description": "d" * 257},
            "ValidationException",
            400,
            f"1 validation error detected: Value '{'d' * 257}' at 'description' failed to "
            "satisfy constraint: Member must have length less than or equal to 256",
            id="description-257",
        ),
        pytest.param(
            {"LayerName": "bad name"},
            "ValidationException",
            400,
            # The current model's pattern of PublishLayerVersion's LayerName (LayerNameOrArn
            # since botocore 1.44), which AWS quotes.
            "1 validation error detected: Value 'bad name' at 'layerName' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:"
            r"lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
            r"[a-zA-Z0-9-_]{1,140}|[a-zA-Z0-9-_]{1,140})",
            id="name-pattern",
        ),
    ],
)
def test_publish_refuses_bad_input(
    unchecked: Any, overrides: dict[str, Any], code: str, status: int, message: str
) -> None:
    """Bad content or metadata gets AWS's error, and S3 content a clear refusal."""
    params: dict[str, Any] = {"LayerName": unique("layer"), "Content": {"ZipFile": layer_zip()}}
    params.update(overrides)
    with refused(code, status, message):
        unchecked.publish_layer_version(**params)


def test_several_publish_errors_are_reported_together(unchecked: Any) -> None:
    """Two bad fields give one ValidationException with both clauses, as AWS does."""
    with refused("ValidationException", 400) as error:
        unchecked.publish_layer_version(
            LayerName=unique("layer"),
            Content={"ZipFile": layer_zip()},
            CompatibleArchitectures=["sparc"],
            LicenseInfo="l" * 513,
        )
    assert error["Message"].startswith("2 validation errors detected: ")
    assert "'compatibleArchitectures'" in error["Message"]
    assert "'licenseInfo'" in error["Message"]


def test_account_settings_count_layer_code(lam: Any, publish: Publish) -> None:
    """GetAccountSettings' TotalCodeSize includes layer code, as on AWS."""
    before = lam.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    package = make_zip({"python/data.txt": "x" * 5000})
    published = publish(package=package)
    after = lam.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    assert after - before == published["Content"]["CodeSize"]


# ----------------------------------------------------------------------------- get


def test_get_layer_version_by_name_arn_and_version_arn(lam: Any, publish: Publish) -> None:
    """A version is found by layer name, layer ARN, and by its version ARN."""
    name = unique("layer")
    publish(name, Description="first")
    published = publish(name, layer_zip("two"), Description="second")
    for layer in (name, LAYER_PREFIX + name):
        got = lam.get_layer_version(LayerName=layer, VersionNumber=2)
        assert got["Description"] == "second"
        assert got["Content"] == published["Content"]
        assert got["CreatedDate"] == published["CreatedDate"]
    by_arn = lam.get_layer_version_by_arn(Arn=f"{LAYER_PREFIX}{name}:1")
    assert (by_arn["Version"], by_arn["Description"]) == (1, "first")
    assert by_arn["LayerArn"] == LAYER_PREFIX + name


def test_get_missing_layer_versions(unchecked: Any, publish: Publish) -> None:
    """A missing layer or version is 404; a version number below 1 is a 400."""
    name = unique("layer")
    publish(name)
    for layer, version in ((name, 2), (unique("missing"), 1)):
        with refused("ResourceNotFoundException", 404, NOT_FOUND):
            unchecked.get_layer_version(LayerName=layer, VersionNumber=version)
        with refused("ResourceNotFoundException", 404, NOT_FOUND):
            unchecked.get_layer_version_by_arn(Arn=f"{LAYER_PREFIX}{layer}:{version}")
    with refused("InvalidParameterValueException", 400, "Layer Version Cannot be less than 1"):
        unchecked.get_layer_version(LayerName=name, VersionNumber=0)
    with refused("AccessDeniedException", 403):  # another account's: AWS checks access first
        unchecked.get_layer_version_by_arn(Arn=f"arn:aws:lambda:{REGION}:123456789012:layer:x:1")


def test_get_layer_version_by_arn_needs_a_version_arn(unchecked: Any) -> None:
    """An ARN without a version is a ValidationException naming the expected pattern."""
    arn = f"{LAYER_PREFIX}some-layer"
    with refused(
        "ValidationException",
        400,
        f"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}"
        r"((-gov)|(-iso(b?)))?-[a-z]+-\d{1}:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+",
    ):
        unchecked.get_layer_version_by_arn(Arn=arn)


def test_layers_belong_to_a_region(server: Server, publish: Publish) -> None:
    """A layer published in one region is neither listed nor found in another."""
    name = unique("layer")
    publish(name)
    west = server.client(region="us-west-2")
    try:
        with refused("ResourceNotFoundException", 404, NOT_FOUND):
            west.get_layer_version(LayerName=name, VersionNumber=1)
        assert versions_of(west, name) == []
        assert name not in listed_layers(west)
        assert (
            west.publish_layer_version(LayerName=name, Content={"ZipFile": layer_zip()})[
                "LayerVersionArn"
            ]
            == f"arn:aws:lambda:us-west-2:{ACCOUNT}:layer:{name}:1"
        )
    finally:
        west.close()


# ----------------------------------------------------------------------------- list


def test_list_layer_versions_newest_first_with_filters(lam: Any, publish: Publish) -> None:
    """ListLayerVersions lists newest first and filters by runtime and architecture."""
    name = unique("layer")
    publish(name, CompatibleRuntimes=["python3.11"], CompatibleArchitectures=["x86_64"])
    publish(name, CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["arm64"])
    publish(name, CompatibleRuntimes=["python3.11", "python3.12"])
    publish(name)
    items = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in items] == [4, 3, 2, 1]
    assert items[1] == {
        "LayerVersionArn": f"{LAYER_PREFIX}{name}:3",
        "Version": 3,
        "CreatedDate": items[1]["CreatedDate"],
        "CompatibleRuntimes": ["python3.11", "python3.12"],
    }
    assert versions_of(lam, name, CompatibleRuntime="python3.11") == [3, 1]
    assert versions_of(lam, name, CompatibleArchitecture="arm64") == [2]
    assert (
        versions_of(lam, name, CompatibleRuntime="python3.12", CompatibleArchitecture="x86_64")
        == []
    )
    assert versions_of(lam, LAYER_PREFIX + name) == [4, 3, 2, 1]
    assert versions_of(lam, unique("missing")) == [], "an unknown layer has no versions"


def test_list_layer_versions_pages(lam: Any, publish: Publish) -> None:
    """Marker and MaxItems page through the versions, each exactly once."""
    name = unique("layer")
    for _ in range(5):
        publish(name)
    first = lam.list_layer_versions(LayerName=name, MaxItems=2)
    assert [v["Version"] for v in first["LayerVersions"]] == [5, 4]
    second = lam.list_layer_versions(LayerName=name, MaxItems=2, Marker=first["NextMarker"])
    assert [v["Version"] for v in second["LayerVersions"]] == [3, 2]
    third = lam.list_layer_versions(LayerName=name, MaxItems=2, Marker=second["NextMarker"])
    assert [v["Version"] for v in third["LayerVersions"]] == [1]
    assert "NextMarker" not in third
    assert versions_of(lam, name, PaginationConfig={"PageSize": 3}) == [5, 4, 3, 2, 1]


def test_list_layers_shows_the_latest_matching_version(lam: Any, publish: Publish) -> None:
    """ListLayers gives each layer's newest version that matches the filters, or leaves it out."""
    py = unique("layer")
    node = unique("layer")
    publish(py, CompatibleRuntimes=["python3.11"], CompatibleArchitectures=["x86_64"])
    publish(py, CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["arm64"])
    publish(node, CompatibleRuntimes=["nodejs20.x"], CompatibleArchitectures=["x86_64"])
    everything = listed_layers(lam)
    assert everything[py] == {
        "LayerName": py,
        "LayerArn": LAYER_PREFIX + py,
        "LatestMatchingVersion": {
            "LayerVersionArn": f"{LAYER_PREFIX}{py}:2",
            "Version": 2,
            "CreatedDate": everything[py]["LatestMatchingVersion"]["CreatedDate"],
            "CompatibleRuntimes": ["python3.12"],
            "CompatibleArchitectures": ["arm64"],
        },
    }
    assert everything[node]["LatestMatchingVersion"]["Version"] == 1
    python311 = listed_layers(lam, CompatibleRuntime="python3.11")
    assert python311[py]["LatestMatchingVersion"]["Version"] == 1
    assert node not in python311
    x86 = listed_layers(lam, CompatibleArchitecture="x86_64")
    assert (x86[py]["LatestMatchingVersion"]["Version"], node in x86) == (1, True)
    assert py not in listed_layers(
        lam, CompatibleRuntime="python3.12", CompatibleArchitecture="x86_64"
    )


def test_list_layers_pages(lam: Any, publish: Publish) -> None:
    """ListLayers pages with Marker/MaxItems, in layer-name order, each layer once."""
    mine = {publish()["LayerArn"].rsplit(":", 1)[1] for _ in range(4)}
    pages = list(lam.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 2
    assert all(len(p["Layers"]) <= 2 for p in pages)
    assert "NextMarker" not in pages[-1]
    names = [item["LayerName"] for p in pages for item in p["Layers"]]
    assert names == sorted(set(names))
    assert mine <= set(names)


def test_list_parameters_are_validated(unchecked: Any, publish: Publish) -> None:
    """MaxItems outside 1-50, an unknown runtime or architecture are ValidationExceptions."""
    name = publish()["LayerArn"].rsplit(":", 1)[1]
    for call, kwargs in (
        (unchecked.list_layers, {}),
        (unchecked.list_layer_versions, {"LayerName": name}),
    ):
        for size, side, limit in ((0, "greater", 1), (51, "less", 50)):
            with refused(
                "ValidationException",
                400,
                f"1 validation error detected: Value '{size}' at 'maxItems' failed to satisfy "
                f"constraint: Member must have value {side} than or equal to {limit}",
            ):
                call(MaxItems=size, **kwargs)
        with refused("ValidationException", 400) as error:
            call(CompatibleRuntime="cobol85", **kwargs)
        assert error["Message"].startswith(
            "1 validation error detected: Value 'cobol85' at 'compatibleRuntime' failed to "
            "satisfy constraint: Member must satisfy enum value set: [nodejs, "
        )
        with refused(
            "ValidationException",
            400,
            "1 validation error detected: Value 'sparc' at 'compatibleArchitecture' failed to "
            "satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]",
        ):
            call(CompatibleArchitecture="sparc", **kwargs)
        with refused("InvalidParameterValueException", 400, "Invalid marker value."):
            call(Marker="not-a-marker", **kwargs)


# ----------------------------------------------------------------------------- delete


def test_delete_layer_version_is_idempotent(lam: Any, publish: Publish) -> None:
    """DeleteLayerVersion answers 204, for a missing version or layer as well."""
    name = unique("layer")
    publish(name)
    publish(name)
    deleted = lam.delete_layer_version(LayerName=LAYER_PREFIX + name, VersionNumber=1)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with refused("ResourceNotFoundException", 404, NOT_FOUND):
        lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert versions_of(lam, name) == [2]
    for layer, version in ((name, 1), (name, 9), (unique("missing"), 1)):
        again = lam.delete_layer_version(LayerName=layer, VersionNumber=version)
        assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


# ----------------------------------------------------------------------------- permissions


def test_layer_version_permissions(lam: Any, publish: Publish) -> None:
    """Add, read and remove grants; each change makes a new policy revision."""
    name = unique("layer")
    publish(name)
    arn = f"{LAYER_PREFIX}{name}:1"
    everyone = lam.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="everyone",
        Action="lambda:GetLayerVersion",
        Principal="*",
    )
    assert everyone["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(everyone["Statement"]) == {
        "Sid": "everyone",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "lambda:GetLayerVersion",
        "Resource": arn,
    }
    account = lam.add_layer_version_permission(
        LayerName=LAYER_PREFIX + name,
        VersionNumber=1,
        StatementId="xaccount",
        Action="lambda:GetLayerVersion",
        Principal="223456789012",
        RevisionId=everyone["RevisionId"],
    )
    assert json.loads(account["Statement"])["Principal"] == {
        "AWS": "arn:aws:iam::223456789012:root"
    }
    org = lam.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="org",
        Action="lambda:GetLayerVersion",
        Principal="*",
        OrganizationId="o-abcdefghij",
    )
    assert json.loads(org["Statement"])["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}
    }
    assert len({everyone["RevisionId"], account["RevisionId"], org["RevisionId"]}) == 3
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == org["RevisionId"]
    document = json.loads(policy["Policy"])
    assert (document["Version"], document["Id"]) == ("2012-10-17", "default")
    assert [s["Sid"] for s in document["Statement"]] == ["everyone", "xaccount", "org"]
    assert document["Statement"][1] == json.loads(account["Statement"])
    removed = lam.remove_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="xaccount"
    )
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    after = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert [s["Sid"] for s in json.loads(after["Policy"])["Statement"]] == ["everyone", "org"]
    assert after["RevisionId"] != policy["RevisionId"]
    for sid in ("everyone", "org"):
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId=sid)
    with refused(
        "ResourceNotFoundException", 404, "No policy is associated with the given resource."
    ):
        lam.get_layer_version_policy(LayerName=name, VersionNumber=1)


def test_permission_conflicts_and_revisions(lam: Any, publish: Publish) -> None:
    """A statement id used twice is 409; a stale RevisionId is 412; an unknown one is 404."""
    name = unique("layer")
    publish(name)
    grant = {
        "LayerName": name,
        "VersionNumber": 1,
        "StatementId": "share",
        "Action": "lambda:GetLayerVersion",
        "Principal": "*",
    }
    first = lam.add_layer_version_permission(**grant)
    with refused(
        "ResourceConflictException",
        409,
        "The statement id (share) provided already exists. Please provide a new statement id, "
        "or remove the existing statement.",
    ):
        lam.add_layer_version_permission(**grant)
    stale = (
        "The Revision Id provided does not match the latest Revision Id. Call the GetLayerPolicy "
        "API to retrieve the latest Revision Id"
    )
    lam.add_layer_version_permission(**{**grant, "StatementId": "more"})
    with refused("PreconditionFailedException", 412, stale):
        lam.add_layer_version_permission(
            **{**grant, "StatementId": "again", "RevisionId": first["RevisionId"]}
        )
    with refused("PreconditionFailedException", 412, stale):
        lam.remove_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="share", RevisionId=first["RevisionId"]
        )
    with refused(
        "ResourceNotFoundException", 404, "Statement nope is not found in resource policy."
    ):
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="nope")


def test_permissions_on_missing_versions(lam: Any, publish: Publish) -> None:
    """Policy calls on a version that does not exist name it: "Layer version <arn> ..."."""
    name = unique("layer")
    publish(name)
    missing = f"Layer version {LAYER_PREFIX}{name}:2 does not exist."
    with refused("ResourceNotFoundException", 404, missing):
        lam.add_layer_version_permission(
            LayerName=name,
            VersionNumber=2,
            StatementId="s",
            Action="lambda:GetLayerVersion",
            Principal="*",
        )
    with refused("ResourceNotFoundException", 404, missing):
        lam.get_layer_version_policy(LayerName=name, VersionNumber=2)
    with refused("ResourceNotFoundException", 404, missing):
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=2, StatementId="s")
    with refused(
        "ResourceNotFoundException", 404, "No policy is associated with the given resource."
    ):
        lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    with refused(
        "ResourceNotFoundException", 404, "No policy is associated with the given resource."
    ):
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="s")


@pytest.mark.parametrize(
    ("field", "value", "shown", "rule"),
    [
        ("Action", "lambda:InvokeFunction", "action", "lambda:GetLayerVersion"),
        ("Principal", "someone", "principal", r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root"),
        ("StatementId", "bad id", "statementId", r"([a-zA-Z0-9-_]+)"),
        ("OrganizationId", "org-1", "organizationId", r"o-[a-z0-9]{10,32}"),
    ],
)
def test_permission_fields_are_validated(
    unchecked: Any, publish: Publish, field: str, value: str, shown: str, rule: str
) -> None:
    """Each statement field is checked against the model's pattern (ValidationException)."""
    name = unique("layer")
    publish(name)
    grant = {
        "LayerName": name,
        "VersionNumber": 1,
        "StatementId": "s",
        "Action": "lambda:GetLayerVersion",
        "Principal": "*",
        field: value,
    }
    with refused(
        "ValidationException",
        400,
        f"1 validation error detected: Value '{value}' at '{shown}' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {rule}",
    ):
        unchecked.add_layer_version_permission(**grant)


def test_deleting_a_version_deletes_its_policy(lam: Any, publish: Publish) -> None:
    """A deleted version's grants go with it; a later version starts without a policy."""
    name = unique("layer")
    publish(name)
    lam.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="s",
        Action="lambda:GetLayerVersion",
        Principal="*",
    )
    lam.delete_layer_version(LayerName=name, VersionNumber=1)
    with refused(
        "ResourceNotFoundException", 404, f"Layer version {LAYER_PREFIX}{name}:1 does not exist."
    ):
        lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    publish(name)
    with refused("ResourceNotFoundException", 404):
        lam.get_layer_version_policy(LayerName=name, VersionNumber=2)


# ----------------------------------------------------------------------------- functions


def test_function_with_layers(lam: Any, new_function: Any, publish: Publish) -> None:
    """Layers name versions in order; the configuration shows each with its CodeSize."""
    first = publish(package=layer_zip("a"))
    second = publish(package=layer_zip("bb"))
    arns = [second["LayerVersionArn"], first["LayerVersionArn"]]
    created = new_function(Layers=arns)
    expected = [
        {"Arn": second["LayerVersionArn"], "CodeSize": second["Content"]["CodeSize"]},
        {"Arn": first["LayerVersionArn"], "CodeSize": first["Content"]["CodeSize"]},
    ]
    assert created["Layers"] == expected
    name = created["FunctionName"]
    assert lam.get_function(FunctionName=name)["Configuration"]["Layers"] == expected
    published = lam.publish_version(FunctionName=name)
    assert published["Layers"] == expected
    updated = lam.update_function_configuration(FunctionName=name, Layers=[arns[1]])
    assert updated["Layers"] == expected[1:]
    assert updated["RevisionId"] != created["RevisionId"]
    cleared = lam.update_function_configuration(FunctionName=name, Layers=[])
    assert "Layers" not in cleared
    kept = lam.get_function_configuration(FunctionName=name, Qualifier=published["Version"])
    assert kept["Layers"] == expected, "a published version keeps its layers"
    untouched = lam.update_function_configuration(FunctionName=name, Timeout=5)
    assert "Layers" not in untouched


def test_function_layers_must_exist(
    lam: Any, unchecked: Any, new_function: Any, publish: Publish
) -> None:
    """A missing version, another region's layer or a non-version ARN is refused."""
    layer = publish()
    missing = layer["LayerVersionArn"].rsplit(":", 1)[0] + ":7"
    with refused("InvalidParameterValueException", 400, f"Layer version {missing} does not exist."):
        new_function(Layers=[layer["LayerVersionArn"], missing])
    name = new_function()["FunctionName"]
    with refused("InvalidParameterValueException", 400, f"Layer version {missing} does not exist."):
        lam.update_function_configuration(FunctionName=name, Layers=[missing])
    elsewhere = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:x:1"
    with refused(
        "InvalidParameterValueException",
        400,
        "Layers are not in the same region as the function. Layers are expected to be in region "
        f"{REGION}.",
    ):
        lam.update_function_configuration(FunctionName=name, Layers=[elsewhere])
    unversioned = layer["LayerArn"]
    with refused("ValidationException", 400) as error:
        unchecked.update_function_configuration(FunctionName=name, Layers=[unversioned])
    assert error["Message"].startswith(
        f"1 validation error detected: Value '[{unversioned}]' at 'layers' failed to satisfy "
        "constraint: Member must satisfy constraint: [Member must have length less than or "
        "equal to 2048"  # the current model's LayerVersionArn
    )
    assert "Layers" not in lam.get_function_configuration(FunctionName=name)


def test_function_layer_limits(lam: Any, new_function: Any, publish: Publish) -> None:
    """At most 5 layers, and never two versions of one layer."""
    arns = [publish()["LayerVersionArn"] for _ in range(6)]
    with refused("InvalidParameterValueException", 400, "Cannot reference more than 5 layers."):
        new_function(Layers=arns)
    assert len(new_function(Layers=arns[:5])["Layers"]) == 5
    name = unique("layer")
    one = publish(name)["LayerVersionArn"]
    two = publish(name)["LayerVersionArn"]
    with refused(
        "InvalidParameterValueException",
        400,
        "Two different versions of the same layer are not allowed to be referenced in the same "
        f"function. {one} and {two} are versions of the same layer.",
    ):
        new_function(Layers=[one, arns[0], two])


@pytest.fixture(scope="module")
def big_zips() -> tuple[bytes, bytes]:
    """A 140 MB and a 130 MB (unzipped) package: each fits alone, together they do not."""
    return make_zip({"big.bin": bytes(140_000_000)}), make_zip(
        {"app.py": "def handler(e, c):\n    return e\n", "data.bin": bytes(130_000_000)}
    )


def test_code_and_layers_must_fit_250_mb(
    lam: Any, new_function: Any, publish: Publish, big_zips: tuple[bytes, bytes]
) -> None:
    """Code plus layers over 262144000 bytes unzipped is refused on create and on each update."""
    layer_package, code_package = big_zips
    big_layer = publish(package=layer_package)["LayerVersionArn"]
    small_layer = publish()["LayerVersionArn"]
    small_code = make_zip({"app.py": "def handler(e, c):\n    return e\n"})
    total = 130_000_000 + len("def handler(e, c):\n    return e\n") + 140_000_000
    too_big = (
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        f"bytes. The actual size is {total} bytes."
    )
    with refused("InvalidParameterValueException", 400, too_big):
        new_function(Code={"ZipFile": code_package}, Layers=[big_layer])
    with_layer = new_function(Layers=[big_layer])["FunctionName"]
    with refused("InvalidParameterValueException", 400, too_big):
        lam.update_function_code(FunctionName=with_layer, ZipFile=code_package)
    assert lam.get_function_configuration(FunctionName=with_layer)["CodeSize"] == len(small_code)
    big_code = new_function(Code={"ZipFile": code_package}, Layers=[small_layer])["FunctionName"]
    with refused("InvalidParameterValueException", 400, too_big):
        lam.update_function_configuration(FunctionName=big_code, Layers=[big_layer])
    assert lam.get_function_configuration(FunctionName=big_code)["Layers"][0]["Arn"] == small_layer


def test_deleting_a_layer_version_keeps_functions_working(
    lam: Any, new_function: Any, publish: Publish
) -> None:
    """A function keeps a deleted layer version: its configuration, invokes and updates."""
    layer = publish()
    arn = layer["LayerVersionArn"]
    name = new_function(Layers=[arn])["FunctionName"]
    lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Layers"] == [{"Arn": arn, "CodeSize": layer["Content"]["CodeSize"]}]
    response, body = invoke_json(lam, name, {"ok": True})
    assert "FunctionError" not in response
    assert body == {"ok": True}
    updated = lam.update_function_configuration(FunctionName=name, Timeout=9)
    assert updated["Layers"] == config["Layers"]
    with urllib.request.urlopen(layer["Content"]["Location"], timeout=30) as download:
        assert download.read() == layer_zip(), "the content stays"
    with refused("InvalidParameterValueException", 400, f"Layer version {arn} does not exist."):
        new_function(Layers=[arn])


def test_the_runtime_gets_the_layer_keys_in_order() -> None:
    """The invoke path hands the runtime the layers' blob keys, in the function's order."""
    config = FunctionConfig(
        name="fn",
        version="$LATEST",
        runtime="python3.11",
        role=ROLE,
        handler="app.handler",
        code_key="c0de",
        code_sha256="",
        code_size=1,
        layers=(FunctionLayer("arn:b", 1, "bbbb"), FunctionLayer("arn:a", 1, "aaaa")),
    )
    assert spec_of(config).layer_keys == ("bbbb", "aaaa")
    assert FunctionConfig.from_doc(config.to_doc()) == config
