"""AdminService's oversight RPCs: SearchAttempts and GetSystemStats."""

from __future__ import annotations

import grpc
from veritas.v1 import admin_pb2

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.api.exam_convert import attempt_record
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.oversight import Oversight

Context = grpc.aio.ServicerContext


class OversightServicer:
    def __init__(self, oversight: Oversight, runner: BlockingRunner) -> None:
        self._oversight = oversight
        self._run = runner.run

    async def SearchAttempts(
        self, request: admin_pb2.SearchAttemptsRequest, context: Context
    ) -> admin_pb2.SearchAttemptsResponse:
        page = await self._run(
            self._oversight.search_attempts,
            current_principal(),
            convert.attempt_search(request),
            request.page_size,
            request.page_token,
        )
        return admin_pb2.SearchAttemptsResponse(
            attempts=[attempt_record(view) for view in page.items],
            next_page_token=page.next_token,
        )

    async def GetSystemStats(
        self, request: admin_pb2.GetSystemStatsRequest, context: Context
    ) -> admin_pb2.GetSystemStatsResponse:
        figures = await self._run(self._oversight.system_stats, current_principal())
        return convert.system_stats(figures)
