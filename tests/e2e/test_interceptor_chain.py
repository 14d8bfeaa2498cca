"""The interceptor chain for all four RPC kinds, with handlers of the test's own under
non-public names (the product's streaming RPCs come later; they get this same chain)."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc

from tests.e2e.conftest import register_and_login
from tests.support import TEST_SECRET
from veritas_grpc import bootstrap
from veritas_grpc.api.auth import AuthServicer
from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.domain.identity import Role
from veritas_grpc.interceptors import authentication
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.observability import current_call
from veritas_grpc.security import policy
from veritas_grpc.security.tokens import AccessTokenCodec

SERVICE = "veritas.v1.ChainProbe"


def _identity(value):
    return value


async def unary_unary(request, context):
    return f"{current_principal().role.value} {current_call().request_id}".encode()


async def unary_stream(request, context):
    for index in range(int(request.decode())):
        yield f"{index} {current_principal().role.value}".encode()
        await asyncio.sleep(0.05)


async def stream_unary(requests, context):
    count = 0
    async for _ in requests:
        count += 1
    return f"{count} {current_principal().role.value}".encode()


async def stream_stream(requests, context):
    async for request in requests:
        if request == b"boom":
            raise RuntimeError("SELECT secret FROM somewhere")
        if request == b"bad":
            raise InvalidArgument.of("payload", "is bad")
        yield request


HANDLER = grpc.method_handlers_generic_handler(
    SERVICE,
    {
        "UnaryUnary": grpc.unary_unary_rpc_method_handler(unary_unary, _identity, _identity),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(unary_stream, _identity, _identity),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(stream_unary, _identity, _identity),
        "StreamStream": grpc.stream_stream_rpc_method_handler(stream_stream, _identity, _identity),
    },
)
KINDS = ("UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream")


class ProbeServer:
    """The real interceptor chain and AuthService, plus the probe handlers."""

    def __init__(self, settings, database_url):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.services = bootstrap.build_services(settings, database_url)
        self.runners = bootstrap.build_runners(settings)
        self.port = self._call(self._start())

    async def _start(self):
        self.server = grpc.aio.server(
            interceptors=bootstrap.interceptors(self.services, self.runners)
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(
                self.services.auth,
                self.services.accounts,
                self.runners.database,
                self.runners.passwords,
            ),
            self.server,
        )
        self.server.add_generic_rpc_handlers((HANDLER,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def stop(self):
        self._call(self.server.stop(0))
        self.runners.shutdown()
        self.services.close()
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def probe(settings, database_url):
    server = ProbeServer(settings, database_url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def probe_channel(probe):
    with grpc.insecure_channel(f"127.0.0.1:{probe.port}") as channel:
        yield channel


@pytest.fixture
def allowed(monkeypatch):
    for kind in KINDS:
        monkeypatch.setitem(policy.POLICY, f"/{SERVICE}/{kind}", frozenset({Role.STUDENT}))


@pytest.fixture
def signed_in(probe_channel):
    return register_and_login(auth_pb2_grpc.AuthServiceStub(probe_channel))


def _invoke(channel, kind, metadata, messages=(b"2",)):
    path = f"/{SERVICE}/{kind}"
    if kind == "UnaryUnary":
        return [channel.unary_unary(path)(messages[0], metadata=metadata, timeout=10)]
    if kind == "UnaryStream":
        return list(channel.unary_stream(path)(messages[0], metadata=metadata, timeout=10))
    if kind == "StreamUnary":
        return [channel.stream_unary(path)(iter(messages), metadata=metadata, timeout=10)]
    return list(channel.stream_stream(path)(iter(messages), metadata=metadata, timeout=10))


@pytest.mark.parametrize("kind", KINDS)
def test_no_token_is_unauthenticated_for_every_kind(probe_channel, allowed, kind):
    with pytest.raises(grpc.RpcError) as error:
        _invoke(probe_channel, kind, ())
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("kind", KINDS)
def test_methods_missing_from_the_policy_are_denied_for_every_kind(probe_channel, signed_in, kind):
    with pytest.raises(grpc.RpcError) as error:
        _invoke(probe_channel, kind, signed_in.metadata)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("kind", KINDS)
def test_a_role_outside_the_entry_is_denied_for_every_kind(
    probe_channel, signed_in, monkeypatch, kind
):
    monkeypatch.setitem(policy.POLICY, f"/{SERVICE}/{kind}", frozenset({Role.ADMIN}))
    with pytest.raises(grpc.RpcError) as error:
        _invoke(probe_channel, kind, signed_in.metadata)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_admitted_calls_see_their_principal_and_request_id(probe_channel, signed_in, allowed):
    [unary] = _invoke(probe_channel, "UnaryUnary", signed_in.metadata)
    role, request_id = unary.decode().split()
    assert role == "student" and len(request_id) == 32
    assert _invoke(probe_channel, "UnaryStream", signed_in.metadata) == [
        b"0 student",
        b"1 student",
    ]
    assert _invoke(probe_channel, "StreamUnary", signed_in.metadata, (b"a", b"b", b"c")) == [
        b"3 student"
    ]
    assert _invoke(probe_channel, "StreamStream", signed_in.metadata, (b"a", b"b")) == [
        b"a",
        b"b",
    ]


@pytest.mark.server_fault
def test_a_failure_mid_stream_is_internal_with_only_a_request_id(probe_channel, signed_in, allowed):
    with pytest.raises(grpc.RpcError) as error:
        _invoke(probe_channel, "StreamStream", signed_in.metadata, (b"a", b"boom"))
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert error.value.details().startswith("internal error (request id ")
    assert "SELECT" not in error.value.details()


def test_a_domain_error_mid_stream_keeps_its_status(probe_channel, signed_in, allowed):
    with pytest.raises(grpc.RpcError) as error:
        _invoke(probe_channel, "StreamStream", signed_in.metadata, (b"a", b"bad"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_stream_ends_when_its_token_is_revoked(probe_channel, signed_in, allowed, monkeypatch):
    monkeypatch.setattr(authentication, "STREAM_RECHECK_SECONDS", 0.0)
    stream = probe_channel.unary_stream(f"/{SERVICE}/UnaryStream")(
        b"40", metadata=signed_in.metadata, timeout=10
    )
    assert next(stream) == b"0 student"
    auth_pb2_grpc.AuthServiceStub(probe_channel).Logout(
        auth_pb2.LogoutRequest(), metadata=signed_in.metadata
    )
    with pytest.raises(grpc.RpcError) as error:
        list(stream)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_stream_ends_when_its_token_expires(probe, signed_in, allowed, monkeypatch):

    principal = probe.services.auth.authenticate(signed_in.access_token)
    short = AccessTokenCodec(TEST_SECRET, "veritas", "veritas-api", ttl_seconds=60)
    token = short.issue(
        principal.user_id,
        principal.role,
        principal.session_id,
        datetime.now(UTC) - timedelta(seconds=58),
    )
    with grpc.insecure_channel(f"127.0.0.1:{probe.port}") as channel:
        stream = channel.unary_stream(f"/{SERVICE}/UnaryStream")(
            b"200", metadata=(("authorization", f"Bearer {token.value}"),), timeout=30
        )
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            list(stream)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in error.value.details()
    assert time.monotonic() - started < 9  # 200 messages would take 10 s


def test_reflection_needs_no_token(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [response] = list(stub.ServerReflectionInfo(iter([request])))
    names = {service.name for service in response.list_services_response.service}
    assert {"veritas.v1.AuthService", "grpc.health.v1.Health"} <= names
