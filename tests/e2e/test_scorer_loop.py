"""The whole loop with the reference scorer as a subprocess (`veritas scorer`): agents
stream, the student submits, the scorer claims, reads and saves, and the teacher's and
the student's views show the analysis; a reviewer's decision is analysed again; and
`--command` with a tiny external program, and with a failing one."""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from veritas.v1 import (
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2_grpc,
    common_pb2,
    resources_pb2,
    student_pb2,
    teacher_pb2,
)

from tests.e2e.conftest import login, register_and_login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs, submit, timestamp
from tests.e2e.monitoring_helpers import event, stream
from tests.e2e.scorer_world import ScorerProcess, ScorerWorld, scorer_world, wait_until
from veritas_grpc.domain.identity import Role

pytestmark = pytest.mark.timeout(90)
RULES = [
    {"event_type": "tab_switch", "weight": 2.5, "default_severity": common_pb2.SEVERITY_WARNING},
    {
        "event_type": "face_not_detected",
        "weight": 4.0,
        "default_severity": common_pb2.SEVERITY_CRITICAL,
    },
]


@pytest.fixture(scope="module")
def world(fresh_database):
    yield from scorer_world(fresh_database, analysis_retry_base_seconds=0.5)


@pytest.fixture(autouse=True)
def scorers_log_no_error(world: ScorerWorld):
    yield
    for scorer in world.scorers:
        scorer.stop()
        assert not scorer.errors(), scorer.errors()
    world.scorers.clear()


class Taken:
    """A teacher's exam and a student's attempt at it, through the API."""

    def __init__(self, world: ScorerWorld) -> None:
        self.channel = world.channel
        self.student_stub, self.teacher_stub = stubs(world.channel)
        auth = auth_pb2_grpc.AuthServiceStub(world.channel)
        self.teacher = login(auth, world.account(Role.TEACHER))
        rules = [resources_pb2.BehaviorRule(flagged=True, **rule) for rule in RULES]
        exam = published_exam(
            self.teacher_stub, self.teacher.metadata, behavior_rules=rules, **open_window()
        )
        self.student = register_and_login(auth)
        self.attempt_id = start(self.student_stub, self.student, exam.id).id

    def send(self, *events) -> None:
        answer = stream(self.channel, self.student.metadata, [list(events)])
        assert answer.accepted_count == len(events), answer

    def submit(self) -> None:
        submit(self.student_stub, self.student, self.attempt_id)

    def monitoring(self) -> teacher_pb2.GetAttemptMonitoringResponse:
        return self.teacher_stub.GetAttemptMonitoring(
            teacher_pb2.GetAttemptMonitoringRequest(attempt_id=self.attempt_id),
            metadata=self.teacher.metadata,
        )

    def analysis_version(self, version: int):
        """The current analysis once it is the scorer's `version`-th."""

        def saved():
            current = self.monitoring().behavior_analysis
            return current if current.version >= version else None

        return wait_until(saved, 30, f"analysis version {version} of {self.attempt_id}")


def _ago(seconds: float):
    return timestamp(datetime.now(UTC) - timedelta(seconds=seconds))


def test_agents_stream_the_student_submits_and_both_views_show_the_scorers_analysis(world):
    scorer = world.scorer()
    taken = Taken(world)
    a = taken.attempt_id
    face = event(a, event_type="face_not_detected", is_anomaly=True, occur_time=_ago(30))
    taken.send(
        event(a, event_type="tab_switch", is_anomaly=True, occur_time=_ago(28)),  # corroborated
        face,
        event(a, event_type="tab_switch", is_anomaly=True, occur_time=_ago(10)),
        event(
            a,
            event_type="network_loss",
            category=common_pb2.EVENT_CATEGORY_TECHNICAL,
            severity=common_pb2.SEVERITY_CRITICAL,
            occur_time=_ago(5),
        ),
    )
    taken.submit()

    analysis = taken.analysis_version(1)
    assert analysis.source == common_pb2.ANALYSIS_SOURCE_EXTERNAL
    assert analysis.model.name == "veritas-reference-scorer"
    # The server's own rules give the same score for the same evidence.
    rules = analysis_pb2_grpc.AnalysisServiceStub(world.channel).AnalyzeAttempt(
        analysis_pb2.AnalyzeAttemptRequest(attempt_id=a), metadata=taken.teacher.metadata
    )
    assert not rules.saved  # the scoring service's analysis stays current
    assert analysis.integrity_score == pytest.approx(rules.integrity_score)
    # penalty 2.5 * 1.5 + 4 * 2 * 1.5 + 2.5 = 18.25: integrity 0.4819, labelled COPY
    assert analysis.integrity_score == pytest.approx(0.4819)
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_COPY
    assert taken.monitoring().attempt.flagged

    dashboard = taken.student_stub.GetStudentDashboard(
        student_pb2.GetStudentDashboardRequest(), metadata=taken.student.metadata
    )
    (entry,) = [e for e in dashboard.exam_history if e.attempt_id == a]
    assert entry.integrity_score == pytest.approx(analysis.integrity_score)
    assert entry.dropout_label == common_pb2.DROPOUT_LABEL_COPY
    assert dashboard.performance.dropout_label == common_pb2.DROPOUT_LABEL_COPY
    (line,) = [j for j in scorer.jobs() if j["attempt_id"] == a]
    assert line["outcome"] == "done" and line["event_count"] == 4

    # A reviewer dismisses the face event: the attempt is analysed again without it.
    taken.teacher_stub.ReviewEvent(
        teacher_pb2.ReviewEventRequest(
            attempt_id=a, event_id=face.event_id, decision=common_pb2.REVIEW_DECISION_DISMISSED
        ),
        metadata=taken.teacher.metadata,
    )
    again = taken.analysis_version(2)
    assert again.integrity_score == pytest.approx(0.8187)  # 2.5 + 2.5 = 5: exp(-0.2)
    assert again.dropout_label == common_pb2.DROPOUT_LABEL_SAFE
    reasons = [j["reason"] for j in scorer.jobs("done") if j["attempt_id"] == a]
    assert reasons == ["ANALYSIS_JOB_REASON_ATTEMPT_ENDED", "ANALYSIS_JOB_REASON_EVENT_REVIEWED"]


