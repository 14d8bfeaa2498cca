"""Accounts waiting for SetPassword store NO_PASSWORD: nothing matches it, and checking a
password against it runs bcrypt on the decoy (a wrong password's cost), not nothing."""

from unittest import mock

import bcrypt

from veritas_grpc.security.passwords import NO_PASSWORD, PasswordHasher


def test_no_password_matches_nothing_and_still_runs_bcrypt():
    hasher = PasswordHasher(4)
    with mock.patch("veritas_grpc.security.passwords.bcrypt.checkpw", wraps=bcrypt.checkpw) as spy:
        for guess in ("!", "", "a long passphrase", NO_PASSWORD):
            assert hasher.verify(guess, NO_PASSWORD) is False
    assert spy.call_count == 4  # never skipped: the same work as a wrong password
    assert hasher.verify("a long passphrase", hasher.hash("a long passphrase")) is True
