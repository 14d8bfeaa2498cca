"""The analysis queue through real channels, on a database of its own (queue_world):
jobs made where attempts end and evidence changes, claims woken across processes,
leases that complete, fail, expire and dead-letter, and the evidence a lease reads."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import create_engine, text
from veritas.v1 import admin_pb2, analysis_pb2, auth_pb2, common_pb2, student_pb2, teacher_pb2

from tests.e2e.exam_helpers import rpc_error, stubs
from tests.e2e.monitoring_helpers import critical, event, stream
from tests.e2e.queue_world import QueueWorld, queue_world
from tests.support import ServerProcess, bad_request_fields
from veritas_grpc.domain.identity import Role

PENDING = analysis_pb2.ANALYSIS_JOB_STATE_PENDING
LEASED = analysis_pb2.ANALYSIS_JOB_STATE_LEASED
DONE = analysis_pb2.ANALYSIS_JOB_STATE_DONE
DEAD = analysis_pb2.ANALYSIS_JOB_STATE_DEAD


@pytest.fixture(scope="module")
def world(fresh_database):
    yield from queue_world(fresh_database, "queue")


@pytest.fixture(scope="module")
def quick(fresh_database):
    """No backoff and three tries: the retry path without waiting."""
    yield from queue_world(
        fresh_database, "queue_quick", analysis_retry_base_seconds=0.0, analysis_max_tries=3
    )


def _clear(world: QueueWorld) -> None:
    """Take every job of earlier tests out of the way, so that a test's claims get its
    own: a janitor leases the claimable ones for an hour, and those still backing off
    (they would fall due in the middle of a later test) are parked as dead letters."""
    janitor = world.account(Role.SERVICE)
    while world.claim(janitor, max_jobs=100, lease_seconds=3600):
        pass
    _run_sql(world, "UPDATE analysis_jobs SET state = 'DEAD' WHERE state = 'PENDING'")


def _ended(world: QueueWorld, teacher, count: int = 1, events: int = 0) -> list[str]:
    exam_id = world.exam(teacher, max_attempts=100)
    ended = []
    for _ in range(count):
        student, attempt = world.attempt(exam_id)
        if events:
            sent = stream(
                world.channel, student.metadata, [[event(attempt.id) for _ in range(events)]]
            )
            assert sent.accepted_count == events
        world.submit(student, attempt.id)
        ended.append(attempt.id)
    return ended


def _save(world: QueueWorld, scorer, attempt_id: str, lease_token: str, request_id: str = ""):
    return world.analysis.CreateBehaviorAnalysis(
        analysis_pb2.CreateBehaviorAnalysisRequest(
            attempt_id=attempt_id,
            integrity_score=0.9,
            dropout_label=common_pb2.DROPOUT_LABEL_SAFE,
            lease_token=lease_token,
            request_id=request_id or str(uuid.uuid4()),
        ),
        metadata=scorer.metadata,
    )


def _only_job(world: QueueWorld, admin, attempt_id: str) -> analysis_pb2.AnalysisJob:
    jobs = list(world.jobs(admin, attempt_id).jobs)
    assert len(jobs) == 1, jobs
    return jobs[0]


def test_an_attempt_gets_its_job_when_it_ends_and_a_waiting_claim_in_another_process_gets_it(
    world,
):
    _clear(world)
    teacher, admin, scorer = (world.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE))
    student, attempt = world.attempt(world.exam(teacher))
    assert list(world.jobs(admin, attempt.id).jobs) == []  # in progress: no job
    other = ServerProcess(world.database_url)
    try:
        with grpc.insecure_channel(other.address) as channel:
            from veritas.v1 import analysis_pb2_grpc

            waiting = analysis_pb2_grpc.AnalysisServiceStub(channel).ClaimAnalysisJobs.future(
                analysis_pb2.ClaimAnalysisJobsRequest(wait_seconds=30, lease_seconds=60),
                metadata=scorer.metadata,
                timeout=40,
            )
            threading.Event().wait(0.5)  # the claim is waiting in the other process
            world.submit(student, attempt.id)
            leases = list(waiting.result().leases)
    finally:
        other.stop()
    assert [lease.job.attempt_id for lease in leases] == [attempt.id]
    job = leases[0].job
    assert job.state == LEASED and job.reason == analysis_pb2.ANALYSIS_JOB_REASON_ATTEMPT_ENDED
    assert job.holder_id == scorer.user_id and job.failed_try_count == 0
    assert leases[0].lease_token and _only_job(world, admin, attempt.id).job_id == job.job_id


def test_a_lease_reads_the_evidence_in_pages_and_completes_with_the_save(world):
    _clear(world)
    teacher, admin, scorer, stranger = (
        world.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE, Role.SERVICE)
    )
    exam_id = world.exam(teacher)
    student, attempt = world.attempt(exam_id)
    events = [event(attempt.id) for _ in range(6)] + [critical(attempt.id)]
    assert stream(world.channel, student.metadata, [events]).accepted_count == 7
    world.submit(student, attempt.id)
    (lease,) = world.claim(scorer)

    def evidence(caller, attempt_id=attempt.id):
        request = analysis_pb2.GetAttemptEvidenceRequest(attempt_id=attempt_id, page_size=3)
        return list(world.analysis.GetAttemptEvidence(request, metadata=caller.metadata))

    pages = evidence(scorer)
    assert [len(page.events) for page in pages] == [3, 3, 1]
    header = pages[0].evidence
    assert header.attempt.id == attempt.id and header.attempt.exam_id == exam_id
    assert header.attempt.student_id == student.user_id and header.attempt.student_name == ""
    assert header.event_count == 7 and len(header.behavior_rules) > 0
    assert all(not page.HasField("evidence") for page in pages[1:])
    streamed = [item.event.event_id for page in pages for item in page.events]
    assert sorted(streamed) == sorted(e.event_id for e in events)
    # Without the lease, an attempt is as unknown as one that does not exist.
    refused, missing = (
        rpc_error(evidence, stranger),
        rpc_error(evidence, scorer, str(uuid.uuid4())),
    )
    assert refused.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert refused.details() == missing.details()
    assert len(evidence(admin)) == 3  # admins read it without a lease

    saved = _save(world, scorer, attempt.id, lease.lease_token, request_id="first-save")
    job = _only_job(world, admin, attempt.id)
    assert job.state == DONE and job.analysis_id == saved.analysis.id and not job.holder_id
    # The same save again (its answer lost) is replayed; any other use of the lease fails.
    again = _save(world, scorer, attempt.id, lease.lease_token, request_id="first-save")
    assert again.replayed and again.analysis.id == saved.analysis.id
    late = rpc_error(_save, world, scorer, attempt.id, lease.lease_token)
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    extend = rpc_error(
        world.analysis.ExtendAnalysisJobLease,
        analysis_pb2.ExtendAnalysisJobLeaseRequest(lease_token=lease.lease_token),
        metadata=scorer.metadata,
    )
    assert extend.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert extend.details() == late.details()
    assert rpc_error(evidence, scorer).code() == grpc.StatusCode.NOT_FOUND


def test_a_lease_is_its_holder_s_and_its_attempt_s_only(world):
    _clear(world)
    teacher, admin, scorer, other = (
        world.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE, Role.SERVICE)
    )
    first, second = _ended(world, teacher, count=2)
    leases = {lease.job.attempt_id: lease for lease in world.claim(scorer, max_jobs=5)}
    assert set(leases) == {first, second}
    foreign = rpc_error(_save, world, other, first, leases[first].lease_token)
    crossed = rpc_error(_save, world, scorer, first, leases[second].lease_token)
    forged = rpc_error(_save, world, scorer, first, "not-a-lease")
    assert {foreign.code(), crossed.code(), forged.code()} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert foreign.details() == crossed.details() == forged.details()
    for attempt_id in (first, second):
        job = _only_job(world, admin, attempt_id)
        assert job.state == LEASED and not job.analysis_id  # nothing was saved


def test_a_failed_try_backs_off_and_after_the_last_the_job_is_dead_until_an_admin_retries(world):
    _clear(world)
    teacher, admin, scorer = (world.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE))
    (backing_off, dying) = _ended(world, teacher, count=2)
    leases = {lease.job.attempt_id: lease for lease in world.claim(scorer, max_jobs=2)}

    def fail(token, **fields):
        return world.analysis.FailAnalysisJob(
            analysis_pb2.FailAnalysisJobRequest(
                lease_token=token, reason="model timed out", **fields
            ),
            metadata=scorer.metadata,
        ).job

    before = datetime.now(UTC)
    failed = fail(leases[backing_off].lease_token)
    assert failed.state == PENDING and failed.failed_try_count == 1
    assert failed.last_error == "model timed out"
    # The first retry waits VERITAS_ANALYSIS_RETRY_BASE_SECONDS (10 s by default).
    assert failed.available_time.ToDatetime(UTC) >= before + timedelta(seconds=9)
    token = leases[dying].lease_token
    for tries in range(1, 5):
        assert fail(token, retry_after_seconds=0).failed_try_count == tries
        (lease,) = world.claim(scorer)  # claimable at once; the other one backs off
        assert lease.job.attempt_id == dying and lease.job.failed_try_count == tries
        token = lease.lease_token
    dead = fail(token, retry_after_seconds=0)
    assert dead.state == DEAD and dead.failed_try_count == 5
    assert world.claim(scorer) == []
    listed = world.jobs(admin, state=DEAD)
    assert dead.job_id in {job.job_id for job in listed.jobs}
    assert listed.queue.dead_count >= 1 and listed.queue.pending_count >= 1
    assert listed.queue.oldest_pending_age_seconds >= 0
    stats = world.admin_stub.GetSystemStats(
        admin_pb2.GetSystemStatsRequest(), metadata=admin.metadata
    ).analysis_queue
    assert stats.dead_count == listed.queue.dead_count
    assert stats.pending_count == listed.queue.pending_count

    def retry(job_id):
        return world.analysis.RetryAnalysisJob(
            analysis_pb2.RetryAnalysisJobRequest(job_id=job_id), metadata=admin.metadata
        ).job

    retried = retry(dead.job_id)
    assert retried.state == PENDING and retried.failed_try_count == 0
    assert rpc_error(retry, dead.job_id).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rpc_error(retry, str(uuid.uuid4())).code() == grpc.StatusCode.NOT_FOUND
    (lease,) = world.claim(scorer)
    assert lease.job.job_id == dead.job_id


def test_an_expired_lease_is_delivered_again_and_its_holder_s_late_save_refused(quick):
    _clear(quick)
    teacher, admin, slow, fast = (
        quick.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE, Role.SERVICE)
    )
    (attempt_id,) = _ended(quick, teacher)
    (first,) = quick.claim(slow, lease_seconds=10)
    _expire_leases(quick)
    (second,) = quick.claim(fast)
    assert second.job.job_id == first.job.job_id and second.job.failed_try_count == 1
    assert second.job.last_error == "the lease expired"
    late = rpc_error(_save, quick, slow, attempt_id, first.lease_token)
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    saved = _save(quick, fast, attempt_id, second.lease_token)
    assert _only_job(quick, admin, attempt_id).analysis_id == saved.analysis.id


def test_a_job_whose_leases_keep_expiring_is_dead_lettered(quick):
    _clear(quick)
    teacher, admin, scorer = (quick.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE))
    (attempt_id,) = _ended(quick, teacher)
    for _ in range(3):
        (lease,) = quick.claim(scorer, lease_seconds=10)
        _expire_leases(quick)
    assert quick.claim(scorer) == []
    job = _only_job(quick, admin, attempt_id)
    assert job.state == DEAD and job.failed_try_count == 3


def _expire_leases(world: QueueWorld) -> None:
    """Time passes for the leases: their expiry moves into the past."""
    _run_sql(
        world,
        "UPDATE analysis_jobs SET lease_expires_at = now() - interval '1 second' "
        "WHERE state = 'LEASED' AND lease_expires_at < now() + interval '1 minute'",
    )


def test_new_evidence_asks_for_a_new_analysis_one_open_job_at_a_time(world):
    _clear(world)
    teacher, admin, scorer = (world.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE))
    exam_id = world.exam(teacher)
    student, attempt = world.attempt(exam_id)
    stored = [event(attempt.id) for _ in range(2)]
    stream(world.channel, student.metadata, [stored])
    world.submit(student, attempt.id)

    def late_events():
        sent = stream(world.channel, student.metadata, [[event(attempt.id)]])
        assert sent.accepted_count == 1  # within the late grace

    late_events()  # while the first job waits: folded into it
    assert _only_job(world, admin, attempt.id).state == PENDING
    (lease,) = world.claim(scorer)
    late_events()  # while it is leased: a new job once this lease completes
    assert _only_job(world, admin, attempt.id).state == LEASED
    _save(world, scorer, attempt.id, lease.lease_token)
    jobs = list(world.jobs(admin, attempt.id).jobs)  # newest first
    assert [job.state for job in jobs] == [PENDING, DONE]
    assert jobs[0].reason == analysis_pb2.ANALYSIS_JOB_REASON_LATE_EVENTS
    (lease,) = world.claim(scorer)
    _save(world, scorer, attempt.id, lease.lease_token)
    _, teacher_stub = stubs(world.channel)
    teacher_stub.ReviewEvent(
        teacher_pb2.ReviewEventRequest(
            attempt_id=attempt.id,
            event_id=stored[0].event_id,
            decision=common_pb2.REVIEW_DECISION_DISMISSED,
        ),
        metadata=teacher.metadata,
    )
    newest = world.jobs(admin, attempt.id).jobs[0]
    assert newest.state == PENDING
    assert newest.reason == analysis_pb2.ANALYSIS_JOB_REASON_EVENT_REVIEWED
    (lease,) = world.claim(scorer)
    pages = list(
        world.analysis.GetAttemptEvidence(
            analysis_pb2.GetAttemptEvidenceRequest(attempt_id=attempt.id), metadata=scorer.metadata
        )
    )
    decisions = {item.event.event_id: item.review_decision for item in pages[0].events}
    assert decisions[stored[0].event_id] == common_pb2.REVIEW_DECISION_DISMISSED
    assert decisions[stored[1].event_id] == common_pb2.REVIEW_DECISION_UNSPECIFIED


def test_attempts_that_time_out_or_are_abandoned_get_their_jobs_too(quick):
    _clear(quick)
    teacher, admin = quick.account(Role.TEACHER), quick.account(Role.ADMIN)
    exam_id = quick.exam(teacher)
    student, abandoned = quick.attempt(exam_id)
    student_stub, _ = stubs(quick.channel)
    student_stub.AbandonAttempt(
        student_pb2.AbandonAttemptRequest(attempt_id=abandoned.id), metadata=student.metadata
    )
    _, overdue = quick.attempt(exam_id)
    # Time passes for the overdue one.
    _run_sql(
        quick,
        f"UPDATE exam_attempts SET deadline_at = now() - interval '1 hour' "
        f"WHERE id = '{overdue.id}'",
    )
    assert quick.services.attempts.sweep_overdue() >= 1
    for attempt_id in (abandoned.id, overdue.id):
        job = _only_job(quick, admin, attempt_id)
        assert job.state == PENDING
        assert job.reason == analysis_pb2.ANALYSIS_JOB_REASON_ATTEMPT_ENDED


def test_an_erased_student_s_jobs_go_and_no_late_event_makes_a_new_one(quick):
    _clear(quick)
    teacher, admin, agent = (quick.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE))
    exam_id = quick.exam(teacher)
    student, ended = quick.attempt(exam_id)
    quick.submit(student, ended.id)
    _, in_progress = quick.attempt(exam_id)  # another student's, untouched
    assert _only_job(quick, admin, ended.id).state == PENDING
    profile = quick.auth.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=student.metadata
    ).user
    quick.admin_stub.EraseStudent(
        admin_pb2.EraseStudentRequest(student_id=student.user_id, confirm_email=profile.email),
        metadata=admin.metadata,
    )
    assert list(quick.jobs(admin, ended.id).jobs) == []
    # A monitoring agent's late flush within the grace: refused like an unknown attempt.
    late = stream(quick.channel, agent.metadata, [[event(ended.id)]])
    assert late.accepted_count == 0 and late.rejected_count == 1
    assert list(quick.jobs(admin, ended.id).jobs) == []
    assert quick.claim(agent) == []


def test_readers_stalled_mid_stream_hold_no_database_connection(world):
    """More stalled evidence streams than the server has connections (8 + 2 + 4 in
    tests): every other call still gets one."""
    _clear(world)
    teacher, admin, scorer = (world.account(r) for r in (Role.TEACHER, Role.ADMIN, Role.SERVICE))
    (attempt_id,) = _ended(world, teacher, events=3)
    world.claim(scorer)
    request = analysis_pb2.GetAttemptEvidenceRequest(attempt_id=attempt_id, page_size=1)
    stalled = [
        world.analysis.GetAttemptEvidence(request, metadata=scorer.metadata, timeout=60)
        for _ in range(16)
    ]
    try:
        for stream_ in stalled:
            assert len(next(stream_).events) == 1  # the first page, then nothing is read
        assert world.jobs(admin, attempt_id).jobs  # answered, not starved of connections
    finally:
        for stream_ in stalled:
            stream_.cancel()


def _run_sql(world: QueueWorld, statement: str) -> None:
    engine = create_engine(world.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def test_concurrent_claims_never_share_a_job(world):
    _clear(world)
    teacher = world.account(Role.TEACHER)
    scorers = [world.account(Role.SERVICE) for _ in range(6)]
    ended = set(_ended(world, teacher, count=40))

    def drain(scorer) -> list[tuple[str, str]]:
        got = []
        while leases := world.claim(scorer, max_jobs=3):
            got.extend((lease.job.job_id, lease.job.attempt_id) for lease in leases)
        return got

    with ThreadPoolExecutor(len(scorers)) as pool:
        claimed = [job for jobs in pool.map(drain, scorers) for job in jobs]
    assert len(claimed) == len(set(claimed)) == len(ended)  # no job twice
    assert {attempt_id for _, attempt_id in claimed} == ended


@pytest.mark.parametrize(
    "rpc, message, field",
    [
        ("ClaimAnalysisJobs", analysis_pb2.ClaimAnalysisJobsRequest(max_jobs=101), "max_jobs"),
        (
            "ClaimAnalysisJobs",
            analysis_pb2.ClaimAnalysisJobsRequest(lease_seconds=9),
            "lease_seconds",
        ),
        (
            "ClaimAnalysisJobs",
            analysis_pb2.ClaimAnalysisJobsRequest(wait_seconds=61),
            "wait_seconds",
        ),
        ("ExtendAnalysisJobLease", analysis_pb2.ExtendAnalysisJobLeaseRequest(), "lease_token"),
        (
            "ExtendAnalysisJobLease",
            analysis_pb2.ExtendAnalysisJobLeaseRequest(lease_token="t", lease_seconds=3601),
            "lease_seconds",
        ),
        ("FailAnalysisJob", analysis_pb2.FailAnalysisJobRequest(lease_token="t"), "reason"),
        (
            "FailAnalysisJob",
            analysis_pb2.FailAnalysisJobRequest(
                lease_token="t", reason="x", retry_after_seconds=-1
            ),
            "retry_after_seconds",
        ),
        (
            "ReleaseAnalysisJob",
            analysis_pb2.ReleaseAnalysisJobRequest(lease_token="t" * 101),
            "lease_token",
        ),
        (
            "GetAttemptEvidence",
            analysis_pb2.GetAttemptEvidenceRequest(attempt_id="nope"),
            "attempt_id",
        ),
        (
            "GetAttemptEvidence",
            analysis_pb2.GetAttemptEvidenceRequest(attempt_id=str(uuid.uuid4()), page_size=1001),
            "page_size",
        ),
        ("ListAnalysisJobs", analysis_pb2.ListAnalysisJobsRequest(attempt_id="x"), "attempt_id"),
        ("ListAnalysisJobs", analysis_pb2.ListAnalysisJobsRequest(state=99), "state"),
        (
            "ListAnalysisJobs",
            analysis_pb2.ListAnalysisJobsRequest(page_token="forged"),
            "page_token",
        ),
        ("RetryAnalysisJob", analysis_pb2.RetryAnalysisJobRequest(job_id="1"), "job_id"),
    ],
)
def test_bad_input_is_refused_on_its_field(world, rpc, message, field):
    caller = world.account(
        Role.ADMIN if rpc in ("ListAnalysisJobs", "RetryAnalysisJob") else Role.SERVICE
    )
    call = getattr(world.analysis, rpc)
    if rpc == "GetAttemptEvidence":
        error = rpc_error(lambda: list(call(message, metadata=caller.metadata)))
    else:
        error = rpc_error(call, message, metadata=caller.metadata)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_request_fields(error)
