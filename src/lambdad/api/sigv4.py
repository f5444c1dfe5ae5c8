"""SigV4 verification (reference spec section 5.6): who signed a request, or AWS's refusal.

``SigV4Verifier.verify`` takes a request as it came over the wire (method, raw path and query,
headers, the body's SHA-256) and returns the ``Verified`` caller, or raises the error AWS
answers with (all 403):

- no ``Authorization`` header and no ``X-Amz-Algorithm`` query:
  ``MissingAuthenticationTokenException: Missing Authentication Token``;
- a header that does not parse: ``IncompleteSignatureException`` (AWS's wording);
- a key id the key file does not hold: ``UnrecognizedClientException: The security token
  included in the request is invalid.``;
- a date more than five minutes off: ``InvalidSignatureException: Signature expired: <date> is
  now earlier than <now - 5 min> (<now> - 5 min.)`` (or ``Signature not yet current: ...``);
- a signature that does not match: ``InvalidSignatureException: The request signature we
  calculated does not match the signature you provided. ...``.

Both forms botocore makes are read: the ``Authorization`` header and the presigned query
(``X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=...&X-Amz-Signature=...``). A replay within
the five minutes is accepted, as AWS accepts it. A key id that
starts ``ASIA`` and is no key of the key file is a function's credential: its
``X-Amz-Security-Token`` must be the session token issued with it
(``lambdad.store.function_credentials``), and the caller is the function's role session in the
function's account (docs/accounts-and-sigv4.md). Signatures are
compared in constant time. The same verifier serves function URLs with ``AuthType=AWS_IAM``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path
from multidict import MultiMapping

from lambdad import errors
from lambdad.control.identity import Identity
from lambdad.store.access_keys import KeyRing
from lambdad.store.function_credentials import FunctionCredentials, Session

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: How far a request's date may be from the server's clock (AWS: 5 minutes).
SKEW = datetime.timedelta(minutes=5)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
#: Bodies larger than this are hashed in a worker thread.
HASH_IN_THREAD = 256 * 1024
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_INVALID_TOKEN = "The security token included in the request is invalid."


@dataclasses.dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature holds: who signed it, and the region it was signed for."""

    identity: Identity
    region: str
    #: The function session the request was signed with (a function's own SDK); None for a key
    #: of the key file.
    session: Session | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Signed:
    """What a request claims: the parts of its Authorization header (or presigned query)."""

    key_id: str
    day: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    #: The canonical query string (without ``X-Amz-Signature`` for a presigned request).
    query: str
    expires: int | None = None


def has_signature(headers: MultiMapping[str], raw_query: str) -> bool:
    """Whether the request carries any SigV4 signature at all (header or presigned query)."""
    return "Authorization" in headers or "X-Amz-Algorithm=" in raw_query


