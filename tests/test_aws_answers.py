"""Answers pinned to what AWS answers (recorded AWS responses), one class of difference each."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import ROLE, invoke_json, make_zip, refused, unique

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
RUNTIME_VERSION = re.compile(r"arn:aws:lambda:us-east-1::runtime:[0-9a-f]{64}")
PINNED = "arn:aws:lambda:us-east-1::runtime:" + "ab" * 32


def _code(tag: str) -> bytes:
    return make_zip({"app.py": f"def handler(e, c):\n    return {tag!r}\n"})


# ----------------------------------------------------------------------------- runtime versions


def test_every_zip_function_names_its_runtime_version(lam: Any, new_function: Any) -> None:
    """AWS puts RuntimeVersionConfig.RuntimeVersionArn (arn:aws:lambda:<region>::runtime:<64
    hex>) on every zip function: one per runtime, another when the runtime changes."""
    first = new_function()
    second = new_function()
    arn = first["RuntimeVersionConfig"]["RuntimeVersionArn"]
    assert RUNTIME_VERSION.fullmatch(arn)
    assert second["RuntimeVersionConfig"]["RuntimeVersionArn"] == arn
    other = lam.update_function_configuration(
        FunctionName=first["FunctionName"], Runtime="python3.12"
    )
    assert RUNTIME_VERSION.fullmatch(other["RuntimeVersionConfig"]["RuntimeVersionArn"])
    assert other["RuntimeVersionConfig"]["RuntimeVersionArn"] != arn


def test_runtime_management_config_modes(lam: Any, new_function: Any) -> None:
    """GetRuntimeManagementConfig says Auto by default with no RuntimeVersionArn; Put with
    Manual pins RuntimeVersionArn (required then, refused with the other modes), echoes it and
    the function's RuntimeVersionConfig follows it; FunctionUpdate drops it again. A published
    version has its own config (the version's ARN); aliases are refused."""
    name = new_function(Publish=True)["FunctionName"]
    got = lam.get_runtime_management_config(FunctionName=name)
    assert (got["UpdateRuntimeOn"], got["FunctionArn"]) == ("Auto", f"{ARN}{name}")
    assert "RuntimeVersionArn" not in got
    with refused("InvalidParameterValueException", 400):
        lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual")
    with refused("InvalidParameterValueException", 400):
        lam.put_runtime_management_config(
            FunctionName=name, UpdateRuntimeOn="Auto", RuntimeVersionArn=PINNED
        )
    put = lam.put_runtime_management_config(
        FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=PINNED
    )
    assert (put["UpdateRuntimeOn"], put["RuntimeVersionArn"]) == ("Manual", PINNED)
    got = lam.get_runtime_management_config(FunctionName=name)
    assert (got["UpdateRuntimeOn"], got["RuntimeVersionArn"]) == ("Manual", PINNED)
    config = lam.get_function_configuration(FunctionName=name)
    assert config["RuntimeVersionConfig"] == {"RuntimeVersionArn": PINNED}
    version = lam.get_runtime_management_config(FunctionName=name, Qualifier="1")
    assert (version["UpdateRuntimeOn"], version["FunctionArn"]) == ("Auto", f"{ARN}{name}:1")
    back = lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="FunctionUpdate")
    assert back["UpdateRuntimeOn"] == "FunctionUpdate"
    assert "RuntimeVersionArn" not in back
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with refused("InvalidParameterValueException", 400):
        lam.get_runtime_management_config(FunctionName=name, Qualifier="live")
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}missing-fn"):
        lam.get_runtime_management_config(FunctionName="missing-fn")


def test_runtime_management_config_validates_its_members(unchecked: Any, new_function: Any) -> None:
    """An UpdateRuntimeOn outside the model's enum, and a RuntimeVersionArn outside its
    pattern, are 400 ValidationException as on AWS."""
    name = new_function()["FunctionName"]
    with refused("ValidationException", 400):
        unchecked.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Sometimes")
    with refused("ValidationException", 400):
        unchecked.put_runtime_management_config(
            FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn="not-an-arn-at-all-xx"
        )


# ----------------------------------------------------------------------------- Environment


