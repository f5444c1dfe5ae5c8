"""ARNs of lambdad's resources."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """Where a request lives: every function and layer is scoped to an account and a region."""

    account_id: str
    region: str
    #: Who is asking, as IAM names it in its refusals (``arn:aws:iam::ACCOUNT:user/NAME``); None
    #: in open mode. Not part of the scope's identity: two scopes of one account and region are
    #: equal (and hash alike) whoever asks, so caches and locks keyed by scope are shared.
    caller_arn: str | None = dataclasses.field(default=None, compare=False, hash=False)

    @property
    def principal_arn(self) -> str:
        """The caller's ARN, or the account root's when the caller is not known."""
        return self.caller_arn or f"arn:aws:iam::{self.account_id}:root"

    def key(self, *rest: str) -> tuple[str, ...]:
        """A store key of this account and region: ``(account, region, *rest)``."""
        return (self.account_id, self.region, *rest)

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    def layer_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}"

    def layer_version_arn(self, name: str, version: int) -> str:
        return f"{self.layer_arn(name)}:{version}"
