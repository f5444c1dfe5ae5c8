"""Resource-based policy evaluation, as IAM evaluates a Lambda function's policy.

Pure functions over a policy document (the parsed JSON GetPolicy returns), an action, the
resource's ARN and the request's context. ``evaluate`` answers as IAM does for one resource
policy: an explicit ``Deny`` wins, then any ``Allow``, else the implicit deny. ``may_invoke`` and
``may_invoke_url`` put Lambda's rules on top (the owner account, public URLs); the HTTP layer
calls them, and lambdad has no identity policies, so a key of the owner account may do anything
a resource policy does not explicitly deny (docs/resource-policies.md).

What is evaluated:

* ``Effect`` ``Allow`` / ``Deny``; ``Principal`` / ``NotPrincipal`` (``*``, ``{"AWS": "*"}``,
  an account id or ``arn:aws:iam::ID:root`` for every principal of that account, an exact IAM
  ARN, ``{"Service": ...}``); ``Action`` / ``NotAction`` (case-insensitive, ``*`` and ``?``
  wildcards); ``Resource`` / ``NotResource`` (case-sensitive wildcards).
* ``Condition``: the String, Arn, Bool and Null operator families (with ``IfExists``); several
  operators, and several keys within one, must all hold; several values of one key are alternatives.
  An unknown operator makes its statement not apply. Condition keys are case-insensitive.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

INVOKE = "lambda:InvokeFunction"
INVOKE_URL = "lambda:InvokeFunctionUrl"


class Decision(enum.Enum):
    ALLOW = "allow"
    #: A statement denied the request explicitly: nothing else can allow it.
    DENY = "deny"
    #: No statement allowed it.
    IMPLICIT_DENY = "implicit_deny"


@dataclasses.dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asks, and the condition keys of the request.

    ``account_id`` and ``principal_arn`` are None for an anonymous request (a public URL);
    ``service`` is set when an AWS service principal calls (``s3.amazonaws.com``).
    """

    account_id: str | None = None
    principal_arn: str | None = None
    service: str | None = None
    source_arn: str | None = None
    source_account: str | None = None
    org_id: str | None = None
    #: ``lambda:FunctionUrlAuthType``: the URL's AuthType, for requests through a URL.
    url_auth_type: str | None = None
    #: ``lambda:InvokedViaFunctionUrl``: True for requests through a URL.
    via_url: bool | None = None
    event_source_token: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.account_id is None and self.service is None

    def condition_values(self) -> dict[str, str]:
        """The request's condition keys (lower case) and their values; absent keys left out."""
        pairs = {
            "aws:sourcearn": self.source_arn,
            "aws:sourceaccount": self.source_account,
            "aws:principalorgid": self.org_id,
            "aws:principalaccount": self.account_id,
            "aws:principalarn": self.principal_arn,
            "lambda:functionurlauthtype": self.url_auth_type,
            "lambda:invokedviafunctionurl": (
                None if self.via_url is None else str(self.via_url).lower()
            ),
            "lambda:eventsourcetoken": self.event_source_token,
        }
        return {k: v for k, v in pairs.items() if v is not None}


def evaluate(
    policy: Mapping[str, Any] | None, action: str, resource: str, context: RequestContext
) -> Decision:
    """IAM's answer for one resource policy: explicit ``Deny`` wins, then ``Allow``."""
    if not policy:
        return Decision.IMPLICIT_DENY
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, Mapping) or not _applies(statement, action, resource, context):
            continue
        if statement.get("Effect") == "Deny":
            return Decision.DENY
        allowed = allowed or statement.get("Effect") == "Allow"
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def may_invoke(
    policy: Mapping[str, Any] | None,
    *,
    owner_account: str,
    resource: str,
    context: RequestContext,
) -> bool:
    """Whether ``context`` may call Invoke on ``resource`` (the function, version or alias ARN
    whose policy ``policy`` is): the owner account may unless a statement denies it; anyone
    else only if the policy allows ``lambda:InvokeFunction``."""
    decision = evaluate(policy, INVOKE, resource, context)
    if decision is Decision.DENY:
        return False
    return context.account_id == owner_account or decision is Decision.ALLOW


def may_invoke_url(
    policy: Mapping[str, Any] | None,
    *,
    owner_account: str,
    resource: str,
    auth_type: str,
    context: RequestContext,
) -> bool:
    """Whether a request through a function URL of ``auth_type`` may invoke ``resource``.

    As AWS since October 2025 ("new function URLs will require both lambda:InvokeFunctionUrl
    and lambda:InvokeFunction permissions"): an ``AuthType=NONE`` URL serves only when the
    policy grants the public both actions; its requests are anonymous whatever they carry.
    An ``AWS_IAM`` URL serves the owner account (unless a statement denies it), and another
    account only if the policy allows it both actions.
    """
    via_url = dataclasses.replace(context, url_auth_type=auth_type, via_url=True)
    if auth_type == "NONE":
        via_url = dataclasses.replace(via_url, account_id=None, principal_arn=None, service=None)
    decisions = [evaluate(policy, a, resource, via_url) for a in (INVOKE_URL, INVOKE)]
    if Decision.DENY in decisions:
        return False
    if auth_type != "NONE" and via_url.account_id == owner_account:
        return True
    return all(d is Decision.ALLOW for d in decisions)