def test_an_empty_environment_is_echoed_as_aws_echoes_it(lam: Any, new_function: Any) -> None:
    """AWS leaves Environment out of a function never given variables, echoes
    Environment.Variables {} once given empty ones (also on later reads), keeps the variables
    when an update's Environment has no Variables, and clears them with Variables {}."""
    assert "Environment" not in new_function()
    assert "Environment" not in new_function(Environment={})
    created = new_function(Environment={"Variables": {}})
    name = created["FunctionName"]
    assert created["Environment"] == {"Variables": {}}
    assert lam.get_function_configuration(FunctionName=name)["Environment"] == {"Variables": {}}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"AB": "1"}})
    kept = lam.update_function_configuration(FunctionName=name, Environment={})
    assert kept["Environment"] == {"Variables": {"AB": "1"}}
    cleared = lam.update_function_configuration(FunctionName=name, Environment={"Variables": {}})
    assert cleared["Environment"] == {"Variables": {}}


# ----------------------------------------------------------------------------- publishing


def test_publish_after_a_configuration_change_publishes_a_new_version(
    lam: Any, new_function: Any
) -> None:
    """As on AWS: PublishVersion after any change of $LATEST (a Description alone included)
    publishes a new version and gives $LATEST a new RevisionId; with nothing changed it returns
    the newest version, whatever Description it is given."""
    name = new_function()["FunctionName"]
    first = lam.publish_version(FunctionName=name, Description="first")
    lam.update_function_configuration(FunctionName=name, Description="changed")
    before = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    second = lam.publish_version(FunctionName=name)
    assert (first["Version"], second["Version"]) == ("1", "2")
    assert second["Description"] == "changed"
    assert lam.get_function_configuration(FunctionName=name)["RevisionId"] != before
    again = lam.publish_version(FunctionName=name, Description="third")
    assert (again["Version"], again["Description"]) == ("2", "changed")


def test_create_with_publish_answers_version_1_under_the_unqualified_arn(
    lam: Any, new_function: Any
) -> None:
    """AWS answers CreateFunction(Publish=True) with version 1's configuration (Version "1",
    State Pending) under the function's unqualified FunctionArn; a repeated PublishVersion
    returns version 1."""
    created = new_function(Publish=True)
    name = created["FunctionName"]
    assert (created["Version"], created["FunctionArn"]) == ("1", f"{ARN}{name}")
    assert created["State"] == "Pending"
    again = lam.publish_version(FunctionName=name)
    assert (again["Version"], again["FunctionArn"]) == ("1", f"{ARN}{name}:1")


# ----------------------------------------------------------------------------- not found


def test_not_found_messages_name_the_arn_as_aws_does(lam: Any, new_function: Any) -> None:
    """AWS names the unqualified ARN on GetFunction of a missing function, the qualifier
    given (`:$LATEST`, `:1221`, an alias) when there is one, `:$LATEST` on Invoke and
    PutFunctionConcurrency of a missing function (not on GetFunctionConcurrency), "Cannot
    find alias arn: ..." on GetAlias and "Alias not found: ..." on UpdateAlias."""
    missing = unique()
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{missing}"):
        lam.get_function(FunctionName=missing)
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{missing}:$LATEST"):
        lam.get_function_configuration(FunctionName=missing, Qualifier="$LATEST")
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{missing}:$LATEST"):
        lam.invoke(FunctionName=missing)
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{missing}:$LATEST"):
        lam.put_function_concurrency(FunctionName=missing, ReservedConcurrentExecutions=1)
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{missing}"):
        lam.get_function_concurrency(FunctionName=missing)
    name = new_function()["FunctionName"]
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{name}:1221"):
        lam.get_function(FunctionName=name, Qualifier="1221")
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{name}:nope"):
        lam.invoke(FunctionName=name, Qualifier="nope")
    with refused("ResourceNotFoundException", 404, f"Cannot find alias arn: {ARN}{name}:nope"):
        lam.get_alias(FunctionName=name, Name="nope")
    with refused("ResourceNotFoundException", 404, f"Alias not found: {ARN}{name}:nope"):
        lam.update_alias(FunctionName=name, Name="nope", FunctionVersion="$LATEST")


# ----------------------------------------------------------------------------- tags


