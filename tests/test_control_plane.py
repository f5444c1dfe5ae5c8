"""The control plane through boto3: functions, versions, aliases, tags, account settings and
the validation errors, each answered as AWS Lambda answers it."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.conftest import (
    IDENTITY,
    ROLE,
    Server,
    assert_environment_gone,
    bound_message,
    create_function,
    environment_pids,
    invoke_json,
    make_zip,
    refused,
    unique,
)

ACCOUNT = "000000000000"
REGION = "us-east-1"
PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
CORRUPT = "Could not unzip uploaded file. Please check your file, then try to upload again."

#: Reports what a version was built with, so a test can tell which one ran.
REPORTER = """
import os

def handler(event, context):
    return {
        "tag": TAG,
        "greeting": os.environ.get("GREETING"),
        "memory": int(context.memory_limit_in_mb),
        "remaining": context.get_remaining_time_in_millis(),
        "version": context.function_version,
    }

def other(event, context):
    return {"tag": "other-handler"}
"""


def reporter(tag: str) -> str:
    return f"TAG = {tag!r}\n" + REPORTER


def reporter_zip(tag: str) -> bytes:
    return make_zip({"app.py": reporter(tag)})


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def tag_of(client: Any, name: str, **kwargs: Any) -> tuple[str, str]:
    """(the handler's tag, ExecutedVersion) of one invoke."""
    response, body = invoke_json(client, name, {}, **kwargs)
    assert "FunctionError" not in response, body
    return body["tag"], response["ExecutedVersion"]


# ----------------------------------------------------------------------------- CreateFunction


def test_create_function_returns_the_full_configuration(lam: Any) -> None:
    """CreateFunction answers 201 with the configuration and AWS's defaults filled in."""
    name = unique()
    package = reporter_zip("v1")
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": package},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == PREFIX + name
    assert created["Runtime"] == "python3.11"
    assert created["Role"] == ROLE
    assert created["Handler"] == "app.handler"
    assert created["CodeSha256"] == sha256_b64(package)
    assert created["CodeSize"] == len(package)
    assert created["Description"] == ""
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["Architectures"] == ["x86_64"]
    assert created["PackageType"] == "Zip"
    assert created["TracingConfig"] == {"Mode": "PassThrough"}
    assert created["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    assert created["Version"] == "$LATEST"
    # AWS answers a new function Pending ("being created"), without LastUpdateStatus.
    assert created["State"] == "Pending"
    assert created["StateReasonCode"] == "Creating"
    assert "LastUpdateStatus" not in created
    assert str(uuid.UUID(created["RevisionId"])) == created["RevisionId"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", created["LastModified"])


def test_create_with_publish_returns_version_1(lam: Any, new_function: Any) -> None:
    """Publish=True publishes at once: the answer is version 1, under the function's
    unqualified ARN as AWS answers it."""
    created = new_function(reporter("v1"), Publish=True)
    name = created["FunctionName"]
    assert created["Version"] == "1"
    assert created["FunctionArn"] == f"{PREFIX}{name}"
    assert tag_of(lam, name, Qualifier="1") == ("v1", "1")


def test_duplicate_name_is_a_conflict(lam: Any, new_function: Any) -> None:
    """A second CreateFunction with the same name is 409 ResourceConflictException."""
    name = new_function()["FunctionName"]
    with refused("ResourceConflictException", 409, f"Function already exist: {name}"):
        new_function(FunctionName=name)


def test_waiters_succeed(lam: Any, new_function: Any) -> None:
    """boto3's function_active_v2 and function_updated_v2 waiters return for a new function."""
    name = new_function()["FunctionName"]
    fast = {"Delay": 1, "MaxAttempts": 5}
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=fast)
    lam.update_function_configuration(FunctionName=name, Timeout=10)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("published_version_active").wait(FunctionName=name, WaiterConfig=fast)


# ----------------------------------------------------------------------------- GetFunction


def test_get_function_returns_configuration_code_and_tags(lam: Any) -> None:
    """GetFunction has the configuration, a Code.Location serving the same zip, and the tags."""
    name = unique()
    package = reporter_zip("v1")
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": package},
        Tags={"team": "blue"},
    )
    got = lam.get_function(FunctionName=name)
    config = got["Configuration"]
    for key in ("FunctionArn", "CodeSha256", "CodeSize", "Handler", "Runtime"):
        assert config[key] == created[key]
    # As on AWS, the function is Active once created, under a new RevisionId.
    assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful")
    assert config["RevisionId"] != created["RevisionId"]
    assert got["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as download:
        assert download.read() == package
    assert got["Tags"] == {"team": "blue"}


def test_get_function_accepts_names_and_arns(lam: Any, new_function: Any) -> None:
    """A function is found by name, partial ARN, full ARN and ARN with a qualifier."""
    created = new_function(reporter("v1"), Publish=True)
    name = created["FunctionName"]
    for given in (name, f"{ACCOUNT}:function:{name}", PREFIX + name):
        assert lam.get_function(FunctionName=given)["Configuration"]["Version"] == "$LATEST"
        assert lam.get_function_configuration(FunctionName=given)["FunctionName"] == name
    for given in (f"{PREFIX}{name}:1", f"{ACCOUNT}:function:{name}:1", f"{name}:1"):
        config = lam.get_function(FunctionName=given)["Configuration"]
        assert (config["Version"], config["FunctionArn"]) == ("1", f"{PREFIX}{name}:1")
    missing = unique("missing")
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{missing}"):
        lam.get_function(FunctionName=PREFIX + missing)
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:7"):
        lam.get_function(FunctionName=f"{name}:7")


def test_get_function_with_a_qualifier(lam: Any, new_function: Any) -> None:
    """Qualifier selects a version, an alias's version or $LATEST, named in FunctionArn."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"))
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    v2_sha = sha256_b64(reporter_zip("v2"))
    v1_sha = sha256_b64(reporter_zip("v1"))
    cases = {"1": ("1", v1_sha), "live": ("1", v1_sha), "$LATEST": ("$LATEST", v2_sha)}
    for qualifier, (version, sha) in cases.items():
        for call in (lam.get_function, lam.get_function_configuration):
            got = call(FunctionName=name, Qualifier=qualifier)
            config = got.get("Configuration", got)
            assert config["Version"] == version
            assert config["CodeSha256"] == sha
            assert config["FunctionArn"] == f"{PREFIX}{name}:{qualifier}"
    with urllib.request.urlopen(
        lam.get_function(FunctionName=name, Qualifier="1")["Code"]["Location"], timeout=30
    ) as download:
        assert download.read() == reporter_zip("v1")
    for qualifier in ("3", "nope"):
        with refused(
            "ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:{qualifier}"
        ):
            lam.get_function_configuration(FunctionName=name, Qualifier=qualifier)
        with refused(
            "ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:{qualifier}"
        ):
            lam.get_function(FunctionName=name, Qualifier=qualifier)


# ----------------------------------------------------------------------------- ListFunctions


def test_list_functions_pages_with_the_paginator(lam: Any, new_function: Any) -> None:
    """ListFunctions pages with Marker/MaxItems; the pages cover every function exactly once."""
    mine = {new_function()["FunctionName"] for _ in range(5)}
    pages = list(lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 3
    assert all(len(p["Functions"]) <= 2 for p in pages)
    assert all("NextMarker" in p for p in pages[:-1])
    assert "NextMarker" not in pages[-1]
    arns = [f["FunctionArn"] for p in pages for f in p["Functions"]]
    assert len(arns) == len(set(arns))
    names = {f["FunctionName"] for p in pages for f in p["Functions"]}
    assert mine <= names
    listed = [f for p in pages for f in p["Functions"] if f["FunctionName"] in mine]
    assert {f["Version"] for f in listed} == {"$LATEST"}
    assert all(f["FunctionArn"] == PREFIX + f["FunctionName"] for f in listed)
    assert all("State" not in f and "LastUpdateStatus" not in f for f in listed)


def test_list_functions_past_the_end_is_an_empty_page(lam: Any, new_function: Any) -> None:
    """A marker past the last function (however far: markers are lambdad's own offsets) is an
    empty page without a NextMarker, never a 5xx."""
    new_function()
    for offset in (10**6, 10**30):
        marker = base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()
        for version in ("ALL", None):
            extra = {"FunctionVersion": version} if version else {}
            page = lam.list_functions(Marker=marker, **extra)
            assert page["Functions"] == []
            assert "NextMarker" not in page


def test_list_functions_all_versions_lists_published_versions(lam: Any, new_function: Any) -> None:
    """FunctionVersion=ALL lists every version of every function, each with its qualified ARN."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    paginator = lam.get_paginator("list_functions")
    everything = [
        f
        for p in paginator.paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 3})
        for f in p["Functions"]
        if f["FunctionName"] == name
    ]
    assert [(f["Version"], f["FunctionArn"]) for f in everything] == [
        (v, f"{PREFIX}{name}:{v}") for v in ("$LATEST", "1", "2")
    ]
    latest_only = [
        f["Version"]
        for p in paginator.paginate()
        for f in p["Functions"]
        if f["FunctionName"] == name
    ]
    assert latest_only == ["$LATEST"]


def test_list_parameters_are_validated(unchecked: Any, new_function: Any) -> None:
    """MaxItems outside 1-10000 and a FunctionVersion other than ALL are ValidationExceptions."""
    name = new_function()["FunctionName"]
    for call, kwargs in (
        (unchecked.list_functions, {}),
        (unchecked.list_versions_by_function, {"FunctionName": name}),
        (unchecked.list_aliases, {"FunctionName": name}),
    ):
        for size, side, limit in ((0, "greater", 1), (10001, "less", 10000)):
            with refused("ValidationException", 400, bound_message("maxItems", size, side, limit)):
                call(MaxItems=size, **kwargs)
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: Value 'SOME' at 'functionVersion' failed to satisfy "
        "constraint: Member must satisfy enum value set: [ALL]",
    ):
        unchecked.list_functions(FunctionVersion="SOME")


