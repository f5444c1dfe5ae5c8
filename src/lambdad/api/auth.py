"""SigV4: which region (and access key) a request speaks for.

lambdad accepts any credentials (a self-hosted endpoint has no IAM); it reads the credential
scope so that the region a client is configured for is the region its resources live in.
"""

from __future__ import annotations

import re

from multidict import CIMultiDictProxy

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


def region_of(headers: CIMultiDictProxy[str], default: str) -> str:
    auth = headers.get("Authorization", "")
    match = _CREDENTIAL.search(auth)
    return match.group(3) if match else default
