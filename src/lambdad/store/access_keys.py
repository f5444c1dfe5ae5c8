"""Access keys: the credentials lambdad's SigV4 mode accepts, kept in one file of the data dir.

``access-keys.json`` (mode 0600) holds every key: its id, secret, account and user. The
``lambdad keys`` commands rewrite it whole (a temporary file renamed over it, under a lock, so
two commands never lose each other's key); a running server's ``KeyRing`` looks at the file's
``stat`` on each lookup and re-reads it when it changed, so a key created or deleted is seen by
the very next request, with no reload signal and no restart. The ``stat`` costs about a
microsecond (docs/accounts-and-sigv4.md has the measurement).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import re
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_NAME = "access-keys.json"
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_ACCOUNT = re.compile(r"\d{12}")
#: IAM's user name rule (``[\w+=,.@-]+``, 1 to 64 characters).
_USER_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")


class AccessKeyError(ValueError):
    """A key that cannot be made or found; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    account_id: str
    user_name: str
    user_id: str
    created: str

    def to_doc(self) -> dict[str, str]:
        return {
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "AccountId": self.account_id,
            "UserName": self.user_name,
            "UserId": self.user_id,
            "CreateDate": self.created,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AccessKey:
        return cls(
            access_key_id=str(doc["AccessKeyId"]),
            secret_access_key=str(doc["SecretAccessKey"]),
            account_id=str(doc["AccountId"]),
            user_name=str(doc["UserName"]),
            user_id=str(doc["UserId"]),
            created=str(doc.get("CreateDate", "")),
        )


def _random(alphabet: str, size: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(size))


def _read(path: Path) -> list[AccessKey]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        document = json.loads(raw) if raw.strip() else {}
        return [AccessKey.from_doc(doc) for doc in document.get("keys", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AccessKeyError(f"{path} is not a valid access key file: {exc}") from exc


class KeyFile:
    """The key file of a data directory, as the ``lambdad keys`` commands change it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME

    def entries(self) -> list[AccessKey]:
        return _read(self.path)

    def create(self, account_id: str, user_name: str) -> AccessKey:
        """A new key of user ``user_name`` in ``account_id`` (the user's id is kept across its
        keys); ``AccessKeyError`` for a malformed account id or user name."""
        if not _ACCOUNT.fullmatch(account_id):
            raise AccessKeyError(f"account id must be 12 digits, got {account_id!r}")
        if not _USER_NAME.fullmatch(user_name):
            raise AccessKeyError(
                f"user name must be 1 to 64 of letters, digits and _+=,.@-, got {user_name!r}"
            )
        with self._locked():
            keys = _read(self.path)
            same_user = [k for k in keys if (k.account_id, k.user_name) == (account_id, user_name)]
            key = AccessKey(
                access_key_id="AKIA" + _random(_KEY_ALPHABET, 16),
                secret_access_key=_random(_SECRET_ALPHABET, 40),
                account_id=account_id,
                user_name=user_name,
                user_id=same_user[0].user_id if same_user else "AIDA" + _random(_KEY_ALPHABET, 17),
                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            )
            self._write([*keys, key])
        return key

    def delete(self, access_key_id: str) -> None:
        """Remove a key; ``AccessKeyError`` if there is no such key."""
        with self._locked():
            keys = _read(self.path)
            kept = [k for k in keys if k.access_key_id != access_key_id]
            if len(kept) == len(keys):
                raise AccessKeyError(f"no access key {access_key_id}")
            self._write(kept)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(FILE_NAME + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, keys: list[AccessKey]) -> None:
        """Replace the file in one rename; its bytes are on disk before the rename."""
        data = json.dumps({"keys": [k.to_doc() for k in keys]}, indent=1).encode()
        staging = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, self.path)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise


class KeyRing:
    """The server's view of the key file: ``lookup`` sees every change by the next call.

    Each lookup compares the file's ``(inode, mtime, size)`` with the last one read (a rewrite
    is a rename, so a new inode, even within one mtime tick) and re-reads the file when it
    differs. A file that became unreadable or invalid keeps the last good keys (and is
    re-tried on the next lookup), so a bad edit never locks every client out.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._seen: tuple[int, int, int] | None = None
        self._keys: dict[str, AccessKey] = {}

    def lookup(self, access_key_id: str) -> AccessKey | None:
        self._refresh()
        return self._keys.get(access_key_id)

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen, self._keys = None, {}
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return
        try:
            keys = _read(self.path)
        except (AccessKeyError, OSError):
            return
        self._keys = {k.access_key_id: k for k in keys}
        self._seen = seen
