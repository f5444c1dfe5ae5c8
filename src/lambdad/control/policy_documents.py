"""Function policy documents: the statement AddPermission builds, and the checks a whole
document given to PutResourcePolicy must pass.

A document is kept as the JSON object GetPolicy returns (``Version``, ``Id``, ``Statement``);
its size is the length of its compact JSON, which must stay within 20 KB as on AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from lambdad import errors
from lambdad.control.requests import AddPermissionRequest

#: AWS's limit on a function policy (Lambda quotas: "Function resource-based policy 20 KB").
MAX_POLICY_BYTES = 20480
_ACCOUNT = re.compile(r"\d{12}")
_IAM_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::")
_EFFECTS = ("Allow", "Deny")


def empty_document() -> dict[str, Any]:
    """The document AddPermission starts a policy with (AWS's ``Version`` and ``Id``)."""
    return {"Version": "2012-10-17", "Id": "default", "Statement": []}


def compact(document: Mapping[str, Any]) -> str:
    """The document as GetPolicy returns it: compact JSON."""
    return json.dumps(document, separators=(",", ":"))


def check_size(document: Mapping[str, Any]) -> None:
    """AWS's PolicyLengthExceededException for a document over 20 KB."""
    size = len(compact(document).encode())
    if size > MAX_POLICY_BYTES:
        raise errors.PolicyLengthExceededException(
            f"The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES})."
        )


def principal_of(principal: str) -> str | dict[str, str]:
    """AddPermission's ``Principal`` as the statement holds it: ``*``; an account id as its root
    ARN; an IAM ARN as given; a service (``s3.amazonaws.com``, ``alexa-appkit.amazon.com``)
    under ``Service``. Anything else is AWS's "The provided principal was invalid"."""
    if principal == "*":
        return "*"
    if _ACCOUNT.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if _IAM_ARN.match(principal):
        return {"AWS": principal}
    if principal.endswith((".amazonaws.com", ".amazon.com")):
        return {"Service": principal}
    raise errors.InvalidParameterValueException(
        "The provided principal was invalid. Please check the principal and try again."
    )


def statement_of(request: AddPermissionRequest, resource: str) -> dict[str, Any]:
    """The statement AWS adds for ``request`` on ``resource`` (the function, version or alias
    ARN), with its members and condition keys in AWS's order."""
    statement: dict[str, Any] = {
        "Sid": request.statement_id,
        "Effect": "Allow",
        "Principal": principal_of(request.principal),
        "Action": request.action,
        "Resource": resource,
    }
    equals = {
        key: value
        for key, value in (
            ("AWS:SourceAccount", request.source_account),
            ("lambda:FunctionUrlAuthType", request.function_url_auth_type),
            ("aws:PrincipalOrgID", request.principal_org_id),
            ("lambda:EventSourceToken", request.event_source_token),
        )
        if value
    }
    condition: dict[str, Any] = {}
    if equals:
        condition["StringEquals"] = equals
    if request.source_arn:
        condition["ArnLike"] = {"AWS:SourceArn": request.source_arn}
    if request.invoked_via_function_url:
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    if condition:
        statement["Condition"] = condition
    return statement


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The document's statements as a list (a document may hold a single one as an object)."""
    found = document.get("Statement", [])
    return list(found) if isinstance(found, list) else [found]


def parse_document(text: str) -> dict[str, Any]:
    """A whole policy given to PutResourcePolicy, parsed and checked: JSON, an object whose
    ``Statement`` holds at least one statement, each with an ``Effect`` of Allow or Deny, a
    principal, an action and a resource. What is wrong is an InvalidParameterValueException
    (lambdad's wording: AWS's is not published); over 20 KB is AWS's length error."""
    try:
        document = json.loads(text)
    except ValueError:
        raise _malformed("it is not valid JSON") from None
    if not isinstance(document, dict):
        raise _malformed("it is not a JSON object")
    found = document.get("Statement")
    if not found or not isinstance(found, list | dict):
        raise _malformed("it has no Statement")
    for statement in statements(document):
        _check_statement(statement)
    check_size(document)
    return document


def _check_statement(statement: Any) -> None:
    if not isinstance(statement, dict):
        raise _malformed("a statement is not a JSON object")
    if statement.get("Effect") not in _EFFECTS:
        raise _malformed("a statement's Effect is neither Allow nor Deny")
    for element in ("Principal", "Action", "Resource"):
        if element not in statement and "Not" + element not in statement:
            raise _malformed(f"a statement has no {element}")
    condition = statement.get("Condition")
    if condition is not None and not (
        isinstance(condition, dict) and all(isinstance(v, dict) for v in condition.values())
    ):
        raise _malformed("a statement's Condition is not a map of operators to keys")


def _malformed(why: str) -> errors.InvalidParameterValueException:
    return errors.InvalidParameterValueException(f"The policy document is malformed: {why}.")