# ----------------------------------------------------------------------------- updates


def test_update_function_code_runs_the_new_code(lam: Any, new_function: Any) -> None:
    """UpdateFunctionCode changes what the next invoke runs; Publish=True makes a version."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    assert tag_of(lam, name) == ("v1", "$LATEST")
    updated = lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"))
    assert updated["CodeSha256"] == sha256_b64(reporter_zip("v2"))
    assert updated["CodeSize"] == len(reporter_zip("v2"))
    assert updated["Version"] == "$LATEST"
    # AWS answers an update InProgress, with the reason it gives a create.
    assert updated["LastUpdateStatus"] == "InProgress"
    assert updated["LastUpdateStatusReasonCode"] == "Creating"
    assert tag_of(lam, name) == ("v2", "$LATEST")
    assert tag_of(lam, name, Qualifier="1") == ("v1", "1"), "a published version is immutable"
    published = lam.update_function_code(
        FunctionName=name, ZipFile=reporter_zip("v3"), Publish=True
    )
    assert (published["Version"], published["FunctionArn"]) == ("2", f"{PREFIX}{name}:2")
    assert tag_of(lam, name, Qualifier="2") == ("v3", "2")
    assert tag_of(lam, name) == ("v3", "$LATEST")


def test_update_code_with_a_stale_revision_is_412(lam: Any, new_function: Any) -> None:
    """A RevisionId that is no longer current fails with 412 PreconditionFailedException
    (the current one is GetFunction's: on AWS it changes when the create completes)."""
    name = new_function(reporter("v1"))["FunctionName"]
    created = lam.get_function_configuration(FunctionName=name)
    first = lam.update_function_code(
        FunctionName=name, ZipFile=reporter_zip("v2"), RevisionId=created["RevisionId"]
    )
    assert first["RevisionId"] != created["RevisionId"]
    with refused("PreconditionFailedException", 412) as error:
        lam.update_function_code(
            FunctionName=name, ZipFile=reporter_zip("v3"), RevisionId=created["RevisionId"]
        )
    assert error["Message"].startswith("The Revision Id provided does not match")
    with refused("PreconditionFailedException", 412):
        lam.update_function_configuration(
            FunctionName=name, Timeout=9, RevisionId=created["RevisionId"]
        )
    assert tag_of(lam, name) == ("v2", "$LATEST")


def test_update_function_configuration_is_seen_by_the_next_invoke(
    lam: Any, new_function: Any
) -> None:
    """New environment, memory, timeout, description and handler apply to the next invoke."""
    name = new_function(reporter("v1"))["FunctionName"]
    _, before = invoke_json(lam, name, {})
    assert (before["greeting"], before["memory"]) == (None, 128)
    assert before["remaining"] <= 3000
    updated = lam.update_function_configuration(
        FunctionName=name,
        Environment={"Variables": {"GREETING": "hello"}},
        MemorySize=256,
        Timeout=30,
        Description="reports its settings",
    )
    assert updated["Environment"] == {"Variables": {"GREETING": "hello"}}
    assert (updated["MemorySize"], updated["Timeout"]) == (256, 30)
    assert updated["Description"] == "reports its settings"
    _, after = invoke_json(lam, name, {})
    assert (after["greeting"], after["memory"]) == ("hello", 256)
    assert 3000 < after["remaining"] <= 30000
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Description"] == "reports its settings"
    assert config["RevisionId"] != updated["RevisionId"], "AWS: a new one once it completes"
    lam.update_function_configuration(FunctionName=name, Handler="app.other")
    assert invoke_json(lam, name, {})[1] == {"tag": "other-handler"}


# ----------------------------------------------------------------------------- DeleteFunction


def test_delete_function_and_its_versions(lam: Any, new_function: Any) -> None:
    """DeleteFunction removes one version with a Qualifier, or the whole function without."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    lam.delete_function(FunctionName=name, Qualifier="1")
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "2"]
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:1"):
        lam.invoke(FunctionName=name, Qualifier="1")
    assert tag_of(lam, name, Qualifier="2") == ("v2", "2")
    lam.delete_function(FunctionName=PREFIX + name)
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}"):
        lam.get_function(FunctionName=name)
    with refused("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=name)
    with refused("ResourceNotFoundException", 404):
        lam.delete_function(FunctionName=name)
    again = new_function(reporter("again"), FunctionName=name, Publish=True)
    assert again["Version"] == "1", "a new function of the same name starts over"
    assert tag_of(lam, name) == ("again", "$LATEST")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST",
        "1",
    ]


def test_deleting_a_function_ends_its_warm_environments(
    start_server: Callable[..., Server],
) -> None:
    """DeleteFunction ends the function's warm execution environments (the runtime hears of it
    on the change stream) instead of leaving them until they are reaped idle; the keep-alive
    here is far longer than the wait, so only the deletion can end them."""
    server = start_server({"LAMBDAD_KEEP_ALIVE": "1000000"})
    client = server.client()
    code = IDENTITY + "def handler(e, c):\n    return environment_identity()\n"
    name = create_function(client, code)["FunctionName"]
    identity = invoke_json(client, name, {})[1]
    assert environment_pids(identity)
    client.delete_function(FunctionName=name)
    assert_environment_gone(identity, timeout=30)


def test_delete_refuses_latest_and_versions_behind_an_alias(lam: Any, new_function: Any) -> None:
    """$LATEST cannot be deleted alone (400); a version an alias uses is a 409 conflict."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    lam.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.1}},
    )
    with refused(
        "InvalidParameterValueException",
        400,
        "$LATEST version cannot be deleted without deleting the function.",
    ):
        lam.delete_function(FunctionName=name, Qualifier="$LATEST")
    for version in ("1", "2"):
        with refused(
            "ResourceConflictException",
            409,
            "Unable to delete version because the following aliases reference it: [live]",
        ):
            lam.delete_function(FunctionName=name, Qualifier=version)
    assert len(lam.list_versions_by_function(FunctionName=name)["Versions"]) == 3


