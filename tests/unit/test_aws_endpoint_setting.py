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


def test_event_sources_have_endpoints_of_their_own_falling_back_to_the_shared_one() -> None:
    """``LAMBDAD_AWS_ENDPOINT_URL_SQS`` (``_KINESIS``, ``_DYNAMODBSTREAMS``) overrides the
    shared endpoint for that service only, as botocore's ``AWS_ENDPOINT_URL_<SERVICE>`` does."""
    settings = load_settings(
        environ={
            "LAMBDAD_AWS_ENDPOINT_URL": "http://shared:1",
            "LAMBDAD_AWS_ENDPOINT_URL_SQS": "http://queues:2",
        }
    )
    assert settings.endpoint_of("sqs") == "http://queues:2"
    assert settings.endpoint_of("kinesis") == "http://shared:1"
    assert settings.endpoint_of("dynamodbstreams") == "http://shared:1"
    assert load_settings(environ={}).endpoint_of("sqs") == ""
    with pytest.raises(ValueError, match="aws_endpoint_url_kinesis: expected an http"):
        load_settings(environ={"LAMBDAD_AWS_ENDPOINT_URL_KINESIS": "kinesis:4566"})
