"""Deny by default: every method of every service has an explicit entry in the policy."""

import importlib
import pkgutil

import veritas.v1
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from veritas_grpc.domain.identity import Role
from veritas_grpc.security.policy import ANY_ROLE, POLICY, allowed_roles, is_public


def _veritas_services():
    for module_info in pkgutil.iter_modules(veritas.v1.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"veritas.v1.{module_info.name}")
            yield from module.DESCRIPTOR.services_by_name.values()


def _all_methods():
    services = [
        *_veritas_services(),
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    ]
    return {f"/{s.full_name}/{m.name}" for s in services for m in s.methods}


def test_every_method_has_a_policy_entry():
    missing = sorted(_all_methods() - POLICY.keys())
    assert not missing, f"methods without an entry in security/policy.py: {missing}"


def test_no_entry_names_a_method_that_does_not_exist():
    stale = sorted(POLICY.keys() - _all_methods())
    assert not stale, f"policy entries for unknown methods: {stale}"


def test_the_walk_finds_the_auth_service():
    assert "/veritas.v1.AuthService/Login" in _all_methods()


def test_unknown_methods_are_denied():
    assert allowed_roles("/veritas.v1.AuthService/DropDatabase") == frozenset()
    assert not is_public("/veritas.v1.AuthService/DropDatabase")


def test_only_sign_in_and_infrastructure_are_public():
    public = {m for m in POLICY if is_public(m)}
    assert public == {
        "/veritas.v1.AuthService/Register",
        "/veritas.v1.AuthService/Login",
        "/veritas.v1.AuthService/Refresh",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/List",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    }


def test_role_sets_name_real_roles():
    for method, entry in POLICY.items():
        if not is_public(method):
            assert entry and set(entry) <= set(Role), method
    assert allowed_roles("/veritas.v1.AuthService/GetCurrentUser") == ANY_ROLE