# ----------------------------------------------------------------------------- versions


def test_publish_version_checks_code_sha256_and_revision(lam: Any, new_function: Any) -> None:
    """PublishVersion refuses a CodeSha256 not $LATEST's (400) and a stale RevisionId (412)."""
    name = new_function(reporter("v1"))["FunctionName"]
    created = lam.get_function_configuration(FunctionName=name)
    wrong = sha256_b64(b"something else")
    with refused(
        "InvalidParameterValueException",
        400,
        f"CodeSHA256 ({wrong}) is different from current CodeSHA256 in $LATEST "
        f"({created['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.",
    ):
        lam.publish_version(FunctionName=name, CodeSha256=wrong)
    with refused("PreconditionFailedException", 412):
        lam.publish_version(FunctionName=name, RevisionId=str(uuid.uuid4()))
    assert lam.list_versions_by_function(FunctionName=name)["Versions"][1:] == []
    published = lam.publish_version(
        FunctionName=name,
        CodeSha256=created["CodeSha256"],
        RevisionId=created["RevisionId"],
        Description="first",
    )
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (published["Version"], published["Description"]) == ("1", "first")
    assert published["FunctionArn"] == f"{PREFIX}{name}:1"
    assert published["CodeSha256"] == created["CodeSha256"]


def test_publishing_twice_without_a_change_returns_the_same_version(
    lam: Any, new_function: Any
) -> None:
    """A second PublishVersion with nothing changed returns the existing version."""
    name = new_function(reporter("v1"))["FunctionName"]
    first = lam.publish_version(FunctionName=name)
    again = lam.publish_version(FunctionName=name)
    assert (first["Version"], again["Version"]) == ("1", "1")
    assert again["RevisionId"] == first["RevisionId"]
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"KEY": "v"}})
    assert lam.publish_version(FunctionName=name)["Version"] == "2"


