"""What the runtime layer needs to know of a function version, and nothing more.

The invoke path builds a ``FunctionSpec`` from the control plane's configuration; the runtime
never sees the control plane itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class Place:
    """Whose function it is and where: its account and region. Environments of two accounts'
    same-named functions never share a pool."""

    account_id: str
    region: str


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    version: str
    #: Changes whenever the configuration does; environments of an older revision retire.
    revision_id: str
    runtime: str | None
    handler: str | None
    #: The code blob's key in the ``BlobStore``.
    code_key: str
    memory_size: int
    timeout: int
    ephemeral_storage: int
    environment: Mapping[str, str]
    log_group: str
    log_format: str = "Text"
    log_level: str | None = None
    #: ``LoggingConfig.SystemLogLevel`` (JSON format only): WARN leaves Lambda's lines out.
    system_log_level: str | None = None
    #: The layers' blob keys in the ``BlobStore``, unpacked in this order into ``/opt``.
    layer_keys: tuple[str, ...] = ()
    #: A published version with ``SnapStart.ApplyOn=PublishedVersions``: restored from a template.
    snap_start: bool = False
    #: The execution role's ARN (function credentials in SigV4 mode name its role session).
    role: str = ""
