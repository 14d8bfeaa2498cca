"""RBAC: the policy table decides, and a method it does not name is refused."""

import grpc
import pytest
from veritas.v1 import auth_pb2

from veritas_grpc.domain.identity import Role
from veritas_grpc.security import policy

GET_ME = "/veritas.v1.AuthService/GetCurrentUser"


def test_a_method_missing_from_the_table_is_denied(auth_stub, student, monkeypatch):
    monkeypatch.delitem(policy.POLICY, GET_ME)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=student.metadata)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_role_the_table_does_not_admit_is_denied(auth_stub, make_account, monkeypatch):
    monkeypatch.setitem(policy.POLICY, GET_ME, frozenset({Role.ADMIN}))
    teacher, admin = make_account(Role.TEACHER), make_account(Role.ADMIN)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=teacher.metadata)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=admin.metadata).user.id
        == admin.user_id
    )


def test_an_unauthenticated_call_to_an_unlisted_method_is_still_unauthenticated(
    auth_stub, monkeypatch
):
    monkeypatch.delitem(policy.POLICY, GET_ME)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest())
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("role", list(Role))
def test_every_role_can_read_itself(auth_stub, make_account, role):
    account = make_account(role)
    me = auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=account.metadata)
    assert me.user.id == account.user_id