def test_version_numbers_are_never_reused(lam: Any, new_function: Any) -> None:
    """After the newest version is deleted, the next publish still takes a new number."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    lam.delete_function(FunctionName=name, Qualifier="2")
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v3"))
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    assert tag_of(lam, name, Qualifier="3") == ("v3", "3")


def test_list_versions_by_function_order_and_paging(lam: Any, new_function: Any) -> None:
    """ListVersionsByFunction gives $LATEST first, then versions in numeric order, paged."""
    name = new_function(reporter("v1"))["FunctionName"]
    for n in range(1, 12):
        lam.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"NUM": str(n)}}
        )
        assert lam.publish_version(FunctionName=name)["Version"] == str(n)
    pages = list(
        lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=name, PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p["Versions"]) for p in pages] == [5, 5, 2]
    versions = [v for p in pages for v in p["Versions"]]
    assert [v["Version"] for v in versions] == ["$LATEST", *map(str, range(1, 12))]
    assert [v["FunctionArn"] for v in versions] == [
        f"{PREFIX}{name}:{v['Version']}" for v in versions
    ]
    assert versions[10]["Environment"] == {"Variables": {"NUM": "10"}}
    with refused("ResourceNotFoundException", 404):
        lam.list_versions_by_function(FunctionName=unique("missing"))


# ----------------------------------------------------------------------------- aliases


def test_alias_create_get_update_delete(lam: Any, new_function: Any) -> None:
    """Aliases are created (201), read, updated (with a RevisionId check) and deleted (204)."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    created = lam.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1", Description="prod"
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == f"{PREFIX}{name}:live"
    assert (created["Name"], created["FunctionVersion"], created["Description"]) == (
        "live",
        "1",
        "prod",
    )
    got = lam.get_alias(FunctionName=name, Name="live")
    assert {k: v for k, v in got.items() if k != "ResponseMetadata"} == {
        k: v for k, v in created.items() if k != "ResponseMetadata"
    }
    with refused("ResourceConflictException", 409):
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")

    updated = lam.update_alias(
        FunctionName=name, Name="live", FunctionVersion="2", RevisionId=created["RevisionId"]
    )
    assert (updated["FunctionVersion"], updated["Description"]) == ("2", "prod")
    assert updated["RevisionId"] != created["RevisionId"]
    assert tag_of(lam, f"{name}:live") == ("v2", "2")
    with refused("PreconditionFailedException", 412):
        lam.update_alias(
            FunctionName=name, Name="live", FunctionVersion="1", RevisionId=created["RevisionId"]
        )

    deleted = lam.delete_alias(FunctionName=name, Name="live")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with refused("ResourceNotFoundException", 404, f"Cannot find alias arn: {PREFIX}{name}:live"):
        lam.get_alias(FunctionName=name, Name="live")
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:live"):
        lam.invoke(FunctionName=name, Qualifier="live")


