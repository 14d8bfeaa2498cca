"""Password policy and bcrypt hashing.

bcrypt reads at most 72 bytes. A 128-character password can be 512 bytes of UTF-8, so
the password is first hashed with SHA-256 and base64-encoded (44 bytes, no NUL byte):
every character counts and nothing is silently cut off.
"""

from __future__ import annotations

import base64
import hashlib

import bcrypt

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 128
# Stored for an account that has no password yet (made by CreateUser or ImportStudents,
# waiting for SetPassword): no bcrypt hash, so no password matches it.
NO_PASSWORD = "!"


def password_problem(password: str) -> str | None:
    """Why the password is refused, or None when it meets the policy."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"must have at most {MAX_PASSWORD_CHARS} characters"
    if password.strip() == "" or len(set(password)) < 3:
        return "is too easy to guess"
    return None


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        # Checked against when the account does not exist, so that an unknown e-mail
        # costs the same bcrypt work as a wrong password.
        self._decoy = self.hash("decoy password, never matches")

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self._rounds)).decode("ascii")

    def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether password matches; with no hash (or NO_PASSWORD, or anything else that
        is not a bcrypt hash), spend the same time against the decoy and say no."""
        usable = password_hash if password_hash and password_hash.startswith("$2") else None
        try:
            matches = bcrypt.checkpw(_prehash(password), (usable or self._decoy).encode())
        except ValueError:
            return False
        return matches and usable is not None
