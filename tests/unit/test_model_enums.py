"""The function states and reasons are the ones the ``lambda`` model lambdad serves lists."""

from __future__ import annotations

import enum

import pytest

from lambdad.api.wire import model as wire_model
from lambdad.control import model


@pytest.mark.parametrize(
    ("shape", "values"),
    [
        ("State", model.State),
        ("StateReasonCode", model.StateReasonCode),
        ("LastUpdateStatus", model.UpdateStatus),
        ("LastUpdateStatusReasonCode", model.LastUpdateStatusReasonCode),
    ],
)
def test_enum_has_exactly_the_model_values(shape: str, values: type[enum.StrEnum]) -> None:
    """Lambda reports ``State``, ``StateReasonCode``, ``LastUpdateStatus`` and
    ``LastUpdateStatusReasonCode`` from these value sets; lambdad knows every one, no other."""
    service = wire_model.service("lambda")
    assert [member.value for member in values] == service.shape_for(shape).enum
