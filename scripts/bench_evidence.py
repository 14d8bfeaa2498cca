"""The analysis queue from a scorer's side (docs/BENCH_QUEUE.md, "Wake-ups and evidence"):

1. Wake-up: a scorer's ClaimAnalysisJobs waits (long poll) on one `veritas serve`
   process while a student submits an attempt through another; the time from the submit's
   answer to the claim's answer, over `rounds` attempts (LISTEN/NOTIFY across processes).
2. Evidence: an attempt with `events` events (streamed in through StreamEvents), its job
   claimed, GetAttemptEvidence read whole at 500 and 1,000 events per message: seconds,
   events per second and the serving process's resident memory before and at its peak
   during the stream (bounded memory: the peak should not grow with the attempt).

Usage: python scripts/bench_evidence.py [events] [rounds]
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
from benchlib import database_url, percentiles, process_rss_mib, server_process
from google.protobuf.timestamp_pb2 import Timestamp
from veritas.v1 import (
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    resources_pb2,
    student_pb2,
    student_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

PASSWORD = "bench password 2026"


def create_user(url: str, secret: str, role: str) -> str:
    email = f"bench-{role}-{uuid.uuid4().hex[:8]}@example.edu"
    env = {**os.environ, "VERITAS_DATABASE_URL": url, "VERITAS_JWT_SECRET": secret}
    subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", "create-user", "--role", role]
        + ["--email", email, "--full-name", f"Bench {role}"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    return email


def bearer(channel: grpc.Channel, email: str) -> tuple[tuple[str, str]]:
    login = auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(email=email, password=PASSWORD)
    )
    return (("authorization", f"Bearer {login.tokens.access_token}"),)


def stamp(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def published_exam(channel: grpc.Channel, teacher) -> str:
    stub = teacher_pb2_grpc.TeacherServiceStub(channel)
    now = datetime.now(UTC)
    exam = resources_pb2.Exam(
        title="Bench exam",
        max_points=100,
        pass_points=50,
        duration_minutes=600,
        max_attempts=100,
        open_time=stamp(now - timedelta(minutes=5)),
        close_time=stamp(now + timedelta(hours=12)),
    )
    created = stub.CreateExam(teacher_pb2.CreateExamRequest(exam=exam), metadata=teacher).exam
    stub.PublishExam(teacher_pb2.PublishExamRequest(exam_id=created.id), metadata=teacher)
    return created.id


def student_signed_in(channel: grpc.Channel) -> tuple[tuple[str, str]]:
    email = f"bench-student-{uuid.uuid4().hex[:8]}@example.edu"
    auth_pb2_grpc.AuthServiceStub(channel).Register(
        auth_pb2.RegisterRequest(
            email=email, password=PASSWORD, full_name="Bench Student", enrollment_id=email[:20]
        )
    )
    return bearer(channel, email)


def claim_answered_at(claims, scorer) -> float:
    claims.ClaimAnalysisJobs(
        analysis_pb2.ClaimAnalysisJobsRequest(wait_seconds=30), metadata=scorer, timeout=40
    )
    return time.perf_counter()


def peak_rss_mib(pid: int, stop: threading.Event) -> float:
    """The process's largest resident memory until `stop` is set, sampled every 20 ms."""
    peak = process_rss_mib(pid)
    while not stop.wait(0.02):
        peak = max(peak, process_rss_mib(pid))
    return peak


