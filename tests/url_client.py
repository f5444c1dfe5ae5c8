"""A plain HTTP client for function URLs: connects to lambdad on loopback (or at the address of
a cluster's node, ``HOSTS``) and sends the URL's host as ``Host``, as a browser resolving
``*.localhost`` (or a DNS wildcard) would."""

from __future__ import annotations

import dataclasses
import http.client
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

#: Where lambdads that are not on loopback listen, by port: the nodes of a cluster whose nodes
#: have network namespaces of their own (tests/cluster.py). Every other port is on loopback.
HOSTS: dict[int, str] = {}


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def address_of(port: int) -> str:
    """Where the lambdad on ``port`` listens: loopback, or a cluster node's own address."""
    return HOSTS.get(port, "127.0.0.1")


def call_url(
    url: str,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    port: int | None = None,
    host: str | None = None,
    timeout: float = 60.0,
) -> Answer:
    """Send one request to the function URL ``url`` (``path`` may carry a query); ``port``
    overrides the URL's (for a URL shown with another port), ``host`` the Host header."""
    parts = urllib.parse.urlsplit(url)
    port = port or parts.port or 80
    connection = http.client.HTTPConnection(address_of(port), port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host or parts.netloc)
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def make_public(lam: Any, name: str, qualifier: str | None = None) -> None:
    """Grant the public both actions an ``AuthType NONE`` URL needs (as the AWS console does
    when it creates one)."""
    where = {"Qualifier": qualifier} if qualifier else {}
    lam.add_permission(
        FunctionName=name,
        StatementId="public-url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
        **where,
    )
    lam.add_permission(
        FunctionName=name,
        StatementId="public-invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        **where,
    )
