"""ListUsers at 100,000 accounts, through a `veritas serve` process (docs/BENCH_ADMIN.md).

100,000 accounts are COPYed in (95 % students with an enrollment id, 4 % teachers, 1 %
admins and service accounts, 5 % deactivated; names drawn from common first and last
names, so a surname matches ~1 in 40), then ANALYZEd, in a database with the planner
settings of deploy/postgresql/postgresql.conf (benchlib.use_planner). Then ListUsers,
one client, page size 50, over a mix of queries: common surnames and first names (many
matches), e-mail and enrollment-id fragments (few), a full e-mail address (one), texts
that match nothing, a text every account matches (the e-mail domain), no text; each
also asked for its second page. A second run adds filters: role STUDENT and active,
role TEACHER, deactivated accounts.

Usage: python scripts/bench_admin_users.py [users] [rounds]
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import sys
import time
import uuid

import grpc
from benchlib import database_url, percentiles, server_process, use_planner
from veritas.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2

PASSWORD = "bench password 2026"
FIRST = [
    "ada",
    "alan",
    "barbara",
    "claude",
    "donald",
    "edsger",
    "frances",
    "grace",
    "hedy",
    "ida",
    "john",
    "katherine",
    "leslie",
    "margaret",
    "niklaus",
    "olga",
    "peter",
    "radia",
    "shafi",
    "tim",
    "ursula",
    "vint",
    "wanda",
    "xavier",
    "yukihiro",
    "zhang",
    "amelia",
    "bruno",
    "chiara",
    "dmitri",
    "elena",
    "farah",
    "gustavo",
    "hana",
    "ivan",
    "jomo",
    "kenji",
    "lucia",
    "mateo",
    "nadia",
]
LAST = [
    "smith",
    "johnson",
    "lee",
    "garcia",
    "martin",
    "brown",
    "wilson",
    "moore",
    "taylor",
    "anderson",
    "thomas",
    "jackson",
    "white",
    "harris",
    "clark",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "green",
    "baker",
    "adams",
    "nelson",
    "hill",
    "campbell",
    "mitchell",
    "roberts",
    "carter",
    "phillips",
    "evans",
    "turner",
    "torres",
    "parker",
    "collins",
    "edwards",
    "stewart",
]
DOMAIN = "university.edu"


def populate(url: str, users: int) -> tuple[str, list[str], list[str]]:
    """COPY the accounts in; return an admin's e-mail, some e-mails and enrollment ids."""
    from sqlalchemy import create_engine

    from veritas_grpc.security.passwords import PasswordHasher

    rng = random.Random(11)
    password_hash = PasswordHasher(4).hash(PASSWORD)
    accounts, profiles, emails, enrollments = io.StringIO(), io.StringIO(), [], []
    for n in range(users):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        user_id = uuid.UUID(int=rng.getrandbits(128))
        email = f"{first}.{last}.{n}@{DOMAIN}"
        draw = rng.random()
        role = "student" if draw < 0.95 else "teacher" if draw < 0.99 else "admin"
        if draw >= 0.995:
            role = "service"
        active = "f" if rng.random() < 0.05 else "t"
        name = f"{first.title()} {last.title()}"
        accounts.write(f"{user_id}\t{email}\t{password_hash}\t{name}\t{role}\t{active}\n")
        if role == "student":
            enrollment = f"S-{2020 + n % 7}-{n:06d}"
            profiles.write(f"{user_id}\t{enrollment}\n")
            if n % 1000 == 0:
                enrollments.append(enrollment)
        if n % 1000 == 0:
            emails.append(email)
    admin_email = f"bench-admin@{DOMAIN}"
    accounts.write(f"{uuid.uuid4()}\t{admin_email}\t{password_hash}\tBench Admin\tadmin\tt\n")
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            accounts.seek(0)
            profiles.seek(0)
            cursor.copy_expert(
                "COPY users (id, email, password_hash, full_name, role, is_active) FROM STDIN",
                accounts,
            )
            cursor.copy_expert(
                "COPY student_profiles (user_id, enrollment_id) FROM STDIN", profiles
            )
        raw.commit()
        raw.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        with raw.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE users")
            cursor.execute("VACUUM ANALYZE student_profiles")
    finally:
        raw.close()
        engine.dispose()
    return admin_email, emails, enrollments


