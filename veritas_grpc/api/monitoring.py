"""veritas.v1.MonitoringService: proto in, service call, proto out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import grpc
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc

from veritas_grpc.adapters.alert_listener import AlertBroker
from veritas_grpc.adapters.event_writer import EventWriter
from veritas_grpc.api import event_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from veritas_grpc.domain.events import EventWindow
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.ingestion import IngestStream
from veritas_grpc.services.monitoring import MonitoringService

Context = grpc.aio.ServicerContext


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(
        self,
        monitoring: MonitoringService,
        writer: EventWriter,
        broker: AlertBroker,
        runner: BlockingRunner,
        window: EventWindow,
        heartbeat_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._monitoring = monitoring
        self._writer = writer
        self._broker = broker
        self._runner = runner
        self._window = window
        self._heartbeat = heartbeat_seconds
        self._clock = clock

    def _stream(self) -> IngestStream:
        return IngestStream(
            current_principal(),
            self._monitoring,
            self._writer,
            self._runner,
            self._clock,
            self._window,
        )

    async def StreamEvents(
        self, request_iterator: AsyncIterator[monitoring_pb2.StreamEventsRequest], context: Context
    ) -> monitoring_pb2.StreamEventsResponse:
        stream = self._stream()
        async for request in request_iterator:
            await stream.add([convert.incoming(event) for event in request.events])
        return convert.stream_response(await stream.finish())

    async def RecordEvent(
        self, request: monitoring_pb2.RecordEventRequest, context: Context
    ) -> monitoring_pb2.RecordEventResponse:
        stream = self._stream()
        await stream.add([convert.incoming(request.event)])
        outcome = await stream.finish()
        if outcome.rejections:
            rejection = outcome.rejections[0]
            if rejection.kind == "invalid":
                field, _, problem = rejection.reason.partition(": ")
                raise InvalidArgument.of("event" if field == "event" else f"event.{field}", problem)
            if rejection.kind == "not_found":
                raise NotFound("attempt not found")
            if rejection.kind == "not_in_progress":
                raise FailedPrecondition("the attempt is no longer in progress")
            raise Unavailable("the event could not be stored; retry")
        return monitoring_pb2.RecordEventResponse(duplicate=outcome.duplicates == 1)

    async def ListEvents(
        self, request: monitoring_pb2.ListEventsRequest, context: Context
    ) -> monitoring_pb2.ListEventsResponse:
        page = await self._runner.run(
            self._monitoring.list_events,
            current_principal(),
            request.attempt_id,
            convert.event_filter(request),
            request.page_size,
            request.page_token,
        )
        return monitoring_pb2.ListEventsResponse(
            events=[convert.event_record(row) for row in page.items],
            next_page_token=page.next_token,
        )

    async def WatchExamAlerts(
        self, request: monitoring_pb2.WatchExamAlertsRequest, context: Context
    ) -> AsyncIterator[monitoring_pb2.WatchExamAlertsResponse]:
        viewer = current_principal()
        exam_id = await self._runner.run(self._monitoring.watch_target, viewer, request.exam_id)
        watcher = self._broker.subscribe(exam_id)
        checked = time.monotonic()
        try:
            # The first message tells the client the watch is live.
            yield _heartbeat(watcher.dropped)
            while True:
                if time.monotonic() - checked >= self._heartbeat:
                    # Access may have been revoked: this raises NOT_FOUND, ending the watch,
                    # however busy the exam is.
                    await self._runner.run(
                        self._monitoring.watch_target, viewer, request.exam_id, False
                    )
                    checked = time.monotonic()
                try:
                    alert = await asyncio.wait_for(watcher.queue.get(), self._heartbeat)
                except TimeoutError:
                    yield _heartbeat(watcher.dropped)
                    continue
                yield monitoring_pb2.WatchExamAlertsResponse(
                    alert=convert.event_alert(alert), dropped_alert_count=watcher.dropped
                )
        finally:
            self._broker.unsubscribe(watcher)


def _heartbeat(dropped: int) -> monitoring_pb2.WatchExamAlertsResponse:
    response = monitoring_pb2.WatchExamAlertsResponse(dropped_alert_count=dropped)
    response.heartbeat.server_time.FromDatetime(datetime.now(UTC))
    return response
