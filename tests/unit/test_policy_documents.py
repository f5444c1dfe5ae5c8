"""Policy documents (``lambdad.control.policy_documents``): the principal forms AddPermission
accepts, and what a whole document must be."""

from __future__ import annotations

import pytest

from lambdad import errors
from lambdad.control.policy_documents import (
    check_size,
    parse_document,
    principal_of,
    statements,
)


@pytest.mark.parametrize(
    ("given", "held"),
    [
        ("*", "*"),
        ("123456789012", {"AWS": "arn:aws:iam::123456789012:root"}),
        ("arn:aws:iam::123456789012:role/r", {"AWS": "arn:aws:iam::123456789012:role/r"}),
        ("arn:aws-cn:iam::123456789012:user/u", {"AWS": "arn:aws-cn:iam::123456789012:user/u"}),
        ("events.amazonaws.com", {"Service": "events.amazonaws.com"}),
        ("alexa-appkit.amazon.com", {"Service": "alexa-appkit.amazon.com"}),
    ],
)
def test_principal_forms(given: str, held: object) -> None:
    """AWS keeps ``*``, turns an account into its root ARN, keeps an IAM ARN and puts a service
    under ``Service``."""
    assert principal_of(given) == held


@pytest.mark.parametrize("given", ["bob", "12345", "arn:aws:s3:::bucket", "example.com"])
def test_other_principals_are_invalid(given: str) -> None:
    """Anything else is AWS's "The provided principal was invalid"."""
    with pytest.raises(errors.InvalidParameterValueException, match="principal was invalid"):
        principal_of(given)


def test_a_single_statement_object_is_a_document() -> None:
    """IAM allows ``Statement`` to be one object instead of a list."""
    document = parse_document(
        '{"Statement": {"Effect": "Deny", "NotPrincipal": {"AWS": "1"}, '
        '"NotAction": "lambda:GetFunction", "NotResource": "x"}}'
    )
    assert len(statements(document)) == 1


def test_condition_must_map_operators_to_keys() -> None:
    """A ``Condition`` whose operator holds no key map is malformed."""
    with pytest.raises(errors.InvalidParameterValueException, match="Condition"):
        parse_document(
            '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", '
            '"Resource": "*", "Condition": {"StringEquals": "x"}}]}'
        )


def test_size_counts_compact_json_bytes() -> None:
    """The limit is on the compact JSON: 20,480 bytes pass, one more does not."""
    base = {"Id": ""}
    overhead = len('{"Id":""}')
    check_size({"Id": "x" * (20480 - overhead)})
    with pytest.raises(errors.PolicyLengthExceededException, match=r"\(20481\)"):
        check_size({**base, "Id": "x" * (20481 - overhead)})