def test_list_aliases_filters_by_function_version(lam: Any, new_function: Any) -> None:
    """ListAliases lists every alias, or those of one FunctionVersion, paged."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    for alias, version in (("a", "1"), ("b", "2"), ("c", "1"), ("d", "$LATEST")):
        lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)
    paginator = lam.get_paginator("list_aliases")
    pages = list(paginator.paginate(FunctionName=name, PaginationConfig={"PageSize": 3}))
    assert [len(p["Aliases"]) for p in pages] == [3, 1]
    assert sorted(a["Name"] for p in pages for a in p["Aliases"]) == ["a", "b", "c", "d"]
    on_one = lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert sorted(a["Name"] for a in on_one) == ["a", "c"]
    assert lam.list_aliases(FunctionName=name, FunctionVersion="7")["Aliases"] == []


def test_alias_names_are_validated(unchecked: Any, new_function: Any) -> None:
    """An alias name of digits only, or with other characters, is a ValidationException."""
    name = new_function(Publish=True)["FunctionName"]
    for bad in ("123", "live!", "a" * 129):
        with refused("ValidationException", 400):
            unchecked.create_alias(FunctionName=name, Name=bad, FunctionVersion="1")
    assert unchecked.list_aliases(FunctionName=name)["Aliases"] == []


def test_alias_to_a_missing_version_is_refused(lam: Any, new_function: Any) -> None:
    """An alias (or its routing) naming a version that does not exist is 404."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:5"):
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="5")
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:6"):
        lam.create_alias(
            FunctionName=name,
            Name="live",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"6": 0.5}},
        )
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with refused("ResourceNotFoundException", 404, f"Function not found: {PREFIX}{name}:5"):
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="5")
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    with refused("ResourceNotFoundException", 404):
        lam.create_alias(FunctionName=unique("missing"), Name="live", FunctionVersion="1")


