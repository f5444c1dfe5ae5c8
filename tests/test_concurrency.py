"""Reserved concurrency and throttling through boto3: Put/Get/DeleteFunctionConcurrency, the
account's figures, and 429 TooManyRequestsException with AWS's Reason and Retry-After."""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from tests.conftest import MEET, Rendezvous, Server, invoke_json, refused, unique, wait_until

REGION = "eu-central-1"
RESERVED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT = "ConcurrentInvocationLimitExceeded"
BELOW_MINIMUM = (
    "Specified ReservedConcurrentExecutions for function decreases account's "
    "UnreservedConcurrentExecution below its minimum value of [{}]."
)

#: Waits at the test's rendezvous, then answers which connection it was.
WAITER = MEET + "\n\ndef handler(event, context):\n    return {'met': meet()}\n"


def create(client: Any, new_function: Any, code: str = WAITER, **kwargs: Any) -> str:
    return str(new_function(code, client=client, **kwargs)["FunctionName"])


def throttle_of(future: Future[Any]) -> dict[str, Any]:
    """The 429 ``future`` ended with: its error, Reason and headers."""
    error = future.exception()
    assert isinstance(error, ClientError), future.result()
    response = error.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429, response
    return {
        "code": response["Error"]["Code"],
        "message": response["Error"]["Message"],
        "reason": response.get("Reason"),
        "retry_after": response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"),
    }


def release(service: Rendezvous) -> None:
    """Join ``service`` as its last party, so every handler waiting there goes on."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.recv(16)


def test_function_concurrency_round_trip(server: Server, new_function: Any) -> None:
    """Put answers the reservation, Get and GetFunction show it, Delete removes it (by ARN)."""
    client = server.client(REGION)
    name = create(client, new_function)
    arn = f"arn:aws:lambda:{REGION}:000000000000:function:{name}"
    try:
        assert (
            client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
            is None
        )
        assert "Concurrency" not in client.get_function(FunctionName=name)
        put = client.put_function_concurrency(FunctionName=arn, ReservedConcurrentExecutions=7)
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert put["ReservedConcurrentExecutions"] == 7
        got = client.get_function_concurrency(FunctionName=name)
        assert got["ReservedConcurrentExecutions"] == 7
        assert client.get_function(FunctionName=arn)["Concurrency"] == {
            "ReservedConcurrentExecutions": 7
        }
        settings = client.get_account_settings()["AccountLimit"]
        assert settings["UnreservedConcurrentExecutions"] == settings["ConcurrentExecutions"] - 7
        deleted = client.delete_function_concurrency(FunctionName=arn)
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(
            FunctionName=name
        )
        settings = client.get_account_settings()["AccountLimit"]
        assert settings["UnreservedConcurrentExecutions"] == settings["ConcurrentExecutions"]
    finally:
        client.delete_function(FunctionName=name)


def test_function_concurrency_errors(server: Server, new_function: Any) -> None:
    """A missing function is 404, a negative value a ValidationException, and taking the
    unreserved pool under 100 AWS's InvalidParameterValueException."""
    client = server.client(REGION)
    missing = unique()
    with refused("ResourceNotFoundException", 404):
        client.put_function_concurrency(FunctionName=missing, ReservedConcurrentExecutions=1)
    with refused("ResourceNotFoundException", 404):
        client.get_function_concurrency(FunctionName=missing)
    with refused("ResourceNotFoundException", 404):
        client.delete_function_concurrency(FunctionName=missing)
    name = create(client, new_function)
    try:
        unchecked = server.client(REGION, parameter_validation=False)
        with refused("ValidationException", 400):
            unchecked.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1)
        with refused("InvalidParameterValueException", 400, BELOW_MINIMUM.format(100)):
            client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=901)
        assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(
            FunctionName=name
        )
    finally:
        client.delete_function(FunctionName=name)


def test_reserved_zero_throttles_every_invoke(server: Server, new_function: Any) -> None:
    """Reserved concurrency 0 answers every invoke with 429, the reservation's Reason and a
    Retry-After header; deleting it lets the function run again."""
    client = server.client(REGION)
    name = create(client, new_function, "def handler(e, c):\n    return 'ran'\n")
    try:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        with ThreadPoolExecutor(1) as pool:
            throttled = throttle_of(pool.submit(client.invoke, FunctionName=name))
        assert throttled == {
            "code": "TooManyRequestsException",
            "message": "Rate Exceeded.",
            "reason": RESERVED,
            "retry_after": throttled["retry_after"],
        }
        assert int(throttled["retry_after"]) >= 1
        client.delete_function_concurrency(FunctionName=name)
        assert invoke_json(client, name)[1] == "ran"
    finally:
        client.delete_function(FunctionName=name)


