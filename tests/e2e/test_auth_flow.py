"""The sign-in story over real channels: register, login, use, rotate, reuse, logout."""

import grpc
import jwt
import pytest
from veritas.v1 import auth_pb2, common_pb2

from tests.e2e.conftest import login, register_and_login
from tests.support import PASSWORD, bearer, unique_email


def _code(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    return error.value.code()


def test_register_login_current_user_refresh_reuse_logout(auth_stub):
    email = unique_email("story")
    registered = auth_stub.Register(
        auth_pb2.RegisterRequest(
            email=email.upper(),
            password=PASSWORD,
            full_name="  Story Student ",
            enrollment_id="S-77" + email[6:12],
        )
    )
    assert registered.user.email == email
    assert registered.user.role == common_pb2.ROLE_STUDENT
    assert registered.user.full_name == "Story Student"

    first = login(auth_stub, email.title())
    me = auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=first.metadata)
    assert me.user.id == registered.user.id
    assert me.user.enrollment_id == registered.user.enrollment_id

    claims = jwt.decode(first.access_token, options={"verify_signature": False})
    assert claims["role"] == "student" and claims["sub"] == registered.user.id
    assert claims["exp"] - claims["iat"] == 15 * 60

    rotated = auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    assert rotated.tokens.refresh_token != first.refresh_token
    assert rotated.tokens.access_token != first.access_token
    second_access = bearer(rotated.tokens.access_token)
    auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=second_access)

    # The retired refresh token comes back: someone copied it. The session ends.
    assert (
        _code(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        _code(
            auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=rotated.tokens.refresh_token)
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        _code(auth_stub.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=second_access)
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        _code(auth_stub.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=first.metadata)
        == grpc.StatusCode.UNAUTHENTICATED
    )

    # A new login is a new session, unaffected.
    fresh = login(auth_stub, email)
    auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=fresh.metadata)


def test_logout_revokes_the_access_token_and_its_session(auth_stub, student):
    other_device = login(auth_stub, student.email)
    auth_stub.Logout(
        auth_pb2.LogoutRequest(refresh_token=other_device.refresh_token), metadata=student.metadata
    )
    for metadata in (student.metadata, other_device.metadata):
        assert (
            _code(auth_stub.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=metadata)
            == grpc.StatusCode.UNAUTHENTICATED
        )
    for token in (student.refresh_token, other_device.refresh_token):
        assert (
            _code(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=token))
            == grpc.StatusCode.UNAUTHENTICATED
        )


def test_logout_refuses_another_accounts_refresh_token_and_revokes_nothing(auth_stub):
    alice, bob = register_and_login(auth_stub), register_and_login(auth_stub)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.Logout(
            auth_pb2.LogoutRequest(refresh_token=bob.refresh_token), metadata=alice.metadata
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=alice.metadata)
    auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=bob.refresh_token))


def test_logout_without_a_refresh_token(auth_stub, student):
    auth_stub.Logout(auth_pb2.LogoutRequest(), metadata=student.metadata)
    assert (
        _code(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=student.refresh_token))
        == grpc.StatusCode.UNAUTHENTICATED
    )


def test_unknown_refresh_token(auth_stub):
    assert (
        _code(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token="made-up"))
        == grpc.StatusCode.UNAUTHENTICATED
    )
