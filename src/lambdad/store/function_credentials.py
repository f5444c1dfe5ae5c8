"""Function credentials: what a function's own AWS SDK signs with in SigV4 mode.

On AWS a function's environment carries temporary credentials of its execution role
(``AWS_ACCESS_KEY_ID`` starting ``ASIA``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) and
its calls act as ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION``. lambdad issues them
without writing anything per environment: the session token names the function (account,
region, role name, function name), the access key id and the secret are HMACs of the token
under a server secret kept in the data dir (``function-credentials.key``, mode 0600, made on
first use). ``FunctionCredentials.open`` recomputes both from a token a request carries: a
token that was altered no longer matches its key id, a secret that was altered no longer
matches the signature. docs/accounts-and-sigv4.md says why and what was rejected.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

FILE_NAME = "function-credentials.key"
#: The session token's prefix (its format's version).
_PREFIX = "lambdad1."
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """Who a function credential speaks for."""

    access_key_id: str
    secret_access_key: str
    token: str
    account_id: str
    region: str
    role_name: str
    function_name: str

    @property
    def arn(self) -> str:
        return f"arn:aws:sts::{self.account_id}:assumed-role/{self.role_name}/{self.function_name}"

    @property
    def role_id(self) -> str:
        """IAM's ``AROA...`` id of the role, stable for the account and role name."""
        digest = hashlib.sha256(f"{self.account_id}/{self.role_name}".encode()).digest()
        return "AROA" + base64.b32encode(digest).decode()[:17]

    def environment(self) -> dict[str, str]:
        """The variables an AWS SDK reads its credentials from."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.token,
        }


def role_name_of(role_arn: str) -> str:
    """The role's name: the last path element of its ARN (``arn:aws:iam::A:role/path/NAME``)."""
    return role_arn.rsplit("/", 1)[-1] or "lambdad-function-role"


class FunctionCredentials:
    """Issues and checks function credentials under the data dir's server secret."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / FILE_NAME
        self._secret: bytes | None = None
        # Read (or made and fsynced) here, at start-up, not on the loop at a first request.
        self._server_secret()

    def issue(self, account_id: str, region: str, role_arn: str, function_name: str) -> Session:
        claims = {"a": account_id, "r": region, "n": role_name_of(role_arn), "f": function_name}
        body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        token = _PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")
        return self._session(token, claims)

    def open(self, access_key_id: str, token: str | None) -> Session | None:
        """The session ``token`` names when it is one this server issued with
        ``access_key_id``; None otherwise (compared in constant time)."""
        if not token or not token.startswith(_PREFIX) or len(token) > 2048:
            return None
        encoded = token[len(_PREFIX) :]
        try:
            claims = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not all(
            isinstance(claims.get(k), str) for k in ("a", "r", "n", "f")
        ):
            return None
        session = self._session(token, claims)
        if not hmac.compare_digest(session.access_key_id.encode(), access_key_id.encode()):
            return None
        return session

    def _session(self, token: str, claims: dict[str, str]) -> Session:
        key_mac = self._mac(b"key-id\0" + token.encode())
        secret_mac = self._mac(b"secret\0" + token.encode())
        key_id = "ASIA" + "".join(_B32[b % 32] for b in key_mac[:16])
        secret = base64.b64encode(secret_mac).decode()[:40]
        return Session(key_id, secret, token, claims["a"], claims["r"], claims["n"], claims["f"])

    @property
    def secret(self) -> bytes:
        """The server secret credentials are derived with."""
        return self._server_secret()

    def adopt(self, secret: bytes) -> None:
        """Derive credentials with ``secret`` from now on (a cluster's shared one, so that
        every node verifies what any node issued); the data dir's stays unused."""
        if len(secret) < 32:
            raise ValueError("a function-credential secret has at least 32 bytes")
        self._secret = bytes(secret)

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self._server_secret(), message, hashlib.sha256).digest()

    def _server_secret(self) -> bytes:
        """The data dir's secret, made once: written whole to a staging file, then linked into
        place (a concurrent maker's link fails and it reads the winner's)."""
        if self._secret is None:
            try:
                secret = self._path.read_bytes()
            except FileNotFoundError:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                staging = self._path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
                fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(secrets.token_bytes(32))
                        handle.flush()
                        os.fsync(handle.fileno())
                    with contextlib.suppress(FileExistsError):
                        os.link(staging, self._path)
                finally:
                    staging.unlink(missing_ok=True)
                secret = self._path.read_bytes()
            if len(secret) < 32:
                raise ValueError(f"{self._path} is not a valid function credential secret")
            self._secret = secret
        return self._secret
