import pytest

from veritas_grpc.security.passwords import PasswordHasher, password_problem


@pytest.fixture(scope="module")
def hasher():
    return PasswordHasher(rounds=4)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 10"),
        ("x" * 129, "at most 128"),
        ("          ", "too easy"),
        ("aaaaaaaaaaaa", "too easy"),
    ],
)
def test_policy_refuses(password, problem):
    assert problem in (password_problem(password) or "")


@pytest.mark.parametrize(
    "password", ["ten chars!", "é" * 4 + "ü" * 3 + "ß" * 3, "p" * 100 + "qrs" * 9 + "t"]
)
def test_policy_accepts(password):
    assert password_problem(password) is None


def test_hash_verifies_only_the_same_password(hasher):
    stored = hasher.hash("correct horse battery")
    assert hasher.verify("correct horse battery", stored)
    assert not hasher.verify("correct horse batterY", stored)


def test_characters_past_bcrypts_72_bytes_still_count(hasher):
    # 80 bytes of common prefix: plain bcrypt would see these two as the same password.
    prefix = "ab" * 40
    stored = hasher.hash(prefix + "-one")
    assert hasher.verify(prefix + "-one", stored)
    assert not hasher.verify(prefix + "-two", stored)


def test_multibyte_passwords_longer_than_72_bytes(hasher):
    password = "密码" * 30  # 60 characters, 180 bytes of UTF-8
    stored = hasher.hash(password)
    assert hasher.verify(password, stored)
    assert not hasher.verify(password[:-1] + "码x", stored)


def test_missing_hash_never_verifies(hasher):
    assert not hasher.verify("decoy password, never matches", None)
    assert not hasher.verify("anything at all", "not-a-bcrypt-hash")


def test_cost_comes_from_settings():
    assert PasswordHasher(rounds=5).hash("correct horse battery").startswith("$2b$05$")
