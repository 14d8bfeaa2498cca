"""ImportStudents with 10,000 rows against a real server process (`veritas serve`),
bcrypt at the production cost (12): a fresh import (10,000 accounts and set-password
tokens), the same rows again (all UNCHANGED, nothing written) and every name changed
(all UPDATED). Medians of a few runs, each on new e-mail addresses.

    .venv/bin/python scripts/bench_import.py [ROWS] [RUNS]

Figures: docs/BENCH_ADMIN.md, "ImportStudents".
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid

import grpc
from benchlib import database_url, server_process
from veritas.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc

PASSWORD = "bench admin passphrase"


def rows(prefix: str, count: int, name: str = "Student") -> list[admin_pb2.StudentRow]:
    return [
        admin_pb2.StudentRow(
            email=f"{prefix}-{i}@example.edu",
            full_name=f"{name} {i}",
            enrollment_id=f"{prefix}-{i}",
        )
        for i in range(count)
    ]


def timed(admin, metadata, batch) -> tuple[float, admin_pb2.ImportStudentsResponse]:
    started = time.perf_counter()
    answer = admin.ImportStudents(
        admin_pb2.ImportStudentsRequest(rows=batch), metadata=metadata, timeout=120
    )
    return time.perf_counter() - started, answer


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    url = database_url()
    secret = secrets.token_urlsafe(48)
    email = f"bench-admin-{uuid.uuid4().hex[:8]}@example.edu"
    env = {**os.environ, "VERITAS_DATABASE_URL": url, "VERITAS_JWT_SECRET": secret}
    subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", "create-user", "--role", "admin"]
        + ["--email", email, "--full-name", "Bench Admin"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    figures: dict[str, list[float]] = {"fresh": [], "again_unchanged": [], "renamed_updated": []}
    with (
        server_process(url, VERITAS_JWT_SECRET=secret, VERITAS_BCRYPT_ROUNDS="12") as (
            address,
            _pid,
        ),
        grpc.insecure_channel(address) as channel,
    ):
        login = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=email, password=PASSWORD)
        )
        metadata = (("authorization", f"Bearer {login.tokens.access_token}"),)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        for _ in range(runs):
            prefix = f"b{uuid.uuid4().hex[:10]}"
            batch = rows(prefix, count)
            seconds, answer = timed(admin, metadata, batch)
            assert answer.created_count == count, answer.rejected_count
            assert all(r.set_password.token for r in answer.results)
            figures["fresh"].append(seconds)
            seconds, answer = timed(admin, metadata, batch)
            assert answer.unchanged_count == count
            figures["again_unchanged"].append(seconds)
            seconds, answer = timed(admin, metadata, rows(prefix, count, "Renamed"))
            assert answer.updated_count == count
            figures["renamed_updated"].append(seconds)
    print(
        json.dumps(
            {
                "rows": count,
                "runs": runs,
                **{
                    f"{name}_s_median": round(statistics.median(values), 3)
                    for name, values in figures.items()
                },
                **{
                    f"{name}_s_all": [round(v, 3) for v in values]
                    for name, values in figures.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
