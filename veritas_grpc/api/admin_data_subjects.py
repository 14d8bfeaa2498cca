"""AdminService, data-subject rights: ExportStudentData and EraseStudent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import grpc
from veritas.v1 import admin_pb2

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.data_subjects import DataSubjects, ExportRecord

Context = grpc.aio.ServicerContext


class _Chunks:
    """The export's chunks, read one at a time on worker threads; closing (the stream
    ended early) waits for a read in progress, then ends the reading transaction."""

    def __init__(self, chunks: Iterator[list[ExportRecord]]) -> None:
        self._chunks = chunks
        self._lock = threading.Lock()

    def next(self) -> list[ExportRecord] | None:
        with self._lock:
            return next(self._chunks, None)

    def close(self) -> None:
        with self._lock:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()


class DataSubjectServicer:
    def __init__(self, data_subjects: DataSubjects, runner: BlockingRunner) -> None:
        self._data_subjects = data_subjects
        self._run = runner.run

    async def ExportStudentData(
        self, request: admin_pb2.ExportStudentDataRequest, context: Context
    ) -> AsyncIterator[admin_pb2.ExportStudentDataResponse]:
        chunks = _Chunks(
            await self._run(self._data_subjects.export, current_principal(), request.student_id)
        )
        try:
            while (chunk := await self._run(chunks.next)) is not None:
                yield convert.export_chunk(chunk)
        finally:
            # Not awaited: the stream may be ending because its task was cancelled.
            asyncio.get_running_loop().run_in_executor(None, chunks.close)

    async def EraseStudent(
        self, request: admin_pb2.EraseStudentRequest, context: Context
    ) -> admin_pb2.EraseStudentResponse:
        report = await self._run(
            self._data_subjects.erase,
            current_principal(),
            request.student_id,
            request.confirm_email,
        )
        return convert.erasure_report(report)