def query_mix(emails: list[str], enrollments: list[str]) -> list[str]:
    rng = random.Random(5)
    mix = []
    mix += rng.sample(LAST, 10)  # ~2.5 % of accounts each
    mix += [name.title() for name in rng.sample(FIRST, 10)]  # ~2.5 %, upper-case
    mix += [f"{rng.choice(FIRST)}.{rng.choice(LAST)}" for _ in range(10)]  # ~0.06 %
    mix += [email.split("@")[0].split(".")[-1] + "@" for email in rng.sample(emails, 10)]
    mix += rng.sample(emails, 10)  # one account
    mix += [e[2:] for e in rng.sample(enrollments, 10)]  # one enrollment id, no prefix
    mix += [f"{2020 + i % 7}-0{i}" for i in range(10)]  # enrollment-id fragments (~1 %)
    mix += ["zqxj", "nobody at all", "@@@example", "xyz-999", "qqq"]  # nothing
    mix += [DOMAIN, "university", "edu"]  # every account
    mix += [""] * 5  # no text: the first page by e-mail
    return mix


async def run(address: str, admin_email: str, mix: list[str], rounds: int, **filters) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        signed_in = await auth.Login(auth_pb2.LoginRequest(email=admin_email, password=PASSWORD))
        metadata = (("authorization", f"Bearer {signed_in.tokens.access_token}"),)
        first_pages, second_pages, matched, by_text = [], [], [], []
        for round_number in range(rounds + 1):
            for text in mix:
                request = admin_pb2.ListUsersRequest(query=text, page_size=50, **filters)
                t0 = time.perf_counter()
                page = await admin.ListUsers(request, metadata=metadata)
                elapsed = (time.perf_counter() - t0) * 1000
                second = None
                if page.next_page_token:
                    request.page_token = page.next_page_token
                    t0 = time.perf_counter()
                    await admin.ListUsers(request, metadata=metadata)
                    second = (time.perf_counter() - t0) * 1000
                if round_number == 0:
                    matched.append(len(page.users))
                    continue  # a warm-up round
                first_pages.append(elapsed)
                by_text.append((elapsed, text, 1))
                if second is not None:
                    second_pages.append(second)
                    by_text.append((second, text, 2))
    every = first_pages + second_pages
    return {
        "filters": {k: str(v) for k, v in filters.items()},
        "queries": len(mix),
        "full_first_pages": sum(1 for m in matched if m == 50),
        "empty_results": sum(1 for m in matched if m == 0),
        "first_page_ms": percentiles(first_pages),
        "second_page_ms": percentiles(second_pages) if second_pages else None,
        "all_calls_ms": percentiles(every),
        "slowest_calls": [
            f"{ms:.1f} ms: {text!r} page {page}" for ms, text, page in sorted(by_text)[-8:]
        ],
    }


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    url = database_url()
    planner = use_planner(url)
    t0 = time.perf_counter()
    admin_email, emails, enrollments = populate(url, users)
    loaded = time.perf_counter() - t0
    mix = query_mix(emails, enrollments)
    results: dict[str, object] = {"users": users, "load_seconds": round(loaded, 1)}
    results["planner"] = planner
    with server_process(url, VERITAS_BCRYPT_ROUNDS="4") as (address, _pid):
        results["no_filters"] = asyncio.run(run(address, admin_email, mix, rounds))
        results["student_active"] = asyncio.run(
            run(address, admin_email, mix, rounds, role=common_pb2.ROLE_STUDENT, active=True)
        )
        results["teachers"] = asyncio.run(
            run(address, admin_email, mix, rounds, role=common_pb2.ROLE_TEACHER)
        )
        results["deactivated"] = asyncio.run(run(address, admin_email, mix, rounds, active=False))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
