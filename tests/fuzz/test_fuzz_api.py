"""The fuzz test: every RPC the server serves, found from the descriptors (veritas.v1,
grpc.health.v1, both reflections), called with generated requests as every role, with
no token and with a garbage one.

However bad the request, the answer must be a deliberate one: never INTERNAL or
UNKNOWN, within the deadline (a server stream: its first message), revealing nothing of
the database or the code, with an `x-request-id` (except the answers grpc core gives
itself); and a call that fails writes nothing (tests/fuzz/checks.py says which tables
failed calls write on purpose).

Budgets: VERITAS_FUZZ_PROFILE=small (the default, in `make test`, about a minute) or
long (`make fuzz`); VERITAS_FUZZ_EXAMPLES overrides the examples per RPC, and
VERITAS_FUZZ_SEED replaces the fixed seed with another one. Calls run one at a time:
the write check compares the database before and after each call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import grpc
import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz import checks
from tests.fuzz.rpcs import Answer, Rpc, all_rpcs, call
from tests.fuzz.strategies import Payload, payloads
from tests.fuzz.world import EXTRA_HEADERS, World, callers_for


@dataclass(frozen=True)
class Budget:
    examples_per_rpc: int
    timeout_per_rpc_seconds: int


BUDGETS = {"small": Budget(30, 120), "long": Budget(350, 1_800)}
PROFILE = os.environ.get("VERITAS_FUZZ_PROFILE", "small")
BUDGET = BUDGETS[PROFILE]
EXAMPLES = int(os.environ.get("VERITAS_FUZZ_EXAMPLES") or BUDGET.examples_per_rpc)
SEED = os.environ.get("VERITAS_FUZZ_SEED") or None

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # Reproducible: the same examples on every machine, unless a seed is given.
    derandomize=SEED is None,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
RPCS = all_rpcs()


def seeded(test):
    return seed(int(SEED))(test) if SEED is not None else test


def request_streams(rpc: Rpc, world: World) -> st.SearchStrategy[list[Payload]]:
    """One request for a unary call, 0 to 3 messages for a client stream."""
    one = payloads(rpc.input_type, world, world.templates())
    if rpc.client_streaming:
        return st.lists(one, max_size=3)
    return one.map(lambda payload: [payload])


def writes_are_checked(rpc: Rpc, requests: list[Payload], answer: Answer) -> bool:
    """Whether this call must have written nothing: it failed, and not after a stream
    message that may have been stored (README: a StreamEvents call that fails midway
    may have stored any of its events)."""
    if answer.code is grpc.StatusCode.OK:
        return False
    return not rpc.client_streaming or len(requests) <= 1


def test_the_fuzzer_covers_every_rpc():
    paths = {rpc.path for rpc in RPCS}
    assert {
        "/veritas.v1.AuthService/Login",
        "/veritas.v1.MonitoringService/StreamEvents",
        "/veritas.v1.MonitoringService/WatchExamAlerts",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    } <= paths
    assert len(RPCS) >= 38


@pytest.mark.fuzz
@pytest.mark.timeout(BUDGET.timeout_per_rpc_seconds)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
@seeded
@FUZZ_SETTINGS
@given(data=st.data())
def test_no_request_breaks_the_server(rpc: Rpc, world: World, fuzz_database, channel, data):
    caller = data.draw(callers_for(rpc), label="caller")
    headers = data.draw(EXTRA_HEADERS, label="headers")
    requests = data.draw(request_streams(rpc, world), label="requests")
    before = fuzz_database.fingerprint()
    metadata = (*world.metadata(caller), *headers)
    answer = call(channel, rpc, [p.data for p in requests], metadata)
    sent = [p.data for p in requests] + [value.encode() for _, value in headers]
    request_text = "".join(chunk.decode("utf-8", "replace") for chunk in sent)
    found = checks.problems(answer, request_text)
    if writes_are_checked(rpc, requests, answer):
        written = fuzz_database.fingerprint().changed_since(before)
        if written:
            found.append(f"{answer.code.name} ({answer.message[:200]!r}) but wrote {written}")
    world.after_call(rpc, caller, answer)
    # What the run reached (pytest --hypothesis-show-statistics).
    event(f"{caller}: {answer.code.name}")
    assert not found, f"{rpc} as {caller}: " + "; ".join(found)
