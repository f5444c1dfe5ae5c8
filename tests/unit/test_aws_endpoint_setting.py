"""Unit tests of the settings that reach AWS-compatible services for destinations and DLQs."""

from __future__ import annotations

import pytest

from lambdad.config import load_settings


def test_the_endpoint_and_credentials_come_from_the_environment() -> None:
    """``LAMBDAD_AWS_*`` variables set the endpoint and credentials; none are set by default."""
    assert load_settings(environ={}).aws_endpoint_url == ""
    settings = load_settings(
        environ={
            "LAMBDAD_AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "LAMBDAD_AWS_ACCESS_KEY_ID": "key",
            "LAMBDAD_AWS_SECRET_ACCESS_KEY": "secret",
        }
    )
    assert settings.aws_endpoint_url == "http://127.0.0.1:4566"
    assert (settings.aws_access_key_id, settings.aws_secret_access_key) == ("key", "secret")


def test_an_endpoint_that_is_not_a_url_is_refused_at_start() -> None:
    """A malformed endpoint fails when lambdad starts, not at every delivery."""
    with pytest.raises(ValueError, match="aws_endpoint_url: expected an http"):
        load_settings(environ={"LAMBDAD_AWS_ENDPOINT_URL": "localhost:4566"})
