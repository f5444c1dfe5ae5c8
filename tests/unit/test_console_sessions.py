"""The web console's sessions and login check (``lambdad.api.console``), and its setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdad.api.console import SESSION_SECONDS, Sessions
from lambdad.api.sigv4 import SigV4Verifier, Verified
from lambdad.config import load_settings
from lambdad.control.identity import Identity
from lambdad.store.access_keys import KeyFile, KeyRing

ALICE = Verified(Identity("111122223333", "AKIAEXAMPLE", "alice", "AIDAEXAMPLE"), "eu-west-1")


def test_a_session_names_its_caller_until_it_expires_or_ends() -> None:
    """A token names the caller it was opened for for 12 hours; an unknown, expired or ended
    token names nobody."""
    sessions = Sessions()
    token = sessions.open(ALICE, now=1000.0)
    assert sessions.caller(token, 1000.0 + SESSION_SECONDS - 1) == ALICE
    assert sessions.caller(token, 1000.0 + SESSION_SECONDS) is None
    assert sessions.caller("not-a-token", 1000.0) is None
    assert sessions.caller(None, 1000.0) is None
    other = sessions.open(ALICE, now=1000.0)
    assert other != token
    sessions.end(other)
    assert sessions.caller(other, 1001.0) is None


def test_login_check_takes_only_the_key_files_secret(tmp_path: Path) -> None:
    """The console's login accepts a key id with its own secret only, and a session ends with
    its key (``holds``)."""
    key = KeyFile(tmp_path).create("111122223333", "alice")
    verifier = SigV4Verifier(KeyRing(tmp_path))
    identity = verifier.identity_of(key.access_key_id, key.secret_access_key)
    assert identity is not None
    assert identity.account_id == "111122223333"
    assert identity.name == "alice"
    assert verifier.identity_of(key.access_key_id, key.secret_access_key + "x") is None
    assert verifier.identity_of("AKIANOSUCHKEY0000000", key.secret_access_key) is None
    assert verifier.holds(key.access_key_id)
    KeyFile(tmp_path).delete(key.access_key_id)
    assert not verifier.holds(key.access_key_id)


def test_console_port_setting() -> None:
    """``LAMBDAD_CONSOLE_PORT``: 9001 by default, -1 (no console), 0 (any free port) or a port;
    anything else stops lambdad at start, naming the setting."""
    assert load_settings(environ={}).console_port == 9001
    assert load_settings(environ={"LAMBDAD_CONSOLE_PORT": "9001"}).console_port == 9001
    for bad in ("-2", "65536"):
        with pytest.raises(ValueError, match="console_port"):
            load_settings(environ={"LAMBDAD_CONSOLE_PORT": bad})
