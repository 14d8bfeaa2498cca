"""veritas.v1.MonitoringService: proto in, service call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc

from veritas_grpc.adapters.metrics import Metrics
from veritas_grpc.api import event_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.ingestion import EventIngestion, StreamOutcome
from veritas_grpc.services.monitoring import MonitoringService
from veritas_grpc.services.watching import AlertWatching

Context = grpc.aio.ServicerContext


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(
        self,
        ingestion: EventIngestion,
        watching: AlertWatching,
        monitoring: MonitoringService,
        runner: BlockingRunner,
        metrics: Metrics,
    ) -> None:
        self._ingestion = ingestion
        self._watching = watching
        self._monitoring = monitoring
        self._runner = runner
        self._metrics = metrics

    async def StreamEvents(
        self, request_iterator: AsyncIterator[monitoring_pb2.StreamEventsRequest], context: Context
    ) -> monitoring_pb2.StreamEventsResponse:
        stream = self._ingestion.open(current_principal())
        self._metrics.agent_streams.inc()
        try:
            async for request in request_iterator:
                await stream.add([convert.incoming(event) for event in request.events])
            return convert.stream_response(await stream.finish())
        finally:
            self._metrics.agent_streams.dec()
            self._count(stream.outcome)

    async def RecordEvent(
        self, request: monitoring_pb2.RecordEventRequest, context: Context
    ) -> monitoring_pb2.RecordEventResponse:
        stream = self._ingestion.open(current_principal())
        try:
            duplicate = await stream.record(convert.incoming(request.event))
        finally:
            self._count(stream.outcome)
        return monitoring_pb2.RecordEventResponse(duplicate=duplicate)

    def _count(self, outcome: StreamOutcome) -> None:
        """What the call's events became (a stream cut short: those settled so far)."""
        self._metrics.stream_outcome(outcome.accepted, outcome.duplicates, outcome.rejected_by_kind)

    async def ListEvents(
        self, request: monitoring_pb2.ListEventsRequest, context: Context
    ) -> monitoring_pb2.ListEventsResponse:
        listed = await self._runner.run(
            self._monitoring.list_events,
            current_principal(),
            request.attempt_id,
            convert.event_filter(request),
            request.page_size,
            request.page_token,
        )
        exempt = listed.exempt_types
        return monitoring_pb2.ListEventsResponse(
            events=[
                convert.event_record(row, row.event_type in exempt) for row in listed.page.items
            ],
            next_page_token=listed.page.next_token,
        )

    async def WatchExamAlerts(
        self, request: monitoring_pb2.WatchExamAlertsRequest, context: Context
    ) -> AsyncIterator[monitoring_pb2.WatchExamAlertsResponse]:
        after = request.after_sequence if request.HasField("after_sequence") else None
        metrics = self._metrics
        metrics.watchers.inc()
        dropped = 0
        try:
            async for item in self._watching.watch(current_principal(), request.exam_id, after):
                yield convert.watch_response(item)
                if item.alert is not None:
                    metrics.alerts_sent.inc()
                if item.dropped_count > dropped:
                    metrics.alerts_dropped.inc(item.dropped_count - dropped)
                    dropped = item.dropped_count
        finally:
            metrics.watchers.dec()