def test_reservation_caps_concurrent_invokes(
    server: Server, new_function: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """With a reservation of 2, five concurrent invokes give two runs and three throttles;
    once the two finish their leases are back and the function runs again."""
    client = server.client(REGION)
    service = rendezvous(3)
    name = create(client, new_function, Environment={"Variables": service.env})
    try:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(invoke_json, client, name, {}) for _ in range(5)]
            wait_until(lambda: sum(f.done() for f in futures) >= 3, timeout=60)
            wait_until(lambda: service.count >= 2, timeout=60)
            throttled = [throttle_of(f) for f in futures if f.done()]
            assert [t["reason"] for t in throttled] == [RESERVED] * 3
            assert service.count == 2
            release(service)
            ran = [f.result(timeout=60)[1] for f in futures if f.exception(timeout=60) is None]
        assert sorted(r["met"] for r in ran) == [1, 2]
        service.parties = 1
        assert invoke_json(client, name, {})[1] == {"met": 4}
    finally:
        client.delete_function(FunctionName=name)


def test_account_limit_throttles_the_unreserved_pool(
    start_server: Callable[..., Server],
    new_function: Any,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """With an account limit of 3 and no reservation, a fourth concurrent invoke of any
    function is throttled with the account's Reason until the three finish."""
    srv = start_server({"LAMBDAD_CONCURRENCY_LIMIT": "3"})
    client = srv.client()
    service = rendezvous(4)
    name = create(client, new_function, Environment={"Variables": service.env})
    other = create(client, new_function, "def handler(e, c):\n    return 'other'\n")
    settings = client.get_account_settings()["AccountLimit"]
    assert (settings["ConcurrentExecutions"], settings["UnreservedConcurrentExecutions"]) == (3, 3)
    with refused("InvalidParameterValueException", 400, BELOW_MINIMUM.format(3)):
        client.put_function_concurrency(FunctionName=other, ReservedConcurrentExecutions=1)
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(invoke_json, client, name, {}) for _ in range(3)]
        wait_until(lambda: service.count >= 3, timeout=60)
        for target in (name, other):
            throttled = throttle_of(pool.submit(client.invoke, FunctionName=target))
            assert (throttled["reason"], throttled["message"]) == (ACCOUNT, "Rate Exceeded.")
        release(service)
        assert sorted(f.result(timeout=60)[1]["met"] for f in running) == [1, 2, 3]
    assert invoke_json(client, other)[1] == "other"


def test_reservations_survive_a_restart(
    start_server: Callable[..., Server], new_function: Any
) -> None:
    """A reservation is kept across a restart, in GetFunctionConcurrency and in the account's
    unreserved figure, and still bounds what more can be reserved."""
    srv = start_server({"LAMBDAD_CONCURRENCY_LIMIT": "105"})
    client = srv.client()
    first = create(client, new_function)
    second = create(client, new_function)
    client.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=4)
    srv.stop()
    again = start_server({"LAMBDAD_CONCURRENCY_LIMIT": "105"}, data_dir=srv.data_dir)
    client = again.client()
    assert client.get_function_concurrency(FunctionName=first)["ReservedConcurrentExecutions"] == 4
    settings = client.get_account_settings()["AccountLimit"]
    assert (settings["ConcurrentExecutions"], settings["UnreservedConcurrentExecutions"]) == (
        105,
        101,
    )
    with refused("InvalidParameterValueException", 400, BELOW_MINIMUM.format(100)):
        client.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=2)
    client.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=1)
    client.delete_function(FunctionName=first)
    settings = client.get_account_settings()["AccountLimit"]
    assert settings["UnreservedConcurrentExecutions"] == 104


def test_throttled_event_invocations_wait_their_turn(
    server: Server, new_function: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """An Event invoke of a function reserved at 0 is accepted and kept, and runs once the
    reservation is lifted."""
    client = server.client(REGION)
    service = rendezvous(1)
    name = create(client, new_function, Environment={"Variables": service.env})
    try:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        accepted = client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
        assert accepted["StatusCode"] == 202
        assert service.count == 0
        client.delete_function_concurrency(FunctionName=name)
        wait_until(lambda: service.count >= 1, timeout=30)
    finally:
        client.delete_function(FunctionName=name)


def test_failed_and_timed_out_invokes_return_their_lease(server: Server, new_function: Any) -> None:
    """With a reservation of 1, an invoke whose handler raises or runs out of time still
    gives its lease back, so the next invoke runs instead of being throttled."""
    client = server.client(REGION)
    code = (
        "import time\n\ndef handler(event, context):\n"
        "    if event.get('sleep'):\n        time.sleep(event['sleep'])\n"
        "    if event.get('fail'):\n        raise RuntimeError('boom')\n    return 'ok'\n"
    )
    name = create(client, new_function, code, Timeout=1)
    try:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        failed, _ = invoke_json(client, name, {"fail": True})
        assert failed["FunctionError"] == "Unhandled"
        timed_out, body = invoke_json(client, name, {"sleep": 5})
        assert timed_out["FunctionError"] == "Unhandled", body
        assert invoke_json(client, name, {})[1] == "ok"
    finally:
        client.delete_function(FunctionName=name)
