"""AdminService, data-subject rights: ExportStudentData and EraseStudent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from veritas.v1 import admin_pb2

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.api.streaming import pages_of
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.data_subjects import DataSubjects

Context = grpc.aio.ServicerContext


class DataSubjectServicer:
    def __init__(self, data_subjects: DataSubjects, runner: BlockingRunner) -> None:
        self._data_subjects = data_subjects
        self._runner = runner
        self._run = runner.run

    async def ExportStudentData(
        self, request: admin_pb2.ExportStudentDataRequest, context: Context
    ) -> AsyncIterator[admin_pb2.ExportStudentDataResponse]:
        chunks = await self._run(
            self._data_subjects.export, current_principal(), request.student_id
        )
        async for chunk in pages_of(chunks, self._runner):
            yield convert.export_chunk(chunk)

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
