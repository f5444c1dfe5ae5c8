"""CORS for function URLs, from the URL config's ``Cors`` (AWS's behaviour, docs/function-urls.md).

- A URL without ``Cors`` adds nothing; an ``OPTIONS`` request then reaches the function.
- With ``Cors``, a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  is answered by lambdad without invoking the function: ``200`` with an empty body, and the
  CORS headers only when the origin, the requested method and every requested header are
  allowed. A disallowed preflight gets the same ``200`` without CORS headers, so the browser
  refuses the call.
- Any other request with an allowed ``Origin`` gets ``Access-Control-Allow-Origin``
  (``*`` when the config allows every origin without credentials, else the origin itself),
  ``Access-Control-Allow-Credentials`` and ``Access-Control-Expose-Headers`` as configured,
  and ``Vary: Origin``; these replace any CORS headers the function returned. A disallowed
  origin still reaches the function, and its response carries no CORS headers (the browser
  hides it from the page).

Origins match exactly (case-insensitive) or by ``*``; methods and headers case-insensitively,
or by ``*``.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDictProxy

from lambdad.control.url_model import CorsSettings


def _allows(allowed: Iterable[str] | None, value: str) -> bool:
    return any(a == "*" or a.lower() == value.lower() for a in allowed or ())


def _allow_origin(cors: CorsSettings, origin: str) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, None when it is not allowed."""
    if not _allows(cors.allow_origins, origin):
        return None
    if "*" in (cors.allow_origins or ()) and not cors.allow_credentials:
        return "*"
    return origin


def is_preflight(method: str, headers: CIMultiDictProxy[str]) -> bool:
    """An ``OPTIONS`` request naming an origin and the method it means to use."""
    return (
        method == "OPTIONS" and "Origin" in headers and "Access-Control-Request-Method" in headers
    )


def preflight_headers(cors: CorsSettings, headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The headers of a preflight's answer (none when the request is not allowed)."""
    allow_origin = _allow_origin(cors, headers["Origin"])
    method = headers["Access-Control-Request-Method"].strip()
    requested = [
        h.strip() for h in headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()
    ]
    if (
        allow_origin is None
        or not _allows(cors.allow_methods, method)
        or not all(_allows(cors.allow_headers, h) for h in requested)
    ):
        return []
    out = [("Access-Control-Allow-Origin", allow_origin)]
    if cors.allow_methods:
        out.append(("Access-Control-Allow-Methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        out.append(("Access-Control-Allow-Headers", ",".join(cors.allow_headers)))
    if cors.allow_credentials:
        out.append(("Access-Control-Allow-Credentials", "true"))
    if cors.max_age is not None:
        out.append(("Access-Control-Max-Age", str(cors.max_age)))
    out.append(("Vary", "Origin"))
    return out


def response_headers(cors: CorsSettings, origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a request from ``origin`` (none if not allowed)."""
    allow_origin = None if origin is None else _allow_origin(cors, origin)
    if allow_origin is None:
        return []
    out = [("Access-Control-Allow-Origin", allow_origin)]
    if cors.allow_credentials:
        out.append(("Access-Control-Allow-Credentials", "true"))
    if cors.expose_headers:
        out.append(("Access-Control-Expose-Headers", ",".join(cors.expose_headers)))
    out.append(("Vary", "Origin"))
    return out


def without_cors(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` less the CORS headers a function set itself (the config's replace them)."""
    return [(n, v) for n, v in headers if not n.lower().startswith("access-control-")]
