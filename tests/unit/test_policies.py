"""The resource-policy evaluator (``lambdad.control.policies``): IAM's rules for one resource
policy, and Lambda's rules for Invoke and function URLs."""

from __future__ import annotations

from typing import Any

from lambdad.control.policies import (
    Decision,
    RequestContext,
    evaluate,
    may_invoke,
    may_invoke_url,
)

OWNER = "111111111111"
OTHER = "222222222222"
FN = f"arn:aws:lambda:us-east-1:{OWNER}:function:f"
ANON = RequestContext()
OTHER_USER = RequestContext(account_id=OTHER, principal_arn=f"arn:aws:iam::{OTHER}:user/bob")
OWNER_USER = RequestContext(account_id=OWNER, principal_arn=f"arn:aws:iam::{OWNER}:user/alice")


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Id": "default", "Statement": list(statements)}


def allow(principal: Any, action: Any = "lambda:InvokeFunction", **extra: Any) -> dict[str, Any]:
    return {
        "Sid": "s",
        "Effect": "Allow",
        "Principal": principal,
        "Action": action,
        "Resource": FN,
        **extra,
    }


def deny(principal: Any, action: Any = "lambda:InvokeFunction", **extra: Any) -> dict[str, Any]:
    return {**allow(principal, action, **extra), "Effect": "Deny"}