TINY_MODEL = textwrap.dedent(
    """
    import json, sys
    evidence = json.loads(sys.stdin.readline())
    events = [json.loads(line) for line in sys.stdin]
    anomalies = sum(1 for e in events if e["event"]["isAnomaly"])
    print(json.dumps({
        "integrityScore": 1 / (1 + anomalies),
        "dropoutLabel": "DROPOUT_LABEL_NO_INTEREST",
        "learningMomentumIndex": 0.75,
        "llmSummary": f"{len(events)} events, {anomalies} anomalies, "
                      f"status {evidence['attempt']['status']}",
        "recommendations": ["Sleep well before the next exam."],
        "model": {"name": "tiny-model", "version": "0.1"},
    }))
    """
)


def test_command_pipes_the_evidence_to_a_model_and_saves_its_answer(world, tmp_path):
    model = tmp_path / "model.py"
    model.write_text(TINY_MODEL)
    world.scorer("--command", f"{sys.executable} {model}")
    taken = Taken(world)
    a = taken.attempt_id
    taken.send(
        event(a, event_type="tab_switch", is_anomaly=True),
        event(a, event_type="gaze_away", is_anomaly=True),
        event(a, event_type="heartbeat"),
    )
    taken.submit()

    analysis = taken.analysis_version(1)
    assert analysis.model.name == "tiny-model" and analysis.model.version == "0.1"
    assert analysis.integrity_score == pytest.approx(1 / 3, abs=1e-4)
    assert analysis.llm_summary == "3 events, 2 anomalies, status ATTEMPT_STATUS_SUBMITTED"
    assert analysis.learning_momentum_index == 0.75
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_NO_INTEREST
    dashboard = taken.student_stub.GetStudentDashboard(
        student_pb2.GetStudentDashboardRequest(), metadata=taken.student.metadata
    )
    assert dashboard.performance.learning_momentum_index == 0.75


def test_a_failing_command_puts_the_job_back_with_a_failed_try(world, tmp_path):
    model = tmp_path / "broken.py"
    model.write_text("import sys\nsys.stdin.read()\nsys.exit('no model weights here')\n")
    scorer = world.scorer("--command", f"{sys.executable} {model}")
    taken = Taken(world)
    taken.submit()

    failed = scorer.wait_for_jobs("failed")
    assert failed[0]["attempt_id"] == taken.attempt_id
    assert "status 1: no model weights here" in failed[0]["detail"]
    (job,) = wait_until(
        lambda: [j for j in world.jobs_of([taken.attempt_id]) if j["failed_tries"] >= 1],
        30,
        "the job counted a failed try",
    )
    assert job["state"] in ("PENDING", "LEASED", "DEAD")  # back in the queue, retried
    assert "no model weights here" in job["last_error"]
    assert not taken.monitoring().HasField("behavior_analysis")


def test_a_refused_sign_in_ends_the_scorer_with_its_own_status(world):
    refused = ScorerProcess(world.server.address, world.account(Role.SERVICE), password="wrong")
    assert refused.wait() == 3  # cli_scorer.EXIT_SIGN_IN_REFUSED: not worth restarting
