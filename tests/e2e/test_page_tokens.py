"""Page tokens over real channels (issue 10, item 4): a token the server did not issue is
INVALID_ARGUMENT on page_token, whatever it decodes to; a token one server process
issued is good at another sharing the secret."""

import base64
import json
import uuid

import grpc
import pytest
from veritas.v1 import teacher_pb2, teacher_pb2_grpc

from tests.e2e.exam_helpers import exam_message, rpc_error
from tests.support import ServerProcess, bad_request_fields
from veritas_grpc.domain.identity import Role


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


UNISSUED = {
    "nested JSON": _b64(b"[" * 5000),
    "nested JSON, signed by nobody": _b64(b"[" * 5000) + "." + _b64(b"\x00" * 32),
    # A position of the right types, as the server wrote tokens before they were signed.
    "an unsigned position": _b64(
        json.dumps({"s": "exams", "k": ["2026-11-29T12:00:00+00:00", str(uuid.uuid4())]}).encode()
    ),
}


@pytest.fixture
def teacher(make_account):
    return make_account(Role.TEACHER)


@pytest.fixture
def first_page(channel, teacher):
    stub = teacher_pb2_grpc.TeacherServiceStub(channel)
    for n in range(3):
        stub.CreateExam(
            teacher_pb2.CreateExamRequest(exam=exam_message(title=f"Paged {n}")),
            metadata=teacher.metadata,
        )
    return stub.ListExams(teacher_pb2.ListExamsRequest(page_size=2), metadata=teacher.metadata)


@pytest.mark.parametrize("case", sorted(UNISSUED))
def test_a_token_the_server_did_not_issue_is_an_invalid_argument(channel, teacher, case):
    error = rpc_error(
        teacher_pb2_grpc.TeacherServiceStub(channel).ListExams,
        teacher_pb2.ListExamsRequest(page_token=UNISSUED[case]),
        metadata=teacher.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {"page_token"}


def test_the_next_page_may_be_asked_of_another_server_process(
    channel, teacher, first_page, database_url
):
    assert first_page.next_page_token
    other = ServerProcess(database_url)
    try:
        with grpc.insecure_channel(other.address) as other_channel:
            second = teacher_pb2_grpc.TeacherServiceStub(other_channel).ListExams(
                teacher_pb2.ListExamsRequest(page_size=2, page_token=first_page.next_page_token),
                metadata=teacher.metadata,
            )
    finally:
        other.stop()
    seen = [exam.id for exam in (*first_page.exams, *second.exams)]
    assert len(seen) == len(set(seen)) >= 3