def test_tags_only_on_the_function_itself(lam: Any, new_function: Any) -> None:
    """AWS refuses TagResource, UntagResource and ListTags on a version, alias or `:$LATEST`
    ARN (existing or not) with InvalidParameterValueException "Tags on function aliases and
    versions are not supported. Please specify a function ARN."."""
    name = new_function(Publish=True)["FunctionName"]
    message = (
        "Tags on function aliases and versions are not supported. Please specify a function ARN."
    )
    for qualifier in ("1", "$LATEST", "v1"):
        arn = f"{ARN}{name}:{qualifier}"
        with refused("InvalidParameterValueException", 400, message):
            lam.tag_resource(Resource=arn, Tags={"a": "b"})
        with refused("InvalidParameterValueException", 400, message):
            lam.untag_resource(Resource=arn, TagKeys=["a"])
        with refused("InvalidParameterValueException", 400, message):
            lam.list_tags(Resource=arn)


def test_tag_requests_are_checked_as_aws_checks_them(lam: Any, new_function: Any) -> None:
    """As on AWS: empty Tags is "An error occurred and the request cannot be processed."; empty
    TagKeys reaches AWS as none ("Value null at 'tagKeys'"); past 50 tags, "Number of tags
    exceeds resource tag limit."; a missing function names its unqualified ARN; an ARN outside
    the model's pattern is a ValidationException, another kind of resource is not found."""
    name = new_function()["FunctionName"]
    arn = f"{ARN}{name}"
    with refused(
        "InvalidParameterValueException",
        400,
        "An error occurred and the request cannot be processed.",
    ):
        lam.tag_resource(Resource=arn, Tags={})
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: "
        "Member must not be null",
    ):
        lam.untag_resource(Resource=arn, TagKeys=[])
    lam.tag_resource(Resource=arn, Tags={f"k{i}": "v" for i in range(50)})
    limit = "Number of tags exceeds resource tag limit."
    with refused("InvalidParameterValueException", 400, limit):
        lam.tag_resource(Resource=arn, Tags={"one-more": "v"})
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}gone-fn"):
        lam.tag_resource(Resource=f"{ARN}gone-fn", Tags={"a": "b"})
    with refused("ValidationException", 400) as error:
        lam.tag_resource(Resource="arn:aws:something", Tags={"a": "b"})
    assert error["Message"].startswith(
        "1 validation error detected: Value 'arn:aws:something' at 'resource' failed to satisfy"
    )
    with refused("ValidationException", 400):
        lam.list_tags(Resource="arn:aws:lambda:us-east-1:000000000000:layer:some-layer")
    mapping = "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:" + (
        "12345678-1234-1234-1234-123456789012"
    )
    with refused("ResourceNotFoundException", 404, f"Event source mapping not found: {mapping}"):
        lam.list_tags(Resource=mapping)


# ----------------------------------------------------------------------------- invoke


def test_executed_version_only_on_synchronous_answers(lam: Any, new_function: Any) -> None:
    """AWS sends X-Amz-Executed-Version on a RequestResponse answer only: not on Event (202)
    nor DryRun (204)."""
    name = new_function()["FunctionName"]
    sync, _ = invoke_json(lam, name, {})
    assert sync["ExecutedVersion"] == "$LATEST"
    for kind, status in (("Event", 202), ("DryRun", 204)):
        answer = lam.invoke(FunctionName=name, InvocationType=kind, Payload=b"{}")
        assert answer["StatusCode"] == status
        assert "ExecutedVersion" not in answer
        assert "x-amz-executed-version" not in answer["ResponseMetadata"]["HTTPHeaders"]


# ----------------------------------------------------------------------------- DeleteFunction


def test_delete_function_versions_as_aws_does(lam: Any, unchecked: Any, new_function: Any) -> None:
    """As on AWS: deleting a version that does not exist succeeds (again and again); deleting
    $LATEST by qualifier is 400 InvalidParameterValueException "$LATEST version cannot be
    deleted without deleting the function." (even for a missing function); an empty Qualifier
    is refused, not taken as "the whole function"."""
    name = new_function()["FunctionName"]
    lam.delete_function(FunctionName=name, Qualifier="1233")
    lam.delete_function(FunctionName=name, Qualifier="1233")
    message = "$LATEST version cannot be deleted without deleting the function."
    with refused("InvalidParameterValueException", 400, message):
        lam.delete_function(FunctionName=name, Qualifier="$LATEST")
    with refused("InvalidParameterValueException", 400, message):
        lam.delete_function(FunctionName=f"{ARN}missing-fn:$LATEST", Qualifier="$LATEST")
    with refused("ValidationException", 400):
        unchecked.delete_function(FunctionName=name, Qualifier="")
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    lam.delete_function(FunctionName=name)
    with refused("ResourceNotFoundException", 404, f"Function not found: {ARN}{name}"):
        lam.delete_function(FunctionName=name, Qualifier="1233")


