"""A small demo data set for `make run`: one account of each role, two students, and an
exam they took, so that every dashboard has something to show.

Only in demo mode (VERITAS_ENV=demo): the passwords are printed on the console.
Seeding twice changes nothing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from veritas_grpc.domain.errors import AlreadyExists
from veritas_grpc.domain.events import EventRow, EventWindow, IncomingEvent, check_event
from veritas_grpc.domain.exams import BehaviorRule, DropoutLabel, ExamStatus
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.services.accounts import AccountService
from veritas_grpc.services.analysis import AnalysisService, ExternalAnalysis
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.exams import ExamDraft, ExamService
from veritas_grpc.services.monitoring import MonitoringService

DEMO_PASSWORD = "veritas-demo-2026"
# The service account `veritas serve --demo-scorer` runs the reference scorer as.
DEMO_SCORER_EMAIL = "scoring@veritas.demo"


@dataclass(frozen=True)
class DemoAccount:
    role: Role
    email: str
    full_name: str
    enrollment_id: str | None = None


DEMO_ACCOUNTS = (
    DemoAccount(Role.ADMIN, "admin@veritas.demo", "Avery Admin"),
    DemoAccount(Role.TEACHER, "teacher@veritas.demo", "Tess Teacher"),
    DemoAccount(Role.STUDENT, "sam@veritas.demo", "Sam Student", "S-2026-001"),
    DemoAccount(Role.STUDENT, "lee@veritas.demo", "Lee Learner", "S-2026-002"),
    DemoAccount(Role.SERVICE, DEMO_SCORER_EMAIL, "Scoring Service"),
)
# (student e-mail, score, integrity, dropout label) of the demo exam's attempts.
DEMO_RESULTS = (
    ("sam@veritas.demo", 82.0, 0.92, DropoutLabel.SAFE),
    ("lee@veritas.demo", 45.0, 0.41, DropoutLabel.COPY),
)
DEMO_RULES = [
    BehaviorRule("tab_switch", True, 3.0, "WARNING"),
    BehaviorRule("face_not_detected", True, 4.0, "CRITICAL"),
    BehaviorRule("eye_movement", False, 1.0, "INFO"),
]


# (milliseconds into the attempt, event type, is_anomaly, severity or None for the exam's
# rule, description) of the events the agents sent during the flagged demo attempt, so
# its monitoring view and timeline have something to show. The seed submits the attempt
# right after the last one: a real attempt's timeline spans minutes, this one a second.
DEMO_EVENTS = (
    (30, "heartbeat", False, None, "agent connected"),
    (95, "eye_movement", False, None, "gaze left the screen"),
    (140, "tab_switch", True, None, "switched to another tab"),
    (142, "face_not_detected", True, None, "no face in view"),
    (300, "tab_switch", True, None, "switched to another tab"),
    (305, "copy_paste", True, "CRITICAL", "pasted 1,204 characters into the answer"),
    (610, "multiple_faces", True, "WARNING", "two faces in view"),
)


def _demo_events(monitoring: MonitoringService, attempt_id: uuid.UUID, start: datetime) -> None:
    """Store the flagged attempt's events as the ingestion path would (ids derived from
    the attempt, so they are the same on every run)."""
    monitoring.ensure_partitions()  # seeding may come before the server's own upkeep
    targets = monitoring.targets([str(attempt_id)])
    target = targets[str(attempt_id)]
    rows = []
    for millis, event_type, anomaly, severity, description in DEMO_EVENTS:
        occurred_at = start + timedelta(milliseconds=millis)
        event = IncomingEvent(
            event_id=str(uuid.uuid5(attempt_id, f"demo-{millis}")),
            attempt_id=str(attempt_id),
            event_type=event_type,
            category="TECHNICAL" if event_type == "heartbeat" else "INTEGRITY",
            severity=severity,
            is_anomaly=anomaly,
            occurred_at=occurred_at,
            data_json='{"source": "demo"}',
            description=description,
            detector_name="demo-agent",
            detector_version="1.0",
            detector_confidence=0.9,
        )
        row = check_event(event, occurred_at, EventWindow())
        assert isinstance(row, EventRow), row
        row.severity = row.severity or target.severity_for(event_type)
        rows.append(row)
    monitoring.store(rows, {str(attempt_id): target.alert_target})
    # The attempt ends after its last event, as it would have.
    time.sleep(max(0.0, (rows[-1].occurred_at - datetime.now(UTC)).total_seconds()))


def _as_principal(account_id: uuid.UUID, role: Role) -> Principal:
    # Seeding acts as the demo users without signing them in.
    far = datetime.now(UTC) + timedelta(days=1)
    return Principal(account_id, role, "demo-seed", uuid.uuid4(), far)


def seed_demo(
    accounts: AccountService,
    exams: ExamService,
    attempts: AttemptService,
    analysis: AnalysisService,
    monitoring: MonitoringService,
) -> list[DemoAccount]:
    """Create what is missing of the demo data; return the demo accounts."""
    for demo in DEMO_ACCOUNTS:
        with contextlib.suppress(AlreadyExists):
            accounts.create_account(
                demo.role, demo.email, DEMO_PASSWORD, demo.full_name, demo.enrollment_id
            )
    ids = accounts.ids_by_email([demo.email for demo in DEMO_ACCOUNTS])
    teacher = _as_principal(ids["teacher@veritas.demo"], Role.TEACHER)
    scorer = _as_principal(ids[DEMO_SCORER_EMAIL], Role.SERVICE)
    now = datetime.now(UTC)
    week = ExamDraft(
        title="Introduction to Algorithms: quiz 1",
        subject="CS101",
        description="Sorting, searching and complexity. Monitoring: webcam and browser.",
        max_points=100,
        pass_points=50,
        duration_minutes=45,
        open_time=now - timedelta(days=1),
        close_time=now + timedelta(days=30),
        max_attempts=2,
        behavior_rules=DEMO_RULES,
    )
    created = exams.create(teacher, week, request_id="demo-exam-1")
    exam_id = str(created.id)
    if created.status is ExamStatus.DRAFT:
        exams.publish(teacher, exam_id)
        for email, score, integrity, label in DEMO_RESULTS:
            student = _as_principal(ids[email], Role.STUDENT)
            attempt = attempts.start(student, exam_id).attempt
            if label is DropoutLabel.COPY:
                _demo_events(monitoring, attempt.id, attempt.start_time)
            attempts.submit(student, str(attempt.id))
            attempts.grade(teacher, str(attempt.id), score)
            analysis.save(
                scorer,
                str(attempt.id),
                ExternalAnalysis(
                    integrity_score=integrity,
                    lmi_score=0.6 if label is DropoutLabel.SAFE else 0.3,
                    dropout_label=label,
                    llm_summary=f"Demo analysis: {label.value.lower()} behaviour.",
                    llm_reasoning="Demo data; no model was run.",
                    recommendations=["Review the sorting chapter before the next quiz."],
                    model_name="demo",
                    model_version="1",
                    request_id=f"demo-{email}",
                ),
            )
    exams.create(
        teacher,
        ExamDraft(
            title="Data structures: midterm",
            subject="CS102",
            max_points=50,
            pass_points=30,
            duration_minutes=90,
            max_attempts=1,
            behavior_rules=DEMO_RULES,
        ),
        request_id="demo-exam-2",
    )
    return list(DEMO_ACCOUNTS)
