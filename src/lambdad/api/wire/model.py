"""botocore's service models (``lambda``, ``scheduler``, ``events``, ...), loaded once (no
network): Lambda's from the copy shipped in ``models/`` (botocore 1.44.18's, which has the durable
execution operations the installed botocore lacks: docs/wire-parsing.md), the others from the
installed botocore.

An :class:`Operation` is what the decoder needs of one call: where each input member travels
(URI label, query string, header, JSON body or raw payload) and the shapes that constrain it.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from botocore.loaders import Loader
from botocore.model import ServiceModel

#: Where a member travels on the wire.
LABEL, QUERY, HEADER, BODY = "uri", "querystring", "header", "body"


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One input member: its model name, wire name (label, query key or header) and shape."""

    name: str
    wire_name: str
    location: str
    shape: Any
    required: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    name: str
    #: The botocore service the operation belongs to (``lambda``, ``scheduler``).
    service: str
    method: str
    uri: str
    #: The input shape's name (``CreateFunctionRequest``), used in parse messages.
    input_name: str
    #: The input structure shape (None for an operation without input).
    shape: Any
    members: tuple[Member, ...]
    #: The member that is the whole raw body (Invoke's ``Payload``), if any.
    payload: str | None
    #: Whether the body is a JSON document of members (no raw payload, some body member).
    has_json_body: bool


#: The service whose model an operation is looked up in when none is named.
LAMBDA = "lambda"


#: botocore data searched before the installed botocore's: the ``lambda`` model lambdad serves.
#: A client that should speak the same model searches it first too (a botocore session's
#: ``data_loader.search_paths``, or ``AWS_DATA_PATH`` for the AWS CLI).
MODELS = Path(__file__).with_name("models")


@functools.cache
def _loader() -> Loader:
    return Loader(extra_search_paths=[str(MODELS)])


@functools.cache
def service(name: str = LAMBDA) -> ServiceModel:
    """The service model ``name`` (``lambda``, ``scheduler``): the shipped copy where there is
    one (``MODELS``), else the installed botocore's."""
    return ServiceModel(_loader().load_service_model(name, "service-2"), name)


@functools.cache
def operation(name: str, service_name: str = LAMBDA) -> Operation:
    """The operation ``name`` (``CreateFunction``) of ``service_name``'s model; KeyError-like
    botocore error if unknown."""
    op = service(service_name).operation_model(name)
    shape = op.input_shape
    members: list[Member] = []
    payload = None
    if shape is not None:
        payload = shape.serialization.get("payload")
        required = set(shape.required_members)
        for member_name, member in shape.members.items():
            location = member.serialization.get("location", BODY)
            members.append(
                Member(
                    name=member_name,
                    wire_name=member.serialization.get("name", member_name),
                    location=location,
                    shape=member,
                    required=member_name in required,
                )
            )
    return Operation(
        name=name,
        service=service_name,
        method=op.http["method"],
        uri=op.http["requestUri"],
        input_name=shape.name if shape is not None else f"{name}Request",
        shape=shape,
        members=tuple(members),
        payload=payload,
        has_json_body=payload is None and any(m.location == BODY for m in members),
    )
