"""A small demo data set for `make run`: one account of each role and two students.

Only in demo mode (VERITAS_ENV=demo): the passwords are printed on the console.
Seeding twice changes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from veritas_grpc.domain.errors import AlreadyExists
from veritas_grpc.domain.identity import Role
from veritas_grpc.services.accounts import AccountService

DEMO_PASSWORD = "veritas-demo-2026"


@dataclass(frozen=True)
class DemoAccount:
    role: Role
    email: str
    full_name: str
    enrollment_id: str | None = None


DEMO_ACCOUNTS = (
    DemoAccount(Role.ADMIN, "admin@veritas.demo", "Avery Admin"),
    DemoAccount(Role.TEACHER, "teacher@veritas.demo", "Tess Teacher"),
    DemoAccount(Role.STUDENT, "sam@veritas.demo", "Sam Student", "S-2026-001"),
    DemoAccount(Role.STUDENT, "lee@veritas.demo", "Lee Learner", "S-2026-002"),
    DemoAccount(Role.SERVICE, "scoring@veritas.demo", "Scoring Service"),
)


def seed_demo(accounts: AccountService) -> list[DemoAccount]:
    """Create the demo accounts that are missing; return all of them."""
    for demo in DEMO_ACCOUNTS:
        with contextlib.suppress(AlreadyExists):
            accounts.create_account(
                demo.role, demo.email, DEMO_PASSWORD, demo.full_name, demo.enrollment_id
            )
    return list(DEMO_ACCOUNTS)
