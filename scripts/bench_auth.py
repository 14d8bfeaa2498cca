"""Sign-in and per-call authentication costs, against a `veritas serve` process.

- Login with bcrypt cost 12 (the default): right password, wrong password, unknown
  e-mail. The last two must cost the same (no account enumeration by timing).
- An authenticated unary call (GetCurrentUser: JWT check + one revocation lookup +
  one read) against grpc.health.v1 Check (no authentication, no database), one client,
  then GetCurrentUser throughput with 16 concurrent clients.
Usage: python scripts/bench_auth.py [login_samples] [unary_samples]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid

import grpc
from benchlib import database_url, percentiles, server_process
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc

PASSWORD = "bench password 2026"


async def timed(call, request, samples: int, **kwargs) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call(request, **kwargs)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def measure(address: str, login_samples: int, unary_samples: int) -> dict[str, object]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        email = f"bench-{uuid.uuid4().hex[:8]}@example.edu"
        await auth.Register(
            auth_pb2.RegisterRequest(
                email=email, password=PASSWORD, full_name="Bench", enrollment_id=email[:14]
            )
        )
        # Spread failures over fresh addresses so the lockout never kicks in.
        right, wrong, unknown = [], [], []
        for _ in range(login_samples):
            right += await timed(
                auth.Login, auth_pb2.LoginRequest(email=email, password=PASSWORD), 1
            )
            other = f"bench-{uuid.uuid4().hex[:8]}@example.edu"
            await auth.Register(
                auth_pb2.RegisterRequest(
                    email=other, password=PASSWORD, full_name="B", enrollment_id=other[:14]
                )
            )
            wrong += await timed(
                auth.Login, auth_pb2.LoginRequest(email=other, password="nope nope nope"), 1
            )
            ghost = f"ghost-{uuid.uuid4().hex[:8]}@example.edu"
            unknown += await timed(
                auth.Login, auth_pb2.LoginRequest(email=ghost, password="nope nope nope"), 1
            )
        login = await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
        metadata = (("authorization", f"Bearer {login.tokens.access_token}"),)
        check = await timed(health.Check, health_pb2.HealthCheckRequest(), unary_samples)
        me = await timed(
            auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), unary_samples, metadata=metadata
        )

        async def client(n: int) -> None:
            for _ in range(n):
                await auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(unary_samples // 4) for _ in range(16)))
        throughput = 16 * (unary_samples // 4) / (time.perf_counter() - t0)

        # A sign-in flood (bcrypt-bound) must not starve other calls.
        async def flood_login() -> str:
            try:
                await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
                return "OK"
            except grpc.aio.AioRpcError as error:
                return error.code().name

        flood = [asyncio.ensure_future(flood_login()) for _ in range(200)]
        await asyncio.sleep(0.2)
        during_flood = await timed(
            auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), 200, metadata=metadata
        )
        outcomes = await asyncio.gather(*flood)
    wrong_p, unknown_p = percentiles(wrong), percentiles(unknown)
    return {
        "login_ms_right_password": percentiles(right),
        "login_ms_wrong_password": wrong_p,
        "login_ms_unknown_email": unknown_p,
        "unknown_over_wrong_p50_ratio": round(unknown_p["p50"] / wrong_p["p50"], 3),
        "health_check_ms": percentiles(check),
        "get_current_user_ms": percentiles(me),
        "get_current_user_calls_per_s_16_clients": round(throughput),
        "get_current_user_ms_during_200_concurrent_logins": percentiles(during_flood),
        "flood_login_outcomes": {code: outcomes.count(code) for code in sorted(set(outcomes))},
    }


def main() -> None:
    login_samples = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    unary_samples = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    # One client address registers and fails hundreds of times: per-address throttles off.
    unthrottled = {
        "VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        "VERITAS_REGISTER_MAX_PER_ADDRESS": "100000",
    }
    with server_process(database_url(), VERITAS_BCRYPT_ROUNDS="12", **unthrottled) as (
        address,
        _pid,
    ):
        print(json.dumps(asyncio.run(measure(address, login_samples, unary_samples)), indent=2))


if __name__ == "__main__":
    main()