class SigV4Verifier:
    """Verifies requests against the keys of ``keys`` for ``service`` (or any of ``also``: the
    other services lambdad serves on the same port, such as ``events``)."""

    def __init__(
        self,
        keys: KeyRing,
        service: str = "lambda",
        clock: Callable[[], float] = time.time,
        also: frozenset[str] = frozenset(),
        sessions: FunctionCredentials | None = None,
    ) -> None:
        self._keys = keys
        self._sessions = sessions
        self._service = service
        self._services = also | {service}
        self._clock = clock
        self._signing_keys: dict[tuple[str, str, str, str], bytes] = {}

    def verify(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: MultiMapping[str],
        payload_hash: str,
    ) -> Verified:
        """The caller of this request, or the ``LambdaError`` AWS would answer with.

        ``raw_path`` and ``raw_query`` are as received (still percent-encoded, no ``?``);
        ``payload_hash`` is the hex SHA-256 of the body (``payload_sha256``).
        """
        signed = _parse(headers, raw_query)
        if signed.service not in self._services:
            raise errors.InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self._service}'. "
            )
        self._check_date(signed)
        key = self._keys.lookup(signed.key_id)
        session = None
        if key is None and self._sessions is not None and signed.key_id.startswith("ASIA"):
            session = self._sessions.open(signed.key_id, _session_token(headers, raw_query))
        if key is not None:
            secret = key.secret_access_key
        elif session is not None:
            secret = session.secret_access_key
        else:
            raise errors.UnrecognizedClientException(_INVALID_TOKEN)
        claimed = headers.get("X-Amz-Content-SHA256")
        if claimed is not None and claimed != UNSIGNED_PAYLOAD and claimed != payload_hash:
            raise errors.InvalidSignatureException(_MISMATCH)
        # A presigned URL may have been signed over UNSIGNED-PAYLOAD instead of the body.
        hashes = [claimed or payload_hash]
        if signed.expires is not None and hashes[0] != UNSIGNED_PAYLOAD:
            hashes.append(UNSIGNED_PAYLOAD)
        given = _bytes(signed.signature)
        if not any(
            hmac.compare_digest(
                self._signature(secret, signed, method, raw_path, headers, h),
                given,
            )
            for h in hashes
        ):
            raise errors.InvalidSignatureException(_MISMATCH)
        if session is not None:
            identity = Identity(
                session.account_id,
                session.access_key_id,
                f"{session.role_name}/{session.function_name}",
                f"{session.role_id}:{session.function_name}",
                session.arn,
            )
            return Verified(identity, signed.region, session)
        assert key is not None
        identity = Identity(key.account_id, key.access_key_id, key.user_name, key.user_id)
        return Verified(identity, signed.region)

    def identity_of(self, access_key_id: str, secret_access_key: str) -> Identity | None:
        """Who holds this key pair (the web console's login), or None: an unknown key id or a
        secret that does not match (compared in constant time)."""
        key = self._keys.lookup(access_key_id)
        if key is None or not hmac.compare_digest(
            _bytes(key.secret_access_key), _bytes(secret_access_key)
        ):
            return None
        return Identity(key.account_id, key.access_key_id, key.user_name, key.user_id)

    def holds(self, access_key_id: str) -> bool:
        """Whether the key file still holds this key id (a console session ends with its key)."""
        return self._keys.lookup(access_key_id) is not None

    async def verify_body(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: MultiMapping[str],
        body: bytes,
    ) -> Verified:
        """``verify`` of a request whose whole body is at hand; a large body is hashed in a
        worker thread. (Function URLs with ``AuthType=AWS_IAM`` call this.)"""
        if len(body) > HASH_IN_THREAD:
            digest = await asyncio.to_thread(payload_sha256, body)
        else:
            digest = payload_sha256(body)
        return self.verify(method, raw_path, raw_query, headers, digest)

    def _check_date(self, signed: _Signed) -> None:
        try:
            when = datetime.datetime.strptime(signed.amz_date, _AMZ_DATE).replace(
                tzinfo=datetime.UTC
            )
        except ValueError:
            raise errors.IncompleteSignatureException(
                f"Date must be in ISO-8601 'basic format'. Got '{signed.amz_date}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601"
            ) from None
        if signed.day != signed.amz_date[:8]:
            raise errors.InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{signed.day}' != '{signed.amz_date[:8]}', from "
                f"'{signed.amz_date}'."
            )
        now = datetime.datetime.fromtimestamp(int(self._clock()), datetime.UTC)
        if signed.expires is not None:
            if now > when + datetime.timedelta(seconds=signed.expires):
                raise errors.InvalidSignatureException("Signature expired")
            return
        if when < now - SKEW:
            raise errors.InvalidSignatureException(
                f"Signature expired: {signed.amz_date} is now earlier than "
                f"{(now - SKEW).strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} - 5 min.)"
            )
        if when > now + SKEW:
            raise errors.InvalidSignatureException(
                f"Signature not yet current: {signed.amz_date} is still later than "
                f"{(now + SKEW).strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} + 5 min.)"
            )

    def _signature(
        self,
        secret: str,
        signed: _Signed,
        method: str,
        raw_path: str,
        headers: MultiMapping[str],
        payload_hash: str,
    ) -> bytes:
        canonical = "\n".join(
            (
                method.upper(),
                quote(normalize_url_path(raw_path), safe="/~"),
                signed.query,
                _canonical_headers(headers, signed.signed_headers),
                ";".join(signed.signed_headers),
                payload_hash,
            )
        )
        scope = f"{signed.day}/{signed.region}/{signed.service}/aws4_request"
        to_sign = "\n".join(
            (ALGORITHM, signed.amz_date, scope, hashlib.sha256(_bytes(canonical)).hexdigest())
        )
        key = self._signing_key(secret, signed.day, signed.region, signed.service)
        return hmac.new(key, _bytes(to_sign), hashlib.sha256).hexdigest().encode()

    def _signing_key(self, secret: str, day: str, region: str, service: str) -> bytes:
        """The derived key of (secret, day, region, service), computed once a day per key,
        region and service."""
        cache_key = (secret, day, region, service)
        key = self._signing_keys.get(cache_key)
        if key is None:
            key = _bytes("AWS4" + secret)
            for part in (day, region, service, "aws4_request"):
                key = hmac.new(key, _bytes(part), hashlib.sha256).digest()
            if len(self._signing_keys) >= 4096:
                self._signing_keys.clear()
            self._signing_keys[cache_key] = key
        return key


