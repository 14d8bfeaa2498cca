"""The gRPC server: grpc.aio on one event loop, blocking work on a bounded thread pool.

An open stream costs the event loop a little memory, not a thread: 1,000 agent streams
and live watchers are held by the loop, and only calls doing database work borrow one
of `worker_threads` threads while they do it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from veritas_grpc import bootstrap
from veritas_grpc.adapters.metrics import MetricsEndpoint
from veritas_grpc.adapters.replica import REPLICA_PROBE_SECONDS, ReplicaRouter
from veritas_grpc.adapters.tls import ServerTls, server_tls
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.config import Settings, check_transport
from veritas_grpc.domain.partitions import PartitionUpkeep
from veritas_grpc.health import NOT_SERVING, REPLICA_HEALTH, SERVING, HealthMonitor
from veritas_grpc.reflection import enable_reflection

log = logging.getLogger("veritas.server")
PURGE_INTERVAL_SECONDS = 3600
# After a partition change gave up on a busy lock: soon, not an hour later.
PARTITION_RETRY_SECONDS = 60
REFUSAL_FLUSH_SECONDS = 1.0
LEASE_SWEEP_SECONDS = 1.0
# See tune_interpreter. Allocations between young collections (CPython: 700), and
# seconds a thread holds the GIL while another waits for it (CPython: 0.005).
GC_YOUNG_THRESHOLD = 20_000
GIL_SWITCH_INTERVAL_SECONDS = 0.0005
# After the grace, how long the calls cut get to unwind (see _end_cut_calls), and the
# coroutines of grpc.aio's two tasks per call: the call's, and its handler's within.
CALL_UNWIND_SECONDS = 5.0
GRPC_CALL_COROUTINE = "_schedule_rpc_coro"
GRPC_HANDLER_COROUTINE = "_handle_exceptions"


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    services: bootstrap.Services
    runners: bootstrap.Runners
    ingestion: bootstrap.Ingestion
    health: HealthMonitor
    grace_seconds: float
    _maintenance: list[asyncio.Task[None]]
    # Re-read on SIGHUP (serve_until_signalled); None: plaintext.
    tls: ServerTls | None = None
    # /metrics, served by the first process (VERITAS_METRICS_LISTEN); None: not here.
    metrics_endpoint: MetricsEndpoint | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight calls finish within the grace, then close."""
        for task in self._maintenance:
            task.cancel()
        await self.health.shutdown()
        await self.server.stop(self.grace_seconds if grace is None else grace)
        await _end_cut_calls(CALL_UNWIND_SECONDS)
        await self._keep_last_refusals()
        await self.ingestion.stop()
        self.runners.shutdown()
        self.services.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()

    async def _keep_last_refusals(self) -> None:
        try:
            await self.runners.database.run(self.services.refusals.flush)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.warning("could not write the last refused requests to the audit trail")


async def _end_cut_calls(timeout: float) -> None:
    """End the handlers of the calls cut at the end of the grace, and wait for them.

    server.stop() returns once grpc core has ended every call (the clients of those
    still open got UNAVAILABLE), but a handler grpc did not cancel (seen with watch
    streams waiting for their next alert) keeps running on the loop. When the loop then
    ends, asyncio.run() cancels grpc's task for that call, and grpc reports the
    CancelledError with traceback.print_exc(), on stderr, outside the log. Cancelled
    here instead, the handler unwinds as grpc's own cancellation would have it (grpc
    logs that at DEBUG), while the loop still runs.
    """
    for handler in _running_tasks(GRPC_HANDLER_COROUTINE):
        handler.cancel()
    calls = _running_tasks(GRPC_CALL_COROUTINE)
    if calls:
        await asyncio.wait(calls, timeout=timeout)


def _running_tasks(coroutine_name: str) -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__name__", "") == coroutine_name
    ]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Agents and watchers keep long streams open through proxies: answer their
        # keepalive pings rather than closing the connection with GOAWAY.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Several server processes may share the port (VERITAS_PROCESSES); else a second
        # server on the same port must fail to start, not silently split the traffic.
        ("grpc.so_reuseport", 1 if settings.shares_port else 0),
        # grpc core cancels new calls beyond 1,000 waiting to be picked up by the event
        # loop. When an exam starts, a thousand agents connect in the same second: that
        # burst must queue briefly, not fail (measured in scripts/bench_streams.py).
        ("grpc.server.max_pending_requests", 10_000),
        ("grpc.server.max_pending_requests_hard_limit", 20_000),
    ]


