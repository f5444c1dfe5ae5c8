"""The domain's typed values for layers: a layer, its versions and their permission policies.

Like ``model``, plain frozen dataclasses with ``to_doc``/``from_doc`` for the ``Store``; the
wire shapes are rendered by ``lambdad.api.shapes``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from lambdad.control.model import Stored, new_revision, now_timestamp


@dataclasses.dataclass(frozen=True, slots=True)
class LayerRecord(Stored):
    """A layer as a whole: it outlives its versions so that numbers are never reused."""

    name: str
    last_version: int = 0
    created: str = dataclasses.field(default_factory=now_timestamp)


@dataclasses.dataclass(frozen=True, slots=True)
class LayerVersion:
    """One published layer version; immutable once written."""

    name: str
    version: int
    code_key: str
    code_sha256: str
    code_size: int
    unzipped_size: int
    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    license_info: str | None = None
    created: str = dataclasses.field(default_factory=now_timestamp)

    def matches(self, runtime: str | None, architecture: str | None) -> bool:
        """Whether the ListLayers / ListLayerVersions filters select this version."""
        if runtime is not None and runtime not in self.compatible_runtimes:
            return False
        return architecture is None or architecture in self.compatible_architectures

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["compatible_runtimes"] = list(self.compatible_runtimes)
        doc["compatible_architectures"] = list(self.compatible_architectures)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        fields = dict(doc)
        fields["compatible_runtimes"] = tuple(fields.get("compatible_runtimes", ()))
        fields["compatible_architectures"] = tuple(fields.get("compatible_architectures", ()))
        return cls(**fields)


@dataclasses.dataclass(frozen=True, slots=True)
class LayerStatement:
    """One grant of ``lambda:GetLayerVersion`` to an account, an organisation or everyone."""

    sid: str
    action: str
    principal: str
    organization_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LayerPolicy:
    """A layer version's resource-based policy; every change makes a new revision."""

    statements: tuple[LayerStatement, ...] = ()
    revision_id: str = dataclasses.field(default_factory=new_revision)

    def find(self, sid: str) -> LayerStatement | None:
        return next((s for s in self.statements if s.sid == sid), None)

    def to_doc(self) -> dict[str, Any]:
        return {
            "statements": [dataclasses.asdict(s) for s in self.statements],
            "revision_id": self.revision_id,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        return cls(
            statements=tuple(LayerStatement(**s) for s in doc.get("statements", ())),
            revision_id=doc["revision_id"],
        )
