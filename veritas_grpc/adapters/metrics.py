"""Every metric the server exports, defined once here (README, "Metrics").

prometheus-client, not OpenTelemetry's Prometheus exporter: with VERITAS_PROCESSES > 1
the processes share a port, so a scrape reaches one of them at random; prometheus-client's
multiprocess mode has each process write its values to memory-mapped files in one
directory, and the first process serves their sum. OpenTelemetry keeps values in each
process's memory and offers no such sum.

One `Metrics` per server. With one process its values live in memory, in a registry of
its own (servers started side by side in one process, as tests do, count apart). With
several, the values live in the files and the endpoint serves what every process wrote:
counters and histograms are summed; gauges say how to combine in their
`multiprocess_mode` (livesum: summed over the processes alive; livemin: the worst one).

What is read at scrape time (the analysis queue, from the database) is one figure for
the whole deployment: the serving process reads it once per scrape, never summed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event

log = logging.getLogger("veritas.metrics")
T = TypeVar("T")
GRPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")
# Seconds: from a sub-millisecond unary call to a stream that lives for an exam.
HANDLING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)
BATCH_ROW_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class QueueFigures(Protocol):
    """The analysis queue's summary (services.views.analysis_jobs.QueueSummary)."""

    pending: int
    claimable: int
    leased: int
    dead: int
    oldest_pending_age_seconds: int


def use_multiprocess(directory: Path) -> None:
    """Keep this process's values in `directory`. prometheus-client chooses where values
    live when it is first imported, from PROMETHEUS_MULTIPROC_DIR; our processes learn the
    directory later, from the settings, so it chooses again here, before any metric exists."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()


def clear_multiprocess_dir(directory: Path) -> None:
    """Forget the files of earlier runs: their processes are gone, and a counter summed
    with a dead run's would jump at start. The first process does this before it starts
    the others."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


class _QueueCollector(Collector):
    """The analysis queue read at scrape time: one query per scrape, none per call."""

    def __init__(self, summary: Callable[[], QueueFigures]) -> None:
        self._summary = summary

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self._summary()
        except Exception as error:  # noqa: BLE001 - a scrape without these figures
            log.warning("analysis queue figures unavailable: %s", type(error).__name__)
            return
        jobs = GaugeMetricFamily(
            "veritas_analysis_queue_jobs", "Analysis jobs by state.", labels=["state"]
        )
        for state in ("pending", "claimable", "leased", "dead"):
            jobs.add_metric([state], getattr(figures, state))
        yield jobs
        yield GaugeMetricFamily(
            "veritas_analysis_queue_oldest_pending_age_seconds",
            "Age of the oldest job waiting to be scored (0: none waits).",
            value=figures.oldest_pending_age_seconds,
        )


class Metrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            use_multiprocess(multiprocess_dir)
        # Values are registered here only with one process; with several, the endpoint
        # reads the files instead.
        own = None if multiprocess_dir else CollectorRegistry(auto_describe=True)
        self._own = own

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=own)

        def gauge(name: str, doc: str, mode: str = "livesum") -> Gauge:
            return Gauge(name, doc, registry=own, multiprocess_mode=mode)  # type: ignore[arg-type]

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=own, buckets=buckets)

        # The grpc ecosystem's names (go-grpc-prometheus, py-grpc-prometheus).
        self.grpc_started = counter(
            "grpc_server_started_total", "RPCs started on the server.", GRPC_LABELS
        )
        self.grpc_handled = counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by final status code.",
            (*GRPC_LABELS, "grpc_code"),
        )
        self.grpc_handling = histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's start to its final status.",
            HANDLING_BUCKETS,
            GRPC_LABELS,
        )
        self.grpc_received = counter(
            "grpc_server_msg_received_total", "Stream messages received.", GRPC_LABELS
        )
        self.grpc_sent = counter("grpc_server_msg_sent_total", "Stream messages sent.", GRPC_LABELS)
        # Ingestion.
        self.events = counter(
            "veritas_ingest_events_total",
            "Monitoring events by outcome: accepted, duplicate or rejected.",
            ("outcome",),
        )
        # Bound once: every ingestion call counts in them.
        self._outcomes = tuple(self.events.labels(o) for o in ("accepted", "duplicate", "rejected"))
        self.rejections = counter(
            "veritas_ingest_rejections_total",
            "Rejected monitoring events by kind of reason.",
            ("kind",),
        )
        self.batch_rows = histogram(
            "veritas_writer_batch_rows",
            "Events per transaction of the event writer.",
            BATCH_ROW_BUCKETS,
        )
        self.commit_seconds = histogram(
            "veritas_writer_commit_seconds",
            "Time to store one batch of the event writer, commit included.",
            COMMIT_BUCKETS,
        )
        self.writer_queue = gauge(
            "veritas_writer_queue_depth", "Submissions waiting for an event writer."
        )
        self.writer_capacity = gauge(
            "veritas_writer_queue_capacity", "Submissions the writer queue holds at most."
        )
        self.agent_streams = gauge("veritas_agent_streams_open", "Open StreamEvents calls.")
        # Live alerts.
        self.watchers = gauge("veritas_alert_watchers_open", "Open WatchExamAlerts calls.")
        self.alerts_sent = counter("veritas_alerts_sent_total", "Alerts sent to watchers.")
        self.alerts_dropped = counter(
            "veritas_alerts_dropped_total",
            "Alerts watchers could not receive (no longer stored).",
        )
        # The database.
        self.pool_in_use = gauge(
            "veritas_db_pool_in_use", "Database connections checked out of the pool."
        )
        self.pool_waits = counter(
            "veritas_db_pool_waits_total",
            "Calls that waited for a database thread (each holds a pooled connection).",
            ("pool",),
        )
        # The read replica (adapters/replica.py).
        self.db_reads = counter(
            "veritas_db_reads_total",
            "Reads of the RPCs that may read the replica, by where they went: replica, or "
            "primary (no replica configured, or it is behind or unreachable).",
            ("source",),
        )
        self.replica_fresh = gauge(
            "veritas_replica_fresh",
            "1 while the replica is within VERITAS_REPLICA_MAX_LAG_SECONDS of the primary "
            "and answers, else 0; with several processes, the lowest of them.",
            mode="livemin",
        )
        self.replica_staleness = gauge(
            "veritas_replica_staleness_seconds",
            "How far the replica may be behind the primary, as last probed (-1: no answer); "
            "with several processes, the highest of them.",
            mode="livemax",
        )
        # Sign-in.
        self.sign_in_failures = counter(
            "veritas_sign_in_failures_total", "Refused sign-ins, by reason.", ("reason",)
        )
        self.lockouts = counter(
            "veritas_sign_in_lockouts_total",
            "Sign-in throttle buckets locked, by scope.",
            ("scope",),
        )
        # Maintenance and health.
        self.maintenance_runs = counter(
            "veritas_maintenance_runs_total",
            "Runs of periodic maintenance (sweeps, partitions...), by result.",
            ("task", "result"),
        )
        self.maintenance_items = counter(
            "veritas_maintenance_items_total",
            "What maintenance did: attempts timed out, tokens purged, leases returned...",
            ("task",),
        )
        self.serving = gauge(
            "veritas_health_serving",
            "1 while the server reports SERVING (the database answers), else 0; with "
            "several processes, the lowest of them.",
            mode="livemin",
        )
        self._queue_summary: Callable[[], QueueFigures] | None = None

    # Recording, called by the interceptor, servicers and adapters -----------------

    def stream_outcome(
        self, accepted: int, duplicates: int, rejected_by_kind: dict[str, int]
    ) -> None:
        """One ingestion call's outcome: a few increments per call, none per event."""
        accepted_events, duplicate_events, rejected_events = self._outcomes
        if accepted:
            accepted_events.inc(accepted)
        if duplicates:
            duplicate_events.inc(duplicates)
        rejected = sum(rejected_by_kind.values())
        if rejected:
            rejected_events.inc(rejected)
            for kind, count in rejected_by_kind.items():
                self.rejections.labels(kind).inc(count)

    def sign_in_failed(self, reason: str) -> None:
        self.sign_in_failures.labels(reason).inc()

    def locked_out(self, scope: str) -> None:
        self.lockouts.labels(scope).inc()

    def health_changed(self, serving: bool) -> None:
        self.serving.set(1 if serving else 0)

    def read_from(self, source: str) -> None:
        self.db_reads.labels(source).inc()

    def replica_probed(self, fresh: bool, staleness_seconds: float | None) -> None:
        self.replica_fresh.set(1 if fresh else 0)
        self.replica_staleness.set(-1 if staleness_seconds is None else staleness_seconds)

    def waiter(self, pool: str) -> Callable[[], None]:
        """What a thread pool calls when a call finds all its threads busy."""
        return self.pool_waits.labels(pool).inc

    def counted(self, task: str, job: Callable[[], T]) -> Callable[[], T]:
        """The job, counting its runs (ok or failed) and, when it returns a count, what
        it did."""
        runs_ok = self.maintenance_runs.labels(task, "ok")
        runs_failed = self.maintenance_runs.labels(task, "failed")
        items = self.maintenance_items.labels(task)

        def run() -> T:
            try:
                done = job()
            except BaseException:
                runs_failed.inc()
                raise
            runs_ok.inc()
            if isinstance(done, int) and done > 0:
                items.inc(done)
            return done

        return run

    def watch_pool(self, engine: Engine) -> None:
        """Count the engine's connections in use (a gauge moved at checkout and checkin)."""
        in_use = self.pool_in_use
        event.listen(engine, "checkout", lambda *_: in_use.inc())
        event.listen(engine, "checkin", lambda *_: in_use.dec())

    def read_queue(self, summary: Callable[[], QueueFigures]) -> None:
        """Where the endpoint reads the analysis queue's figures at scrape time."""
        self._queue_summary = summary

    # The endpoint ------------------------------------------------------------------

    def registry(self) -> CollectorRegistry:
        """What one scrape shows: this process's values (or every process's sum), the
        process's own CPU and memory with one process, and the scrape-time figures."""
        if self._own is not None:
            served = self._own
            served.register(ProcessCollector(registry=None))
            served.register(PlatformCollector(registry=None))
        else:
            served = CollectorRegistry()
            multiprocess.MultiProcessCollector(served, str(self.multiprocess_dir))
        if self._queue_summary is not None:
            served.register(_QueueCollector(self._queue_summary))
        return served


class MetricsEndpoint:
    """The HTTP endpoint (/metrics) on its own thread: a scrape never waits for the event
    loop, and the queue's query runs there, off the loop."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server, self._thread = start_http_server(
            int(port), host.strip("[]"), registry=metrics.registry()
        )
        self.port: int = self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