def test_invoking_an_alias_reports_the_version_number(lam: Any, new_function: Any) -> None:
    """``name:alias``, an alias ARN and Qualifier=alias run its version; ExecutedVersion is N."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v3"))
    lam.create_alias(FunctionName=name, Name="stable", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="next", FunctionVersion="2")
    assert tag_of(lam, f"{name}:stable") == ("v1", "1")
    assert tag_of(lam, f"{PREFIX}{name}:stable") == ("v1", "1")
    assert tag_of(lam, name, Qualifier="next") == ("v2", "2")
    assert tag_of(lam, name) == ("v3", "$LATEST")
    _, body = invoke_json(lam, name, {}, Qualifier="next")
    assert body["version"] == "2"
    with refused("InvalidParameterValueException", 400):
        lam.invoke(FunctionName=f"{name}:stable", Qualifier="next")


def test_weighted_alias_splits_invocations(lam: Any, new_function: Any) -> None:
    """An alias with a 50/50 routing config runs both versions in plausible proportions."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    alias = lam.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.5}}
    runs = Counter(tag_of(lam, name, Qualifier="canary") for _ in range(200))
    assert set(runs) == {("v1", "1"), ("v2", "2")}
    assert 60 <= runs[("v2", "2")] <= 140, runs
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={})
    assert "RoutingConfig" not in lam.get_alias(FunctionName=name, Name="canary")
    assert {tag_of(lam, f"{name}:canary") for _ in range(10)} == {("v1", "1")}


