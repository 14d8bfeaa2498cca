"""A server on a database of its own, for the analysis-queue tests: claims take the
oldest claimable job, so the jobs of every other test's attempts must not be there."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from veritas.v1 import (
    admin_pb2_grpc,
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2_grpc,
    student_pb2,
)

from tests.e2e.conftest import SignedIn, login, register_and_login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs, submit
from tests.support import PASSWORD, ServerThread, make_settings, unique_email, unique_enrollment
from veritas_grpc import bootstrap
from veritas_grpc.db import migrate
from veritas_grpc.domain.identity import Role


@dataclass
class QueueWorld:
    database_url: str
    server: ServerThread
    channel: grpc.Channel
    services: bootstrap.Services

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self.channel)

    @property
    def analysis(self) -> analysis_pb2_grpc.AnalysisServiceStub:
        return analysis_pb2_grpc.AnalysisServiceStub(self.channel)

    @property
    def admin_stub(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def account(self, role: Role) -> SignedIn:
        email = unique_email(role.value)
        enrollment = unique_enrollment() if role is Role.STUDENT else None
        self.services.accounts.create_account(
            role, email, PASSWORD, f"Test {role.value}", enrollment
        )
        return login(self.auth, email)

    def exam(self, teacher: SignedIn, **fields) -> str:
        _, teacher_stub = stubs(self.channel)
        return published_exam(teacher_stub, teacher.metadata, **open_window(), **fields).id

    def attempt(self, exam_id: str) -> tuple[SignedIn, student_pb2.StudentAttempt]:
        """A new student's attempt in progress."""
        student_stub, _ = stubs(self.channel)
        student = register_and_login(self.auth)
        return student, start(student_stub, student, exam_id)

    def submit(self, student: SignedIn, attempt_id: str) -> None:
        student_stub, _ = stubs(self.channel)
        submit(student_stub, student, attempt_id)

    def claim(self, scorer: SignedIn, **fields) -> list[analysis_pb2.AnalysisJobLease]:
        request = analysis_pb2.ClaimAnalysisJobsRequest(**fields)
        timeout = fields.get("wait_seconds", 0) + 10
        return list(
            self.analysis.ClaimAnalysisJobs(
                request, metadata=scorer.metadata, timeout=timeout
            ).leases
        )

    def jobs(
        self, admin: SignedIn, attempt_id: str = "", **fields
    ) -> analysis_pb2.ListAnalysisJobsResponse:
        return self.analysis.ListAnalysisJobs(
            analysis_pb2.ListAnalysisJobsRequest(attempt_id=attempt_id, **fields),
            metadata=admin.metadata,
        )


def queue_world(fresh_database, label: str, **settings) -> Iterator[QueueWorld]:
    """For a module-scoped fixture: `yield from queue_world(fresh_database, "x")`."""
    url = fresh_database(label)
    migrate.upgrade(url)
    server = ServerThread(make_settings(**settings), url)
    services = bootstrap.build_services(make_settings(), url)
    channel = grpc.insecure_channel(server.address)
    try:
        yield QueueWorld(url, server, channel, services)
    finally:
        channel.close()
        services.close()
        server.stop()