async def _every(
    seconds: float, what: str, job: Callable[[], int], runner: BlockingRunner, quiet: bool = False
) -> None:
    """Run a maintenance job periodically; a failure is logged and retried next time.
    What it did is logged too, unless it is `quiet` (a job that runs every second)."""
    while True:
        try:
            done = await runner.run(job)
            if done and not quiet:
                log.info(what, extra={"fields": {"count": done}})
        except Exception:  # noqa: BLE001
            log.warning("%s: failed", what, exc_info=True)
        await asyncio.sleep(seconds)


def _days_behind(settings: Settings) -> int:
    return settings.event_max_age_seconds // 86400 + 1


async def _keep_partitions(
    settings: Settings, services: bootstrap.Services, runner: BlockingRunner
) -> None:
    """Partition upkeep every hour, and again soon after a partition was busy (see
    services.partition_upkeep): a long reader delays a drop, never ingestion."""

    def upkeep() -> PartitionUpkeep:
        done = services.monitoring.ensure_partitions(7, _days_behind(settings))
        if settings.event_retention_days:
            done += services.monitoring.purge_partitions(settings.event_retention_days)
        return done

    counted_upkeep = services.metrics.counted("partitions", upkeep)
    while True:
        delay = PURGE_INTERVAL_SECONDS
        try:
            done = await runner.run(counted_upkeep)
            if done.changed:
                log.info("created or dropped event partitions", extra=_days_field(done.changed))
            if done.busy:
                log.info("event partitions busy, retrying soon", extra=_days_field(done.busy))
                delay = PARTITION_RETRY_SECONDS
        except Exception:  # noqa: BLE001
            log.warning("event partition upkeep: failed", exc_info=True)
        await asyncio.sleep(delay)


def _days_field(days: list[date]) -> dict[str, object]:
    return {"fields": {"count": len(days), "days": [day.isoformat() for day in days]}}


def _prune_audit(settings: Settings, services: bootstrap.Services) -> int:
    if not settings.audit_retention_days:
        return 0
    return services.audit_trail.prune(None, settings.audit_retention_days).deleted_count


def _maintenance(
    settings: Settings, services: bootstrap.Services, runner: BlockingRunner
) -> list[asyncio.Task[None]]:
    # Each job's runs and what it did, by task (veritas_maintenance_*_total).
    counted = services.metrics.counted
    return [
        asyncio.create_task(_keep_partitions(settings, services, runner)),
        # Refused requests for others' resources: into the audit trail, in batches.
        asyncio.create_task(
            _every(
                REFUSAL_FLUSH_SECONDS,
                "wrote refused requests to the audit trail",
                counted("refusal_flush", services.refusals.flush),
                runner,
                quiet=True,
            )
        ),
        # Audit retention (VERITAS_AUDIT_RETENTION_DAYS; 0: kept forever, nothing to do).
        asyncio.create_task(
            _every(
                PURGE_INTERVAL_SECONDS,
                "pruned old audit rows",
                counted("audit_prune", lambda: _prune_audit(settings, services)),
                runner,
            )
        ),
        asyncio.create_task(
            _every(
                PURGE_INTERVAL_SECONDS,
                "purged expired tokens",
                counted("token_purge", services.auth.purge_expired),
                runner,
            )
        ),
        # Expired analysis leases back to the queue (claims do it too; this keeps the
        # queue's figures true while no scorer claims).
        asyncio.create_task(
            _every(
                LEASE_SWEEP_SECONDS,
                "returned expired analysis leases to the queue",
                counted("lease_expiry", services.analysis_queue.expire_leases),
                runner,
            )
        ),
        asyncio.create_task(
            _every(
                settings.sweep_interval_seconds,
                "timed out overdue attempts",
                counted("attempt_sweep", services.attempts.sweep_overdue),
                runner,
            )
        ),
        # AdminService.GetSystemStats's figures (a refresh of 0: computed on each call,
        # and this job does nothing). Not logged: it runs every minute.
        asyncio.create_task(
            _every(
                settings.system_stats_refresh_seconds or PURGE_INTERVAL_SECONDS,
                "refreshed the system figures",
                counted("system_figures", lambda: services.oversight.refresh() and 0),
                runner,
            )
        ),
    ]