def _session_token(headers: MultiMapping[str], raw_query: str) -> str | None:
    """The request's ``X-Amz-Security-Token`` (header, or presigned query parameter)."""
    token = headers.get("X-Amz-Security-Token")
    if token is None:
        for key, value in _query_pairs(raw_query):
            if key == "X-Amz-Security-Token":
                return unquote(value)
    return token


def _bytes(text: str) -> bytes:
    """``text`` as sent: header bytes that were not UTF-8 come back as they arrived."""
    return text.encode("utf-8", "surrogateescape")


def payload_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256


def _canonical_headers(headers: MultiMapping[str], names: tuple[str, ...]) -> str:
    lines = []
    for name in names:
        value = ",".join(" ".join(v.split()) for v in headers.getall(name, ()))
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    if not raw_query:
        return []
    pairs = []
    for part in raw_query.split("&"):
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def _parse(headers: MultiMapping[str], raw_query: str) -> _Signed:
    auth = headers.get("Authorization")
    if auth is None:
        if "X-Amz-Algorithm=" in raw_query:
            return _parse_query(raw_query)
        raise errors.MissingAuthenticationTokenException("Missing Authentication Token")
    return _parse_header(auth, headers, _canonical_query(_query_pairs(raw_query)))


def _parse_header(auth: str, headers: MultiMapping[str], query: str) -> _Signed:
    algorithm, _, rest = auth.strip().partition(" ")
    params: dict[str, str] = {}
    # Another scheme (``Bearer ...``) is reported as AWS does: as missing every parameter.
    for item in rest.split(",") if algorithm == ALGORITHM else ():
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq:
            raise errors.IncompleteSignatureException(
                f"'{item}' not a valid key=value pair (missing equal-sign) in Authorization "
                f"header: '{auth}'."
            )
        params[name.strip()] = value.strip()
    amz_date = headers.get("X-Amz-Date") or _from_http_date(headers.get("Date"))
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if name not in params
    ]
    if amz_date is None:
        missing.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if missing:
        raise errors.IncompleteSignatureException(" ".join(missing) + f" Authorization={auth}")
    assert amz_date is not None
    return _signed(
        params["Credential"], params["SignedHeaders"], params["Signature"], amz_date, query
    )


def _parse_query(raw_query: str) -> _Signed:
    pairs = _query_pairs(raw_query)
    values = dict(pairs)
    missing = [
        name
        for name in ("X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date")
        if name not in values
    ]
    if missing:
        raise errors.IncompleteSignatureException(
            " ".join(f"AWS query-string parameters must include '{name}'." for name in missing)
            + " Re-examine the query-string parameters."
        )
    if values.get("X-Amz-Algorithm") != ALGORITHM:
        raise errors.IncompleteSignatureException(
            f"Unsupported AWS 'algorithm': '{values.get('X-Amz-Algorithm')}'"
        )
    try:
        expires = int(values.get("X-Amz-Expires", "604800"))
    except ValueError:
        raise errors.IncompleteSignatureException("X-Amz-Expires should be a number") from None
    query = _canonical_query([(k, v) for k, v in pairs if k != "X-Amz-Signature"])
    credential = unquote(values["X-Amz-Credential"])
    signed_headers = unquote(values["X-Amz-SignedHeaders"])
    signed = _signed(
        credential, signed_headers, values["X-Amz-Signature"], values["X-Amz-Date"], query
    )
    return dataclasses.replace(signed, expires=expires)


def _signed(
    credential: str, signed_headers: str, signature: str, amz_date: str, query: str
) -> _Signed:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise errors.IncompleteSignatureException(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{credential}'"
        )
    names = tuple(signed_headers.split(";"))
    if "host" not in names:
        raise errors.IncompleteSignatureException(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    key_id, day, region, service, _ = parts
    return _Signed(key_id, day, region, service, names, signature, amz_date, query)


def _from_http_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC).strftime(_AMZ_DATE)