def wake_ups(first: str, second: str, url_emails: dict[str, str], rounds: int) -> dict:
    """Claims wait on the second process; submits go to the first."""
    with grpc.insecure_channel(first) as a, grpc.insecure_channel(second) as b:
        teacher, scorer = bearer(a, url_emails["teacher"]), bearer(b, url_emails["service"])
        student = student_signed_in(a)
        exam_id = published_exam(a, teacher)
        students = student_pb2_grpc.StudentServiceStub(a)
        claims = analysis_pb2_grpc.AnalysisServiceStub(b)
        latencies = []
        pool = ThreadPoolExecutor(1)
        for _ in range(rounds):
            attempt = students.StartAttempt(
                student_pb2.StartAttemptRequest(exam_id=exam_id), metadata=student
            ).attempt
            waiting = pool.submit(claim_answered_at, claims, scorer)
            time.sleep(0.3)  # the claim is waiting
            students.SubmitAttempt(
                student_pb2.SubmitAttemptRequest(attempt_id=attempt.id), metadata=student
            )
            submitted = time.perf_counter()
            latencies.append((waiting.result() - submitted) * 1000)
        return percentiles(latencies)


def evidence(address: str, pid: int, emails: dict[str, str], count: int) -> dict:
    with grpc.insecure_channel(address) as channel:
        teacher, scorer = bearer(channel, emails["teacher"]), bearer(channel, emails["service"])
        student = student_signed_in(channel)
        exam_id = published_exam(channel, teacher)
        students = student_pb2_grpc.StudentServiceStub(channel)
        attempt = students.StartAttempt(
            student_pb2.StartAttemptRequest(exam_id=exam_id), metadata=student
        ).attempt
        started = datetime.now(UTC) - timedelta(hours=2)
        monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        for first in range(0, count, 1000):
            batch = [
                resources_pb2.MonitoringEvent(
                    event_id=str(uuid.uuid4()),
                    attempt_id=attempt.id,
                    event_type="gaze_away" if n % 7 == 0 else "heartbeat",
                    occur_time=stamp(started + timedelta(milliseconds=50 * n)),
                    data_json='{"gaze_x": 0.31, "duration_ms": 1200}',
                )
                for n in range(first, min(first + 1000, count))
            ]
            monitoring.StreamEvents(
                iter([monitoring_pb2.StreamEventsRequest(events=batch)]),
                metadata=student,
                timeout=120,
            )
        students.SubmitAttempt(
            student_pb2.SubmitAttemptRequest(attempt_id=attempt.id), metadata=student
        )
        analysis = analysis_pb2_grpc.AnalysisServiceStub(channel)
        (lease,) = analysis.ClaimAnalysisJobs(
            analysis_pb2.ClaimAnalysisJobsRequest(wait_seconds=5, lease_seconds=3600),
            metadata=scorer,
        ).leases
        assert lease.job.attempt_id == attempt.id
        results = {}
        for page_size in (500, 1000):
            before = process_rss_mib(pid)
            stop = threading.Event()
            peak = ThreadPoolExecutor(1).submit(peak_rss_mib, pid, stop)
            clock = time.perf_counter()
            messages = events = 0
            for page in analysis.GetAttemptEvidence(
                analysis_pb2.GetAttemptEvidenceRequest(attempt_id=attempt.id, page_size=page_size),
                metadata=scorer,
                timeout=600,
            ):
                messages += 1
                events += len(page.events)
            seconds = time.perf_counter() - clock
            stop.set()
            assert events == count, (events, count)
            results[page_size] = {
                "seconds": round(seconds, 2),
                "events_per_second": round(events / seconds),
                "messages": messages,
                "rss_before_mib": round(before, 1),
                "rss_peak_mib": round(peak.result(), 1),
            }
        return results


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    url = database_url()
    secret = secrets.token_urlsafe(48)
    emails = {role: create_user(url, secret, role) for role in ("teacher", "service")}
    env = {"VERITAS_JWT_SECRET": secret, "VERITAS_BCRYPT_ROUNDS": "4"}
    with server_process(url, **env) as (first, pid), server_process(url, **env) as (second, _):
        print("wake-up (submit answered -> waiting claim answered, ms):", flush=True)
        print(wake_ups(first, second, emails, rounds), flush=True)
        print(f"evidence of one attempt with {count} events:", flush=True)
        for size, figures in evidence(first, pid, emails, count).items():
            print(f"  page_size {size}: {figures}", flush=True)


if __name__ == "__main__":
    main()