def test_no_policy_allows_nothing() -> None:
    """Without a policy nothing is allowed (IAM's implicit deny)."""
    assert evaluate(None, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.IMPLICIT_DENY
    assert evaluate({}, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.IMPLICIT_DENY


def test_account_principal_covers_every_principal_of_the_account() -> None:
    """AddPermission's ``{"AWS": "arn:aws:iam::ID:root"}`` grants every principal of account ID,
    and no one else (IAM: the account principal delegates to the account)."""
    doc = policy(allow({"AWS": f"arn:aws:iam::{OTHER}:root"}))
    assert evaluate(doc, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.ALLOW
    assert evaluate(doc, "lambda:InvokeFunction", FN, OWNER_USER) is Decision.IMPLICIT_DENY
    assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.IMPLICIT_DENY
    bare = policy(allow({"AWS": OTHER}))
    assert evaluate(bare, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.ALLOW


def test_user_principal_matches_only_that_user() -> None:
    """A principal ARN other than the root grants exactly that principal."""
    doc = policy(allow({"AWS": [f"arn:aws:iam::{OTHER}:user/bob"]}))
    assert evaluate(doc, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.ALLOW
    carol = RequestContext(account_id=OTHER, principal_arn=f"arn:aws:iam::{OTHER}:user/carol")
    assert evaluate(doc, "lambda:InvokeFunction", FN, carol) is Decision.IMPLICIT_DENY


def test_star_principal_includes_anonymous_callers() -> None:
    """``"Principal": "*"`` (and ``{"AWS": "*"}``) is everyone, anonymous requests included."""
    for principal in ("*", {"AWS": "*"}):
        doc = policy(allow(principal))
        assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW
        assert evaluate(doc, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.ALLOW


def test_service_principal_matches_that_service_only() -> None:
    """``{"Service": "s3.amazonaws.com"}`` grants calls made by that service."""
    doc = policy(allow({"Service": "s3.amazonaws.com"}))
    s3 = RequestContext(service="s3.amazonaws.com")
    assert evaluate(doc, "lambda:InvokeFunction", FN, s3) is Decision.ALLOW
    sns = RequestContext(service="sns.amazonaws.com")
    assert evaluate(doc, "lambda:InvokeFunction", FN, sns) is Decision.IMPLICIT_DENY
    assert evaluate(doc, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.IMPLICIT_DENY


def test_actions_match_case_insensitively_with_wildcards() -> None:
    """Actions compare case-insensitively; ``lambda:*``, ``*`` and ``lambda:Invoke*`` are
    wildcards (IAM)."""
    for action in ("lambda:*", "*", "lambda:Invoke*", "LAMBDA:invokefunction"):
        doc = policy(allow("*", action))
        assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW, action
    doc = policy(allow("*", "lambda:InvokeFunctionUrl"))
    assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.IMPLICIT_DENY
    listed = policy(allow("*", ["lambda:GetFunction", "lambda:InvokeFunction"]))
    assert evaluate(listed, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW


def test_resource_must_match() -> None:
    """A statement on another resource does not apply; resource wildcards do."""
    doc = policy({**allow("*"), "Resource": FN + ":prod"})
    assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.IMPLICIT_DENY
    wild = policy({**allow("*"), "Resource": FN + "*"})
    assert evaluate(wild, "lambda:InvokeFunction", FN + ":prod", ANON) is Decision.ALLOW


def test_explicit_deny_wins() -> None:
    """An explicit ``Deny`` overrides any ``Allow`` (IAM's evaluation logic)."""
    doc = policy(allow("*"), deny({"AWS": OTHER}))
    assert evaluate(doc, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.DENY
    assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW


def test_not_elements_invert_their_match() -> None:
    """``NotPrincipal``, ``NotAction`` and ``NotResource`` apply to everything they do not name."""
    doc = policy(
        {
            "Effect": "Deny",
            "NotPrincipal": {"AWS": OWNER},
            "NotAction": "lambda:GetFunction",
            "NotResource": FN + ":other",
        },
        allow("*"),
    )
    assert evaluate(doc, "lambda:InvokeFunction", FN, OTHER_USER) is Decision.DENY
    assert evaluate(doc, "lambda:InvokeFunction", FN, OWNER_USER) is Decision.ALLOW


def test_source_arn_condition_is_arn_like() -> None:
    """AddPermission's SourceArn becomes ``ArnLike`` on ``AWS:SourceArn``: wildcards match within
    ARN parts; a request without a source ARN does not match."""
    doc = policy(
        allow(
            {"Service": "s3.amazonaws.com"},
            Condition={"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket-*"}},
        )
    )
    ok = RequestContext(service="s3.amazonaws.com", source_arn="arn:aws:s3:::bucket-1")
    assert evaluate(doc, "lambda:InvokeFunction", FN, ok) is Decision.ALLOW
    other = RequestContext(service="s3.amazonaws.com", source_arn="arn:aws:s3:::other")
    assert evaluate(doc, "lambda:InvokeFunction", FN, other) is Decision.IMPLICIT_DENY
    none = RequestContext(service="s3.amazonaws.com")
    assert evaluate(doc, "lambda:InvokeFunction", FN, none) is Decision.IMPLICIT_DENY
    region = policy(
        allow("*", Condition={"ArnLike": {"aws:sourcearn": "arn:aws:sns:*:123456789012:t"}})
    )
    topic = RequestContext(source_arn="arn:aws:sns:eu-west-1:123456789012:t")
    assert evaluate(region, "lambda:InvokeFunction", FN, topic) is Decision.ALLOW
    wrong = RequestContext(source_arn="arn:aws:sns:eu-west-1:123456789012:t:x")
    assert evaluate(region, "lambda:InvokeFunction", FN, wrong) is Decision.IMPLICIT_DENY


def test_string_conditions_all_keys_must_hold() -> None:
    """Keys in one operator, and several operators, must all hold; the values of one key are
    alternatives (IAM)."""
    doc = policy(
        allow(
            "*",
            Condition={
                "StringEquals": {"AWS:SourceAccount": [OTHER, "333333333333"]},
                "StringLike": {"aws:PrincipalOrgID": "o-abc*"},
            },
        )
    )
    ok = RequestContext(source_account=OTHER, org_id="o-abcdef")
    assert evaluate(doc, "lambda:InvokeFunction", FN, ok) is Decision.ALLOW
    no_org = RequestContext(source_account=OTHER)
    assert evaluate(doc, "lambda:InvokeFunction", FN, no_org) is Decision.IMPLICIT_DENY
    wrong = RequestContext(source_account="444444444444", org_id="o-abcdef")
    assert evaluate(doc, "lambda:InvokeFunction", FN, wrong) is Decision.IMPLICIT_DENY


def test_negated_and_if_exists_operators_pass_on_absent_keys() -> None:
    """A negated operator and an ``...IfExists`` operator hold when the key is absent (IAM)."""
    negated = policy(allow("*", Condition={"StringNotEquals": {"aws:SourceAccount": OTHER}}))
    assert evaluate(negated, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW
    from_other = RequestContext(source_account=OTHER)
    assert evaluate(negated, "lambda:InvokeFunction", FN, from_other) is Decision.IMPLICIT_DENY
    if_exists = policy(allow("*", Condition={"StringEqualsIfExists": {"aws:SourceAccount": OTHER}}))
    assert evaluate(if_exists, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW


def test_bool_and_null_conditions() -> None:
    """``Bool`` compares ``true``/``false`` (a JSON boolean too); ``Null`` tests presence."""
    doc = policy(allow("*", Condition={"Bool": {"lambda:InvokedViaFunctionUrl": True}}))
    via = RequestContext(via_url=True)
    assert evaluate(doc, "lambda:InvokeFunction", FN, via) is Decision.ALLOW
    assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.IMPLICIT_DENY
    null = policy(allow("*", Condition={"Null": {"aws:SourceArn": "true"}}))
    assert evaluate(null, "lambda:InvokeFunction", FN, ANON) is Decision.ALLOW
    with_source = RequestContext(source_arn="arn:aws:s3:::b")
    assert evaluate(null, "lambda:InvokeFunction", FN, with_source) is Decision.IMPLICIT_DENY


def test_unknown_operator_makes_the_statement_not_apply() -> None:
    """A condition operator the evaluator does not know never grants anything."""
    doc = policy(allow("*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}))
    assert evaluate(doc, "lambda:InvokeFunction", FN, ANON) is Decision.IMPLICIT_DENY


def test_owner_account_may_invoke_without_a_policy() -> None:
    """The owner account invokes without a policy (lambdad has no identity policies: the owner's
    keys are the account's administrators); another account needs a grant."""
    assert may_invoke(None, owner_account=OWNER, resource=FN, context=OWNER_USER)
    assert not may_invoke(None, owner_account=OWNER, resource=FN, context=OTHER_USER)
    granted = policy(allow({"AWS": f"arn:aws:iam::{OTHER}:root"}))
    assert may_invoke(granted, owner_account=OWNER, resource=FN, context=OTHER_USER)


def test_explicit_deny_stops_even_the_owner() -> None:
    """A resource policy's explicit ``Deny`` applies to the owner account too (IAM)."""
    doc = policy(deny({"AWS": OWNER}))
    assert not may_invoke(doc, owner_account=OWNER, resource=FN, context=OWNER_USER)


def url_grants(auth_type: str, principal: Any = "*") -> list[dict[str, Any]]:
    """The two statements AWS's console and docs add for a URL since October 2025."""
    return [
        allow(
            principal,
            "lambda:InvokeFunctionUrl",
            Condition={"StringEquals": {"lambda:FunctionUrlAuthType": auth_type}},
        ),
        allow(
            principal,
            "lambda:InvokeFunction",
            Condition={"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
        ),
    ]


def test_public_url_needs_both_actions_granted_to_the_public() -> None:
    """AWS: an ``AuthType=NONE`` URL answers 403 unless the policy grants ``*`` both
    ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction`` ("Starting in October 2025, new
    function URLs will require both lambda:InvokeFunctionUrl and lambda:InvokeFunction
    permissions")."""
    both = policy(*url_grants("NONE"))
    assert may_invoke_url(both, owner_account=OWNER, resource=FN, auth_type="NONE", context=ANON)
    only_url = policy(url_grants("NONE")[0])
    assert not may_invoke_url(
        only_url, owner_account=OWNER, resource=FN, auth_type="NONE", context=ANON
    )
    only_invoke = policy(url_grants("NONE")[1])
    assert not may_invoke_url(
        only_invoke, owner_account=OWNER, resource=FN, auth_type="NONE", context=ANON
    )
    assert not may_invoke_url(
        None, owner_account=OWNER, resource=FN, auth_type="NONE", context=ANON
    )


def test_public_url_ignores_who_signed_the_request() -> None:
    """A NONE URL does not authenticate: a signed request from the owner is still anonymous, so a
    grant to the owner account only does not open the URL."""
    doc = policy(*url_grants("NONE", {"AWS": OWNER}))
    assert not may_invoke_url(
        doc, owner_account=OWNER, resource=FN, auth_type="NONE", context=OWNER_USER
    )


def test_public_url_grant_is_bound_to_the_auth_type() -> None:
    """A grant conditioned on ``lambda:FunctionUrlAuthType`` ``AWS_IAM`` leaves a NONE URL shut."""
    doc = policy(*url_grants("AWS_IAM"))
    assert not may_invoke_url(doc, owner_account=OWNER, resource=FN, auth_type="NONE", context=ANON)


def test_iam_url_serves_the_owner_and_granted_accounts() -> None:
    """An ``AWS_IAM`` URL serves the owner account; another account only with both actions
    granted to it; never an anonymous caller."""
    assert may_invoke_url(
        None, owner_account=OWNER, resource=FN, auth_type="AWS_IAM", context=OWNER_USER
    )
    assert not may_invoke_url(
        None, owner_account=OWNER, resource=FN, auth_type="AWS_IAM", context=OTHER_USER
    )
    grants = policy(*url_grants("AWS_IAM", {"AWS": OTHER}))
    assert may_invoke_url(
        grants, owner_account=OWNER, resource=FN, auth_type="AWS_IAM", context=OTHER_USER
    )
    assert not may_invoke_url(
        grants, owner_account=OWNER, resource=FN, auth_type="AWS_IAM", context=ANON
    )


def test_invoked_via_url_grant_does_not_cover_direct_invoke() -> None:
    """A ``lambda:InvokedViaFunctionUrl`` grant applies to URL requests, not to Invoke."""
    doc = policy(url_grants("AWS_IAM", {"AWS": OTHER})[1])
    assert not may_invoke(doc, owner_account=OWNER, resource=FN, context=OTHER_USER)
