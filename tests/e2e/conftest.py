"""e2e fixtures: a real server on port 0, real channels, generated stubs."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest
from veritas.v1 import admin_pb2_grpc, auth_pb2, auth_pb2_grpc

from tests.support import PASSWORD, bearer, unique_email, unique_enrollment
from veritas_grpc.domain.identity import Role


@pytest.fixture(scope="session")
def channel(server):
    with grpc.insecure_channel(server.address) as opened:
        yield opened


@pytest.fixture(scope="session")
def auth_stub(channel):
    return auth_pb2_grpc.AuthServiceStub(channel)


@dataclass
class SignedIn:
    email: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def metadata(self):
        return bearer(self.access_token)


def register_and_login(auth_stub, prefix: str = "student") -> SignedIn:
    email = unique_email(prefix)
    auth_stub.Register(
        auth_pb2.RegisterRequest(
            email=email,
            password=PASSWORD,
            full_name="Test Student",
            enrollment_id=unique_enrollment(),
        )
    )
    return login(auth_stub, email)


def login(auth_stub, email: str, password: str = PASSWORD) -> SignedIn:
    response = auth_stub.Login(auth_pb2.LoginRequest(email=email, password=password))
    return SignedIn(
        email, response.user.id, response.tokens.access_token, response.tokens.refresh_token
    )


@pytest.fixture
def student(auth_stub) -> SignedIn:
    return register_and_login(auth_stub)


@pytest.fixture
def make_account(services, auth_stub):
    """Sign in a fresh account of any role, created as an operator would."""

    def make(role: Role) -> SignedIn:
        email = unique_email(role.value)
        enrollment = unique_enrollment() if role is Role.STUDENT else None
        services.accounts.create_account(role, email, PASSWORD, f"Test {role.value}", enrollment)
        return login(auth_stub, email)

    return make


@pytest.fixture(scope="session")
def admin_stub(channel):
    return admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture
def admin(make_account) -> SignedIn:
    return make_account(Role.ADMIN)
