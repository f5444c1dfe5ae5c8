"""The typed values of function URLs: one ``FunctionUrlConfig`` per ``$LATEST`` or alias.

A config is stored as a document (``to_doc`` / ``from_doc``); its ``url_id`` (32 lowercase
alphanumerics, drawn at create) names it in the URL's host and never changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import secrets
import string
from collections.abc import Mapping
from typing import Any, Self

from lambdad.control.arns import Scope
from lambdad.control.model import LATEST
from lambdad.control.requests import Cors

URL_ID_LENGTH = 32
_URL_ID_ALPHABET = string.ascii_lowercase + string.digits


class AuthType(enum.StrEnum):
    NONE = "NONE"
    AWS_IAM = "AWS_IAM"


class InvokeMode(enum.StrEnum):
    BUFFERED = "BUFFERED"
    RESPONSE_STREAM = "RESPONSE_STREAM"


def new_url_id() -> str:
    """A fresh url-id: 32 random lowercase letters and digits."""
    return "".join(secrets.choice(_URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))


def now_stamp() -> str:
    """The current time as AWS writes a URL config's times: ``2024-03-01T12:34:56.789012Z``."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(frozen=True, slots=True)
class CorsSettings:
    """A URL's CORS settings, each None where the config leaves it out."""

    allow_credentials: bool | None = None
    allow_headers: tuple[str, ...] | None = None
    allow_methods: tuple[str, ...] | None = None
    allow_origins: tuple[str, ...] | None = None
    expose_headers: tuple[str, ...] | None = None
    max_age: int | None = None

    @classmethod
    def of(cls, cors: Cors) -> CorsSettings:
        def listed(values: list[str] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(values)

        return cls(
            allow_credentials=cors.allow_credentials,
            allow_headers=listed(cors.allow_headers),
            allow_methods=listed(cors.allow_methods),
            allow_origins=listed(cors.allow_origins),
            expose_headers=listed(cors.expose_headers),
            max_age=cors.max_age,
        )

    def to_doc(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in _fields(self).items()}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CorsSettings:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
        return cls(**values)


def _fields(value: CorsSettings) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionUrlConfig:
    """One function URL: which function and qualifier it invokes, and how."""

    account_id: str
    region: str
    function_name: str
    #: ``$LATEST`` or an alias name.
    qualifier: str
    url_id: str
    auth_type: AuthType
    invoke_mode: InvokeMode = InvokeMode.BUFFERED
    cors: CorsSettings | None = None
    creation_time: str = dataclasses.field(default_factory=now_stamp)
    last_modified_time: str = ""

    @property
    def scope(self) -> Scope:
        return Scope(self.account_id, self.region)

    @property
    def alias(self) -> str | None:
        """The alias the URL invokes, None for ``$LATEST``."""
        return None if self.qualifier == LATEST else self.qualifier

    @property
    def function_arn(self) -> str:
        """The function's ARN, qualified by the alias (``$LATEST``: unqualified), as AWS shows."""
        return self.scope.function_arn(self.function_name, self.alias)

    def to_doc(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["auth_type"] = self.auth_type.value
        doc["invoke_mode"] = self.invoke_mode.value
        doc["cors"] = None if self.cors is None else self.cors.to_doc()
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Self:
        values = dict(doc)
        values["auth_type"] = AuthType(values["auth_type"])
        values["invoke_mode"] = InvokeMode(values["invoke_mode"])
        cors = values.get("cors")
        values["cors"] = None if cors is None else CorsSettings.from_doc(cors)
        return cls(**values)
