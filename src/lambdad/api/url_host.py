"""Function URL hosts: writing a URL (``FunctionUrl``) and reading one from a request's Host.

A URL is ``<scheme>://<url-id>.lambda-url.<region>.<domain>[:<port>]/``. Any request whose Host
is ``<url-id>.lambda-url.<region>.<anything>`` (with or without a port, any case) is a URL
request; everything else is for the API.
"""

from __future__ import annotations

import dataclasses
import re

from lambdad.config import Settings

MARK = ".lambda-url."
#: ``<url-id>.lambda-url.<region>.<rest>``: the url-id and region as AWS forms them (the
#: url-id of a config is 32 lowercase alphanumerics; any other label is an unknown one).
_HOST = re.compile(r"([a-z0-9-]{1,63})\.lambda-url\.([a-z0-9-]{1,32})\.[^\s/]+", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True, slots=True)
class UrlShape:
    """How ``FunctionUrl`` is written (``LAMBDAD_URL_SCHEME``/``_DOMAIN``/``_PORT``; port 0:
    the port the request came in on)."""

    scheme: str = "http"
    domain: str = "localhost"
    port: int = 0

    @classmethod
    def of(cls, settings: Settings) -> UrlShape:
        return cls(settings.url_scheme, settings.url_domain, settings.url_port)

    def url(self, url_id: str, region: str, local_port: int) -> str:
        port = self.port or local_port
        shown = "" if _DEFAULT_PORTS.get(self.scheme) == port else f":{port}"
        return f"{self.scheme}://{url_id}.lambda-url.{region}.{self.domain}{shown}/"


def is_url_host(host: str) -> bool:
    """Whether a Host header names a function URL (cheap: one substring search)."""
    return MARK in host.lower()


def parse_host(host: str) -> tuple[str, str] | None:
    """``(url_id, region)`` of a URL Host, lowercased; None when it is malformed."""
    match = _HOST.fullmatch(host.strip().lower())
    if match is None:
        return None
    return match[1], match[2]