async def _probe_replica(
    router: ReplicaRouter, health: HealthMonitor, runners: bootstrap.Runners
) -> None:
    """Measure the replica's staleness every REPLICA_PROBE_SECONDS, and report it as the
    health service REPLICA_HEALTH (the server's own health does not follow it: reads
    fall back to the primary)."""
    while True:
        try:
            await runners.health.run(router.probe)
        except Exception:  # noqa: BLE001
            log.warning("replica probe: failed", exc_info=True)
        serving = SERVING if router.state.fresh else NOT_SERVING
        await health.servicer.set(REPLICA_HEALTH, serving)
        await asyncio.sleep(REPLICA_PROBE_SECONDS)


def tune_interpreter() -> None:
    """Two CPython defaults that cost ingestion dearly under load (docs/BENCH_INGEST.md).
    Process-wide, so `veritas serve` calls it once its server has started, and servers
    started in-process (tests) do without.

    The garbage collector: ingestion allocates a few objects per event, and with the
    default thresholds the collector ran every 700 allocations and, every hundred runs,
    walked every object the server holds (modules, SQLAlchemy metadata, protobuf
    descriptors): a third of the event loop's time. What exists at start lives as long
    as the process, so it is frozen out of collections, and young collections run less
    often.

    The GIL switch interval: a writer thread whose database answer has arrived waits
    for the GIL until the event loop, busy validating events, gives it up, by default
    after 5 ms; a transaction makes several round trips, so the writers idled while
    PostgreSQL waited for them. A shorter interval keeps both moving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)


def _bind(server: grpc.aio.Server, settings: Settings, tls: ServerTls | None) -> int:
    host, port = settings.host_port
    address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.credentials())


async def start_server(settings: Settings, database_url: str) -> RunningServer:
    # Before anything else: a server that must not start should not touch the database.
    check_transport(settings)
    tls = server_tls(settings)
    metrics = bootstrap.build_metrics(settings)
    services = bootstrap.build_services(settings, database_url, metrics)
    runners = bootstrap.build_runners(settings, metrics)
    # Today's partitions should exist before the first event arrives; with the database
    # down the server still starts (NOT_SERVING) and the maintenance task retries.
    try:
        await runners.database.run(services.monitoring.ensure_partitions, 7, _days_behind(settings))
    except Exception:  # noqa: BLE001
        log.warning("could not prepare event partitions at start", exc_info=True)
    ingestion = bootstrap.start_ingestion(settings, services, runners, database_url)
    server = grpc.aio.server(
        interceptors=bootstrap.interceptors(services, runners),
        options=server_options(settings),
    )
    bootstrap.add_servicers(server, settings, services, runners, ingestion)
    health = bootstrap.health_monitor(settings, services, runners)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    if settings.enable_reflection:
        enable_reflection(
            server,
            (*bootstrap.SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name),
        )
    bound = _bind(server, settings, tls)
    if bound == 0:
        raise OSError(f"could not listen on {settings.listen}")
    await health.start()
    await server.start()
    maintenance = _maintenance(settings, services, runners.database)
    if services.replica is not None:
        maintenance.append(asyncio.create_task(_probe_replica(services.replica, health, runners)))
    # The first process serves every process's metrics (the others only write theirs).
    endpoint = None
    if settings.metrics_listen and settings.process_index == 0:
        endpoint = MetricsEndpoint(metrics, settings.metrics_listen)
    return RunningServer(
        server,
        bound,
        services,
        runners,
        ingestion,
        health,
        settings.shutdown_grace_seconds,
        maintenance,
        tls,
        endpoint,
    )


def _nothing_to_reload() -> None:
    log.info("SIGHUP: no TLS files to re-read (plaintext); still serving")


async def serve_until_signalled(
    running: RunningServer,
    ready: Callable[[], None] = lambda: None,
    before_stop: Callable[[], Awaitable[None]] | None = None,
    on_reload: Callable[[], None] = lambda: None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully. `ready` runs (the banner a
    supervisor waits for) once the handlers are in place: a SIGTERM sent the moment the
    banner appears must stop the server cleanly, not kill it. `before_stop` runs while
    the server still answers (a child scorer releasing its leases). With TLS, SIGHUP
    re-reads the certificate files, then runs `on_reload` (passing it on to the other
    server processes)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if running.tls is not None:
        tls = running.tls
        loop.add_signal_handler(signal.SIGHUP, lambda: (tls.reload(), on_reload()))
    else:
        # Nothing to re-read; SIGHUP's default would end the server without a drain.
        loop.add_signal_handler(signal.SIGHUP, _nothing_to_reload)
    ready()
    await stop.wait()
    if before_stop is not None:
        await before_stop()
    log.info("shutting down", extra={"fields": {"grace_seconds": running.grace_seconds}})
    await running.stop()
    log.info("stopped")
