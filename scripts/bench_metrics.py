"""What the metrics cost on the hot path (docs/BENCH_METRICS.md).

A focused micro-benchmark (not a timed test), no network and no database: the pieces the
server runs per call, per stream message and per writer batch, timed in a loop, with the
values in memory (one process) and in memory-mapped files (VERITAS_PROCESSES > 1):

- a unary call through MetricsInterceptor, against the same call without it;
- a client stream of 10 messages through it (the per-message counting wrapper);
- one ingestion call's outcome (Metrics.stream_outcome: accepted, duplicate, rejected);
- one writer batch (queue depth set twice, batch rows and commit time observed).

Usage (from scripts/, with the project's venv): python bench_metrics.py [--calls N]
Prints microseconds per operation; the multiprocess run goes in a child process, since
prometheus-client chooses where values live once per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from veritas_grpc.adapters.metrics import Metrics  # noqa: E402
from veritas_grpc.interceptors.metrics import MetricsInterceptor  # noqa: E402
from veritas_grpc.observability import CallContext, bind_call  # noqa: E402

METHOD = "/veritas.v1.MonitoringService/StreamEvents"


async def _unary(request: Any, context: Any) -> str:
    return "answer"


async def _client_stream(requests: Any, context: Any) -> int:
    return sum([1 async for _ in requests])


async def _messages(count: int) -> Any:
    for n in range(count):
        yield n


async def _time(calls: int, step: Any) -> float:
    """Microseconds per call of the coroutine function `step`."""
    started = time.perf_counter()
    for _ in range(calls):
        await step()
    return (time.perf_counter() - started) / calls * 1e6


async def _measure(metrics: Metrics, calls: int) -> dict[str, float]:
    interceptor = MetricsInterceptor(metrics)
    bind_call(CallContext(request_id="bench", method=METHOD, peer="bench"))

    async def bare_unary() -> None:
        await _unary(None, None)

    async def metered_unary() -> None:
        await interceptor.intercept(_unary, None, None, METHOD)  # type: ignore[arg-type]

    async def bare_stream() -> None:
        await _client_stream(_messages(10), None)

    async def metered_stream() -> None:
        await interceptor.intercept(_client_stream, _messages(10), None, METHOD)  # type: ignore[arg-type]

    async def outcome() -> None:
        metrics.stream_outcome(480, 15, {"invalid": 5})

    async def batch() -> None:
        metrics.writer_queue.set(3)
        metrics.writer_queue.set(2)
        metrics.commit_seconds.observe(0.012)
        metrics.batch_rows.observe(2500)

    figures = {
        name: await _time(calls, step)
        for name, step in [
            ("unary_bare_us", bare_unary),
            ("unary_metered_us", metered_unary),
            ("stream10_bare_us", bare_stream),
            ("stream10_metered_us", metered_stream),
            ("stream_outcome_us", outcome),
            ("writer_batch_us", batch),
        ]
    }
    figures["unary_overhead_us"] = figures["unary_metered_us"] - figures["unary_bare_us"]
    figures["stream10_overhead_us"] = figures["stream10_metered_us"] - figures["stream10_bare_us"]
    return figures


def _run(multiprocess_dir: str | None, calls: int) -> dict[str, float]:
    metrics = Metrics(Path(multiprocess_dir) if multiprocess_dir else None)
    return asyncio.run(_measure(metrics, calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_run(args.child or None, args.calls)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for mode, child in (("in_memory", ""), ("multiprocess", directory)):
            done = subprocess.run(
                [sys.executable, __file__, "--calls", str(args.calls), "--child", child],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(done.stdout)
    for mode, figures in results.items():
        print(mode)
        for name, value in figures.items():
            print(f"  {name:<22} {value:8.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
