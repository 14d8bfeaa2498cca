"""grpc.health.v1: SERVING while the database answers, NOT_SERVING while it does not.

The overall status ("") and each veritas service follow the database, probed on a
fixed interval by a background task. LIVENESS does not: it is SERVING from start until
shutdown begins, so that a liveness probe restarts only a server that stopped answering,
never every pod because the database is down (restarting does not bring it back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from sqlalchemy import Engine

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.db.engine import ping

log = logging.getLogger("veritas.health")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The service name liveness probes ask about (deploy/k8s/deployment.yaml).
LIVENESS = "liveness"
# With a read replica (VERITAS_DATABASE_READ_URL): SERVING while it is fresh enough to
# read from, NOT_SERVING while reads fall back to the primary (set by the server's
# replica probe; the overall status does not follow it).
REPLICA_HEALTH = "replica"


class _HealthServicer(HealthServicer):
    """grpcio-health-checking's servicer, with the List its 1.85 release leaves
    unimplemented (NotImplementedError, answered INTERNAL)."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: object
    ) -> health_pb2.HealthListResponse:
        # The statuses Check answers with (the overall "" among them), shutdown included.
        statuses = {
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in self._server_status.items()
        }
        return health_pb2.HealthListResponse(statuses=statuses)


class HealthMonitor:
    def __init__(
        self,
        engine: Engine,
        runner: BlockingRunner,
        services: Iterable[str],
        interval_seconds: float,
        on_change: Callable[[bool], None] = lambda serving: None,
    ) -> None:
        self.servicer = _HealthServicer()
        # Told whether the server serves at each change (the health gauge of the metrics).
        self._on_change = on_change
        self._engine = engine
        self._runner = runner
        self._names = ["", *services]
        self._interval = interval_seconds
        self._healthy: bool | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        try:
            await asyncio.wait_for(self._runner.run(ping, self._engine), timeout=5)
            healthy = True
        except Exception as error:  # noqa: BLE001 - any failure means not serving
            healthy = False
            if self._healthy is not False:
                log.warning("database unreachable: %s", type(error).__name__)
        if healthy != self._healthy:
            if healthy and self._healthy is False:
                log.info("database reachable again")
            self._healthy = healthy
            self._on_change(healthy)
            for name in self._names:
                await self.servicer.set(name, SERVING if healthy else NOT_SERVING)
        return healthy

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def start(self) -> None:
        await self.servicer.set(LIVENESS, SERVING)
        await self.check_once()
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._on_change(False)
        await self.servicer.enter_graceful_shutdown()
