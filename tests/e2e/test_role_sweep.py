"""The role sweep: every method of every veritas.v1 service, called as every role and
with no token, answers as its contract (the `veritas.v1.contract` option) says.

Methods come from the descriptors, so a new RPC is swept without touching this file.
The expectation is read from the proto option here, not from security/policy.py, so a
table that drifts from the contract is caught (test_the_sweep_catches_a_widened_table).
Every request is empty: admitted callers get INVALID_ARGUMENT, NOT_FOUND and the like,
which is fine; what matters is that they never get PERMISSION_DENIED or
UNAUTHENTICATED, and that everyone else does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from veritas.v1 import common_pb2, options_pb2

from tests.support import ServerThread
from veritas_grpc.domain.identity import Role
from veritas_grpc.security import policy

CALL_TIMEOUT_SECONDS = 10
# Logout ends the caller's session, so each caller calls it after every other method.
SESSION_ENDING = frozenset({"/veritas.v1.AuthService/Logout"})
NO_TOKEN = "no token"


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    metadata: dict[str, str]


def _all_methods() -> list[MethodDescriptor]:
    methods = [m for service in policy.veritas_services() for m in service.methods]
    return sorted(methods, key=lambda m: (policy.method_path(m) in SESSION_ENDING, m.full_name))


def _contract(method: MethodDescriptor) -> options_pb2.MethodContract:
    return method.GetOptions().Extensions[options_pb2.contract]


def _admitted(method: MethodDescriptor) -> frozenset[str]:
    """Who the contract lets past authentication and authorization."""
    contract = _contract(method)
    if contract.public:
        return frozenset({NO_TOKEN, *Role})
    return frozenset(Role[common_pb2.Role.Name(r).removeprefix("ROLE_")] for r in contract.roles)


def _declared_codes(method: MethodDescriptor) -> frozenset[grpc.StatusCode]:
    """The status codes the contract says the method answers with, besides OK."""
    by_number = {code.value[0]: code for code in grpc.StatusCode}
    return frozenset(by_number[number] for number in _contract(method).status_codes)


def _metadata_of(call) -> dict[str, str]:
    pairs = [*(call.initial_metadata() or ()), *(call.trailing_metadata() or ())]
    return {key: value for key, value in pairs}


def _call(channel: grpc.Channel, method: MethodDescriptor, metadata) -> Answer:
    """One call with an empty request (a stream of no messages when the client streams)."""
    path = policy.method_path(method)
    request = GetMessageClass(method.input_type)()
    serializers = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": GetMessageClass(method.output_type).FromString,
    }
    argument = iter(()) if method.client_streaming else request
    if method.server_streaming:
        factory = channel.stream_stream if method.client_streaming else channel.unary_stream
        return _first_of_stream(factory(path, **serializers), argument, metadata)
    factory = channel.stream_unary if method.client_streaming else channel.unary_unary
    try:
        _, call = factory(path, **serializers).with_call(
            argument, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS
        )
    except grpc.RpcError as error:
        call = error
    return Answer(call.code(), _metadata_of(call))


def _first_of_stream(callable_, argument, metadata) -> Answer:
    """A response stream read up to its first message or its end, then cancelled."""
    call = callable_(argument, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
    try:
        next(call)
    except (StopIteration, grpc.RpcError):
        return Answer(call.code(), _metadata_of(call))
    # A stream that has begun: its headers have arrived, its trailers never will.
    headers = dict(call.initial_metadata() or ())
    call.cancel()
    return Answer(grpc.StatusCode.OK, headers)


def problems(method: MethodDescriptor, caller: Role | str, answer: Answer) -> list[str]:
    """What is wrong with one answer; empty when it is as the contract says."""
    where = f"{policy.method_path(method)} as {caller}"
    found = []
    if caller not in _admitted(method):
        expected = grpc.StatusCode.UNAUTHENTICATED if caller == NO_TOKEN else None
        expected = expected or grpc.StatusCode.PERMISSION_DENIED
        if answer.code != expected:
            found.append(f"{where}: {answer.code.name}, the contract says {expected.name}")
    elif answer.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        found.append(f"{where}: {answer.code.name}, but the contract admits {caller}")
    if answer.code != grpc.StatusCode.OK and answer.code not in _declared_codes(method):
        found.append(f"{where}: {answer.code.name}, which the contract does not declare")
    if not answer.metadata.get("x-request-id"):
        found.append(f"{where}: no x-request-id in the initial or trailing metadata")
    return found


def sweep(channel: grpc.Channel, callers: dict[Role | str, tuple]) -> list[str]:
    """Call every method as every caller; every answer that breaks the contract."""
    found = []
    for method in _all_methods():
        for caller, metadata in callers.items():
            found += problems(method, caller, _call(channel, method, metadata))
    return found


@pytest.fixture
def callers(make_account) -> dict[Role | str, tuple]:
    """A signed-in account of every role, and no token at all."""
    signed_in: dict[Role | str, tuple] = {NO_TOKEN: ()}
    signed_in.update({role: make_account(role).metadata for role in Role})
    return signed_in


def test_the_sweep_covers_every_method_and_every_contract():
    methods = _all_methods()
    paths = {policy.method_path(m) for m in methods}
    assert "/veritas.v1.AuthService/Login" in paths and len(methods) >= 30
    assert paths >= SESSION_ENDING, "a session-ending method was renamed: update SESSION_ENDING"
    missing = [
        m.full_name for m in methods if not m.GetOptions().HasExtension(options_pb2.contract)
    ]
    assert not missing, f"RPCs without a veritas.v1.contract option: {missing}"


def test_every_method_answers_every_caller_as_its_contract_says(channel, callers):
    assert sweep(channel, callers) == []


def _staff_only_method() -> MethodDescriptor:
    return next(m for m in _all_methods() if _admitted(m) == {Role.TEACHER, Role.ADMIN})


@pytest.fixture
def widened_server(settings, database_url, monkeypatch) -> Iterator[tuple[str, str]]:
    """A second server whose table also admits students to one staff-only method."""
    method = _staff_only_method()
    path = policy.method_path(method)
    monkeypatch.setitem(policy.POLICY, path, frozenset({Role.STUDENT, Role.TEACHER, Role.ADMIN}))
    running = ServerThread(settings, database_url)
    try:
        yield running.address, path
    finally:
        running.stop()


def test_the_sweep_catches_a_widened_table(widened_server, callers):
    address, widened = widened_server
    with grpc.insecure_channel(address) as channel:
        found = sweep(channel, callers)
    assert len(found) == 1, found
    assert found[0].startswith(f"{widened} as {Role.STUDENT}: ")
    assert "the contract says PERMISSION_DENIED" in found[0]