def test_delete_function_takes_everything_of_the_function(lam: Any, new_function: Any) -> None:
    """DeleteFunction removes the versions, aliases, reserved concurrency, event invoke and
    recursion configs: a function created again under the name starts with none of them."""
    name = new_function(Publish=True)["FunctionName"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    lam.delete_function(FunctionName=name)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": _code("again")},
    )
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST"
    ]
    assert lam.list_aliases(FunctionName=name)["Aliases"] == []
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert (
        lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
        == []
    )
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    assert invoke_json(lam, name, {})[1] == "again"


# ----------------------------------------------------------------------------- $LATEST.PUBLISHED


def test_publish_to_latest_published(lam: Any, new_function: Any) -> None:
    """PublishVersion(PublishTo=LATEST_PUBLISHED) publishes (and later republishes in place)
    the version `$LATEST.PUBLISHED`, as AWS's docs show: Version and FunctionArn name it, the
    qualifier reads and invokes it, numbered versions are untouched; unpublished, it is not
    found."""
    name = new_function(_code_source("v1"))["FunctionName"]
    with refused(
        "ResourceNotFoundException", 404, f"Function not found: {ARN}{name}:$LATEST.PUBLISHED"
    ):
        lam.get_function(FunctionName=name, Qualifier="$LATEST.PUBLISHED")
    published = lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    assert (published["Version"], published["FunctionArn"]) == (
        "$LATEST.PUBLISHED",
        f"{ARN}{name}:$LATEST.PUBLISHED",
    )
    lam.update_function_code(FunctionName=name, ZipFile=_code("v2"))
    assert invoke_json(lam, name, {}, Qualifier="$LATEST.PUBLISHED")[1] == "v1"
    assert invoke_json(lam, name, {})[1] == "v2"
    again = lam.update_function_code(
        FunctionName=name, ZipFile=_code("v3"), Publish=True, PublishTo="LATEST_PUBLISHED"
    )
    assert again["Version"] == "$LATEST.PUBLISHED"
    got = lam.get_function(FunctionName=f"{name}:$LATEST.PUBLISHED")["Configuration"]
    assert got["Version"] == "$LATEST.PUBLISHED"
    assert invoke_json(lam, name, {}, Qualifier="$LATEST.PUBLISHED")[1] == "v3"
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "$LATEST.PUBLISHED"]
    assert lam.publish_version(FunctionName=name)["Version"] == "1"


def _code_source(tag: str) -> str:
    return f"def handler(e, c):\n    return {tag!r}\n"


# ----------------------------------------------------------------------------- runtime process


def test_the_runtime_process_has_the_variables_lambda_sets(lam: Any, new_function: Any) -> None:
    """Lambda's Python runtime process sees PWD (the task root, also its working directory),
    LC_CTYPE C.UTF-8, SHLVL, and the X-Ray variables AWS_XRAY_CONTEXT_MISSING,
    AWS_XRAY_DAEMON_ADDRESS (host:port), _AWS_XRAY_DAEMON_ADDRESS and _AWS_XRAY_DAEMON_PORT."""
    code = (
        "import os\n"
        "NAMES = ('PWD', 'LC_CTYPE', 'SHLVL', 'LAMBDA_TASK_ROOT', 'AWS_XRAY_CONTEXT_MISSING',\n"
        "         'AWS_XRAY_DAEMON_ADDRESS', '_AWS_XRAY_DAEMON_ADDRESS', '_AWS_XRAY_DAEMON_PORT')\n"
        "def handler(e, c):\n"
        "    return {'cwd': os.getcwd(), **{n: os.environ.get(n) for n in NAMES}}\n"
    )
    name = new_function(code)["FunctionName"]
    env = invoke_json(lam, name, {})[1]
    assert env["PWD"] == env["LAMBDA_TASK_ROOT"] == env["cwd"]
    assert (env["LC_CTYPE"], env["SHLVL"]) == ("C.UTF-8", "0")
    assert env["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"
    assert env["_AWS_XRAY_DAEMON_PORT"] == "2000"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == f"{env['_AWS_XRAY_DAEMON_ADDRESS']}:2000"
