"""Who is calling: the verified caller of a request, as IAM would name it.

A request verified with SigV4 (``lambdad.api.sigv4``) carries one of these; in open mode there
is none and the configured account is the caller's. Function URLs with ``AuthType=AWS_IAM`` put
it into ``requestContext.authorizer.iam``; resource policies match its account.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """An IAM user of ``account_id`` named ``name`` (or a function's role session, ``arn``),
    calling with ``access_key_id``."""

    account_id: str
    access_key_id: str
    name: str
    #: IAM's unique id of the user (``AIDA`` + 17 characters), stable for the key's user.
    user_id: str
    #: The caller's ARN when it is not an IAM user: a function's role session
    #: (``arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION``).
    arn: str | None = None

    @property
    def user_arn(self) -> str:
        return self.arn or f"arn:aws:iam::{self.account_id}:user/{self.name}"

    def authorizer_iam(self) -> dict[str, Any]:
        """``requestContext.authorizer.iam`` of a function URL event (payload format 2.0)."""
        return {
            "accessKey": self.access_key_id,
            "accountId": self.account_id,
            "callerId": self.user_id,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": self.user_arn,
            "userId": self.user_id,
        }