# ---------------------------------------------------------------- one statement


def _applies(
    statement: Mapping[str, Any], action: str, resource: str, context: RequestContext
) -> bool:
    return (
        _element(statement, "Principal", lambda p: _principal_matches(p, context))
        and _element(statement, "Action", lambda a: _action_matches(a, action))
        and _element(statement, "Resource", lambda r: _resource_matches(r, resource))
        and _conditions_hold(statement.get("Condition"), context)
    )


def _element(statement: Mapping[str, Any], name: str, matches: Callable[[Any], bool]) -> bool:
    """``name`` (or ``Not<name>``) of ``statement`` matches; a statement without either
    applies to everything (a policy lambdad stores always names the three)."""
    if name in statement:
        return matches(statement[name])
    if "Not" + name in statement:
        return not matches(statement["Not" + name])
    return name != "Principal"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _principal_matches(principal: Any, context: RequestContext) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for kind, values in principal.items():
        for value in _as_list(values):
            if kind == "AWS" and _aws_principal_matches(str(value), context):
                return True
            if kind == "Service" and value == context.service:
                return True
    return False


_ROOT = re.compile(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):root")


def _aws_principal_matches(value: str, context: RequestContext) -> bool:
    """``*`` is everyone (anonymous too); an account (id or root ARN) every principal of it;
    any other ARN exactly that principal."""
    if value == "*":
        return True
    if context.account_id is None:
        return False
    root = _ROOT.fullmatch(value)
    account = root.group(1) if root else value if value.isdigit() else None
    if account is not None:
        return account == context.account_id
    return value == context.principal_arn


def _action_matches(patterns: Any, action: str) -> bool:
    return any(_glob(str(p).lower())(action.lower()) is not None for p in _as_list(patterns))


def _resource_matches(patterns: Any, resource: str) -> bool:
    return any(_glob(str(p))(resource) is not None for p in _as_list(patterns))


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> Callable[[str], re.Match[str] | None]:
    """IAM's wildcards: ``*`` any run of characters (colons too), ``?`` one character
    (not ``fnmatch``, whose ``[...]`` classes IAM does not have)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL).fullmatch


# ---------------------------------------------------------------- conditions


def _conditions_hold(conditions: Any, context: RequestContext) -> bool:
    if conditions is None:
        return True
    if not isinstance(conditions, Mapping):
        return False
    values = context.condition_values()
    return all(
        isinstance(block, Mapping) and _operator_holds(str(op), block, values)
        for op, block in conditions.items()
    )


def _operator_holds(operator: str, block: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    name = operator.removesuffix("IfExists")
    test = _OPERATORS.get(name)
    if test is None:
        return False
    negated = "Not" in name
    for key, wanted in block.items():
        actual = values.get(str(key).lower())
        if name == "Null":
            if not _null_holds(actual, wanted):
                return False
            continue
        if actual is None:
            if if_exists or negated:
                continue
            return False
        if not test(actual, [_condition_string(w) for w in _as_list(wanted)]):
            return False
    return True


def _condition_string(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _null_holds(actual: str | None, wanted: Any) -> bool:
    expected_absent = _condition_string(_as_list(wanted)[0] if _as_list(wanted) else "").lower()
    return (actual is None) == (expected_absent == "true")


def _arn_like(actual: str, pattern: str) -> bool:
    """ArnLike: the six colon-separated parts match one by one (a wildcard stays in its part,
    except in the last, which keeps its colons)."""
    got, want = actual.split(":", 5), pattern.split(":", 5)
    if len(got) != 6 or len(want) != 6:
        return False
    return all(_glob(w)(g) is not None for g, w in zip(got, want, strict=True))


def _any(match: Callable[[str, str], bool]) -> Callable[[str, Iterable[str]], bool]:
    return lambda actual, wanted: any(match(actual, w) for w in wanted)


def _none(match: Callable[[str, str], bool]) -> Callable[[str, Iterable[str]], bool]:
    return lambda actual, wanted: not any(match(actual, w) for w in wanted)


def _equal(a: str, w: str) -> bool:
    return a == w


def _equal_ignore_case(a: str, w: str) -> bool:
    return a.lower() == w.lower()


def _like(a: str, w: str) -> bool:
    return _glob(w)(a) is not None


_OPERATORS: dict[str, Callable[[str, Iterable[str]], bool]] = {
    "StringEquals": _any(_equal),
    "StringNotEquals": _none(_equal),
    "StringEqualsIgnoreCase": _any(_equal_ignore_case),
    "StringNotEqualsIgnoreCase": _none(_equal_ignore_case),
    "StringLike": _any(_like),
    "StringNotLike": _none(_like),
    "ArnEquals": _any(_arn_like),
    "ArnLike": _any(_arn_like),
    "ArnNotEquals": _none(_arn_like),
    "ArnNotLike": _none(_arn_like),
    "Bool": _any(_equal_ignore_case),
    "Null": _any(_equal),
}
