"""How many threads and how much memory the server needs to hold N open streams.

Opens N grpc.health.v1 Watch streams (server streaming, the shape of live watchers)
over several connections against a `veritas serve` process, and reads the server's
thread count and resident memory from /proc before and while they are open, plus the
latency of unary calls made meanwhile. Usage: python scripts/bench_streams.py [N ...]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
from benchlib import database_url, percentiles, process_rss_mib, process_threads, server_process
from grpc_health.v1 import health_pb2, health_pb2_grpc

CONNECTIONS = 10


async def measure(address: str, pid: int, streams: int) -> dict[str, object]:
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]
    before = {"threads": process_threads(pid), "rss_mib": round(process_rss_mib(pid), 1)}
    started = time.perf_counter()
    calls = [
        health_pb2_grpc.HealthStub(channels[i % CONNECTIONS]).Watch(health_pb2.HealthCheckRequest())
        for i in range(streams)
    ]
    await asyncio.gather(*(call.read() for call in calls))
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(1)
    during = {"threads": process_threads(pid), "rss_mib": round(process_rss_mib(pid), 1)}
    async with grpc.aio.insecure_channel(address) as probe:
        stub = health_pb2_grpc.HealthStub(probe)
        samples = []
        for _ in range(300):
            t0 = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest())
            samples.append((time.perf_counter() - t0) * 1000)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()
    return {
        "streams": streams,
        "open_all_seconds": round(open_seconds, 2),
        "before": before,
        "while_open": during,
        "unary_check_ms_while_open": percentiles(samples),
    }


def main() -> None:
    counts = [int(arg) for arg in sys.argv[1:]] or [0, 1000, 2000]
    url = database_url()
    results = []
    for streams in counts:
        with server_process(url) as (address, pid):
            results.append(asyncio.run(measure(address, pid, streams)))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
