"""Recursive loop detection: counting a chain's invocations in the trace header's ``Lineage``.

Every invocation runs with an X-Ray trace header, ``Root=1-…;Parent=…;Sampled=0;Lineage=…``:
the caller's ``X-Amzn-Trace-Id`` when it sent one, else a new one, as Lambda does whether or
not active tracing is on. The runtime gets it as ``Lambda-Runtime-Trace-Id`` and exports it
as ``_X_AMZN_TRACE_ID``; the AWS SDKs copy that variable into the ``X-Amzn-Trace-Id`` of every
call the function makes (botocore: ``add_recursion_detection_header``, percent-encoding ``|``),
so an invocation the function causes arrives with its parent's header.

``Lineage`` holds one ``<key>:<count>`` entry per function of the chain, joined by ``|``; the
key is the first 8 hex digits of the SHA-256 of the function's unqualified ARN, so a loop
through versions and aliases of one function counts once. Each invocation adds one to its
function's count. An invocation that arrives with its function's count at ``MAX_HOPS``
already is the next one of a loop that has run ``MAX_HOPS`` times: ``Invoker.run`` stops it
unless the function's recursion setting is ``Allow``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import urllib.parse

#: Invocations of one function in one chain before the next one is stopped (AWS: 16).
MAX_HOPS = 16
_LEADING = ("Root", "Parent", "Sampled", "Lineage")


def _fields(header: str | None) -> dict[str, str]:
    """The ``key=value`` fields of a trace header, percent-decoded; malformed ones dropped."""
    if not header:
        return {}
    if "%" in header:
        header = urllib.parse.unquote(header)
    fields: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key and key != "Self":
            fields[key] = value
    return fields


def _format(fields: dict[str, str]) -> str:
    ordered = [k for k in _LEADING if k in fields] + [k for k in fields if k not in _LEADING]
    return ";".join(f"{key}={fields[key]}" for key in ordered)


def new_root() -> str:
    """An X-Ray trace id: ``1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>``."""
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def with_root(header: str | None) -> str:
    """``header`` with a ``Root`` (a new trace when it has none), for an accepted event."""
    fields = _fields(header)
    fields.setdefault("Root", new_root())
    return _format(fields)


#: Each function's ``Lineage`` key, worked out once (bounded: cleared when full).
_KEYS: dict[str, str] = {}
_KEYS_KEPT = 4096


def key_of(function_arn: str) -> str:
    """A function's ``Lineage`` key."""
    key = _KEYS.get(function_arn)
    if key is None:
        if len(_KEYS) >= _KEYS_KEPT:
            _KEYS.clear()
        key = _KEYS[function_arn] = hashlib.sha256(function_arn.encode()).hexdigest()[:8]
    return key


def _lineage(raw: str | None) -> dict[str, int]:
    entries: dict[str, int] = {}
    for entry in (raw or "").split("|"):
        key, _, count = entry.partition(":")
        if key and count.isdigit():
            entries[key] = int(count)
    return entries


def next_hop(header: str | None, function_arn: str) -> tuple[str, int]:
    """(the header this invocation runs with, how many times the chain ran the function
    before it). The header gets a ``Root`` when it has none, a new ``Parent`` (this
    invocation's segment), ``Sampled=0`` unless set, and the function's count plus one."""
    if not header:
        # A chain's first invocation (most are): the header is written out directly, as the
        # general path below writes it, from one read of 20 random bytes (the Root's 96 bits
        # and the Parent's 64).
        random = os.urandom(20).hex()
        root = f"1-{int(time.time()):08x}-{random[:24]}"
        first = f"{key_of(function_arn)}:1"
        return f"Root={root};Parent={random[24:]};Sampled=0;Lineage={first}", 0
    fields = _fields(header)
    fields.setdefault("Root", new_root())
    fields["Parent"] = secrets.token_hex(8)
    fields.setdefault("Sampled", "0")
    lineage = _lineage(fields.get("Lineage"))
    key = key_of(function_arn)
    hops = lineage.get(key, 0)
    lineage[key] = hops + 1
    fields["Lineage"] = "|".join(f"{k}:{count}" for k, count in lineage.items())
    return _format(fields), hops


def field(header: str | None, name: str) -> str | None:
    """One field of a trace header (None when absent)."""
    return _fields(header).get(name)


def fields(header: str | None) -> dict[str, str]:
    """The fields of a trace header."""
    return _fields(header)


def with_field(header: str, name: str, value: str) -> str:
    """``header`` with ``name`` set to ``value``."""
    fields = _fields(header)
    if fields.get(name) == value:
        return header
    fields[name] = value
    return _format(fields)
