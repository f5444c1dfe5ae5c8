"""The SigV4 verifier against AWS's published SigV4 test suite vectors (``get-vanilla`` and
friends: key ``AKIDEXAMPLE``, date ``20150830T123600Z``, region ``us-east-1``, service
``service``), and its refusals, without a server."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from multidict import CIMultiDict

from lambdad import errors
from lambdad.api.sigv4 import EMPTY_SHA256, SigV4Verifier
from lambdad.store.access_keys import FILE_NAME, KeyRing

KEY = {
    "AccessKeyId": "AKIDEXAMPLE",
    "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "AccountId": "111122223333",
    "UserName": "example",
    "UserId": "AIDAEXAMPLEEXAMPLEEX",
}
WHEN = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC).timestamp()
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


def verifier(tmp_path: Path, now: float = WHEN) -> SigV4Verifier:
    (tmp_path / FILE_NAME).write_text(json.dumps({"keys": [KEY]}))
    return SigV4Verifier(KeyRing(tmp_path), service="service", clock=lambda: now)


def headers(signature: str) -> CIMultiDict[str]:
    return CIMultiDict(
        {
            "Host": "example.amazonaws.com",
            "X-Amz-Date": "20150830T123600Z",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={SCOPE}, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}",
        }
    )


@pytest.mark.parametrize(
    ("path", "query", "signature"),
    [
        ("/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "/",
            "Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_aws_test_suite_vectors_verify(
    tmp_path: Path, path: str, query: str, signature: str
) -> None:
    """AWS's test-suite requests verify as the key's user, with the signed region."""
    found = verifier(tmp_path).verify("GET", path, query, headers(signature), EMPTY_SHA256)
    assert found.region == "us-east-1"
    assert found.identity.user_arn == "arn:aws:iam::111122223333:user/example"
    assert found.identity.access_key_id == "AKIDEXAMPLE"


def test_a_changed_byte_does_not_verify(tmp_path: Path) -> None:
    """One more query parameter than was signed is InvalidSignatureException."""
    signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    with pytest.raises(errors.InvalidSignatureException) as info:
        verifier(tmp_path).verify("GET", "/", "x=1", headers(signature), EMPTY_SHA256)
    assert info.value.message.startswith("The request signature we calculated does not match")


def test_six_minutes_late_is_expired_with_aws_wording(tmp_path: Path) -> None:
    """AWS: ``Signature expired: <date> is now earlier than <now - 5 min> (<now> - 5 min.)``."""
    late = verifier(tmp_path, WHEN + 360)
    with pytest.raises(errors.InvalidSignatureException) as info:
        late.verify("GET", "/", "", headers("00"), EMPTY_SHA256)
    assert info.value.message == (
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z "
        "(20150830T124200Z - 5 min.)"
    )


def test_a_deleted_key_is_unknown_at_once(tmp_path: Path) -> None:
    """Rewriting the key file without the key makes the next lookup miss it."""
    check = verifier(tmp_path)
    signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    check.verify("GET", "/", "", headers(signature), EMPTY_SHA256)
    replacement = tmp_path / "new.json"
    replacement.write_text(json.dumps({"keys": []}))
    replacement.replace(tmp_path / FILE_NAME)
    with pytest.raises(errors.UnrecognizedClientException):
        check.verify("GET", "/", "", headers(signature), EMPTY_SHA256)


def test_an_invalid_key_file_keeps_the_last_good_keys(tmp_path: Path) -> None:
    """A key file edited into invalid JSON keeps the keys read before (no lock-out)."""
    check = verifier(tmp_path)
    signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    check.verify("GET", "/", "", headers(signature), EMPTY_SHA256)
    (tmp_path / FILE_NAME).write_text("{not json")
    found = check.verify("GET", "/", "", headers(signature), EMPTY_SHA256)
    assert found.identity.account_id == "111122223333"
