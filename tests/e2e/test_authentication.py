"""Every defective credential is UNAUTHENTICATED, through the real interceptor chain."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veritas.v1 import auth_pb2

from tests.support import TEST_SECRET

GET_ME = auth_pb2.GetCurrentUserRequest()


def _claims(student, **overrides):
    real = jwt.decode(student.access_token, options={"verify_signature": False})
    now = datetime.now(UTC)
    claims = {**real, "jti": uuid.uuid4().hex, "iat": now, "exp": now + timedelta(minutes=5)}
    claims.update(overrides)
    return claims


def _b64(obj):
    raw = json.dumps(obj, default=lambda d: int(d.timestamp())).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forge_role(student):
    header, _, signature = student.access_token.split(".")
    return f"{header}.{_b64(_claims(student, role='admin'))}.{signature}"


CASES = {
    "alg none": lambda s: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(s))}.",
    "another key": lambda s: jwt.encode(_claims(s), "x" * 48, algorithm="HS256"),
    "another algorithm": lambda s: jwt.encode(_claims(s), TEST_SECRET, algorithm="HS384"),
    "another issuer": lambda s: jwt.encode(_claims(s, iss="someone-else"), TEST_SECRET, "HS256"),
    "another audience": lambda s: jwt.encode(_claims(s, aud="another-api"), TEST_SECRET, "HS256"),
    "expired": lambda s: jwt.encode(
        _claims(s, exp=datetime.now(UTC) - timedelta(seconds=30)), TEST_SECRET, "HS256"
    ),
    "tampered payload": _forge_role,
    "truncated signature": lambda s: s.access_token[:-4],
    "unknown session": lambda s: jwt.encode(
        _claims(s, sid=str(uuid.uuid4())), TEST_SECRET, "HS256"
    ),
    "unknown user": lambda s: jwt.encode(_claims(s, sub=str(uuid.uuid4())), TEST_SECRET, "HS256"),
    "garbage": lambda s: "garbage",
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_tokens_are_unauthenticated(auth_stub, student, case):
    token = CASES[case](student)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.GetCurrentUser(GET_ME, metadata=(("authorization", f"Bearer {token}"),))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TEST_SECRET not in (error.value.details() or "")


def test_a_correctly_signed_token_with_a_fresh_jti_is_accepted(auth_stub, student):
    """The positive control for the cases above: the forging helper itself is sound."""
    token = jwt.encode(_claims(student), TEST_SECRET, "HS256")
    response = auth_stub.GetCurrentUser(GET_ME, metadata=(("authorization", f"Bearer {token}"),))
    assert response.user.id == student.user_id


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Basic dXNlcjpwYXNz"),), (("authorization", "Bearer"),)],
    ids=["no header", "basic scheme", "empty bearer"],
)
def test_missing_or_malformed_header(auth_stub, metadata):
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.GetCurrentUser(GET_ME, metadata=metadata)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_need_no_token(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == 1
    service = health.Check(health_pb2.HealthCheckRequest(service="veritas.v1.AuthService"))
    assert service.status == health_pb2.HealthCheckResponse.SERVING


def test_every_response_carries_a_fresh_server_request_id(auth_stub, student):
    _, first = auth_stub.GetCurrentUser.with_call(GET_ME, metadata=student.metadata)
    _, second = auth_stub.GetCurrentUser.with_call(
        GET_ME, metadata=(*student.metadata, ("x-request-id", "client-chosen-id"))
    )
    ids = [
        [v for k, v in call.trailing_metadata() if k == "x-request-id"] for call in (first, second)
    ]
    assert all(len(found) == 1 and len(found[0]) == 32 for found in ids)
    assert ids[0] != ids[1]
    # A client cannot choose the id that audit rows and logs are filed under.
    assert ids[1] != ["client-chosen-id"]
