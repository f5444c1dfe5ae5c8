"""The Amazon MQ settings (``LAMBDAD_MQ_BROKERS``, ``LAMBDAD_SECRETS``) as ``config.py`` reads
and checks them."""

from __future__ import annotations

import json

import pytest

from lambdad.config import load_settings

BROKER_ARN = "arn:aws:mq:us-east-1:000000000000:broker:test-broker:b-1234a5b6-78cd-901e"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:broker-guest"


def test_broken_mq_settings_are_refused_when_lambdad_starts() -> None:
    """``LAMBDAD_MQ_BROKERS`` must be a JSON object of amqp:// or amqps:// URLs and
    ``LAMBDAD_SECRETS`` one of objects of strings: anything else stops lambdad at start with
    the setting's name, never later in a poller."""
    for name, value in [
        ("LAMBDAD_MQ_BROKERS", "not json"),
        ("LAMBDAD_MQ_BROKERS", json.dumps([BROKER_ARN])),
        ("LAMBDAD_MQ_BROKERS", json.dumps({BROKER_ARN: "http://127.0.0.1:5672"})),
        ("LAMBDAD_SECRETS", json.dumps({SECRET_ARN: "guest"})),
        ("LAMBDAD_SECRETS", json.dumps({SECRET_ARN: {"username": 7}})),
    ]:
        with pytest.raises(ValueError, match=name[len("LAMBDAD_") :].lower()):
            load_settings(environ={name: value})
    good = load_settings(
        environ={
            "LAMBDAD_MQ_BROKERS": json.dumps({BROKER_ARN: "amqps://broker.example:5671"}),
            "LAMBDAD_SECRETS": json.dumps({SECRET_ARN: {"username": "u", "password": "p"}}),
        }
    )
    assert good.mq_broker_urls == {BROKER_ARN: "amqps://broker.example:5671"}
    assert good.secret_values[SECRET_ARN] == {"username": "u", "password": "p"}