def test_alias_routing_rules(lam: Any, new_function: Any) -> None:
    """Routing needs a published primary, another version, and a weight below 1."""
    name = new_function(reporter("v1"), Publish=True)["FunctionName"]
    lam.update_function_code(FunctionName=name, ZipFile=reporter_zip("v2"), Publish=True)
    with refused(
        "InvalidParameterValueException",
        400,
        "$LATEST is not supported for an alias pointing to more than 1 version",
    ):
        lam.create_alias(
            FunctionName=name,
            Name="a",
            FunctionVersion="$LATEST",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
        )
    with refused(
        "InvalidParameterValueException",
        400,
        "Invalid function version 1. Function version 1 is already included in routing "
        "configuration.",
    ):
        lam.create_alias(
            FunctionName=name,
            Name="a",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
        )
    with refused("ValidationException", 400):
        lam.create_alias(
            FunctionName=name,
            Name="a",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}},
        )


# ----------------------------------------------------------------------------- tags, account


def test_tag_untag_and_list_tags(lam: Any, new_function: Any) -> None:
    """TagResource merges, UntagResource removes, ListTags and GetFunction show the result."""
    created = new_function(Tags={"team": "blue"})
    arn, name = created["FunctionArn"], created["FunctionName"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "blue"}
    tagged = lam.tag_resource(Resource=arn, Tags={"env": "dev", "team": "red"})
    assert tagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "red", "env": "dev"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "red", "env": "dev"}
    untagged = lam.untag_resource(Resource=arn, TagKeys=["team", "absent"])
    assert untagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"env": "dev"}
    lam.untag_resource(Resource=arn, TagKeys=["env"])
    assert lam.list_tags(Resource=arn)["Tags"] == {}
    assert "Tags" not in lam.get_function(FunctionName=name)
    with refused("ResourceNotFoundException", 404):
        lam.list_tags(Resource=PREFIX + unique("missing"))


def test_account_settings_count_the_functions(lam: Any, new_function: Any) -> None:
    """GetAccountSettings has AWS's limits and a FunctionCount that follows create and delete."""
    before = lam.get_account_settings()
    assert before["AccountLimit"] == {
        "TotalCodeSize": 80530636800,
        "CodeSizeUnzipped": 262144000,
        "CodeSizeZipped": 52428800,
        "ConcurrentExecutions": 1000,
        "UnreservedConcurrentExecutions": 1000,
    }
    count = before["AccountUsage"]["FunctionCount"]
    created = new_function(reporter("v1"), Publish=True)
    lam.update_function_code(
        FunctionName=created["FunctionName"], ZipFile=reporter_zip("v2"), Publish=True
    )
    after = lam.get_account_settings()["AccountUsage"]
    assert after["FunctionCount"] == count + 1, "versions are not functions"
    assert after["TotalCodeSize"] > before["AccountUsage"]["TotalCodeSize"]
    lam.delete_function(FunctionName=created["FunctionName"])
    assert lam.get_account_settings()["AccountUsage"]["FunctionCount"] == count
