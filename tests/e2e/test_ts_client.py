"""The typed TypeScript client (generated/ts) as a frontend uses it: Connect-ES's grpc-web
transport through Envoy (deploy/envoy.yaml) to a real server. The Node program
(tests/agents/web/frontend.js) signs in, reads a student dashboard and watches an exam;
this side builds the exam and ingests the anomaly the teacher is alerted to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.envoy_proxy import run_envoy
from tests.e2e.monitoring_helpers import critical, scene, stream
from tests.support import PASSWORD
from veritas_grpc.config import PROJECT_ROOT

WEB = PROJECT_ROOT / "tests" / "agents" / "web"


@pytest.fixture(scope="module")
def envoy(server, tmp_path_factory) -> Iterator[int]:
    with run_envoy(server.address, tmp_path_factory.mktemp("envoy")) as port:
        yield port


def _node_ready() -> None:
    # No skip: `make test` installs generated/ts and tests/agents/web first.
    assert shutil.which("node"), "Node.js 20+ is needed (see the README)"
    assert (WEB / "node_modules" / ".bin" / "tsc").exists(), "run `make install`"


def _read_step(process: subprocess.Popen, expected: str) -> dict:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"frontend.js ended before {expected!r}: {process.stderr.read()}")
    report = json.loads(line)
    assert report["step"] == expected, report
    return report


def test_a_frontend_signs_in_reads_a_dashboard_and_is_alerted(
    envoy, channel, auth_stub, make_account
):
    _node_ready()
    world = scene(channel, auth_stub, make_account)
    process = subprocess.Popen(
        ["node", str(WEB / "frontend.js")],
        env={
            **os.environ,
            "VERITAS_WEB_URL": f"http://127.0.0.1:{envoy}",
            "VERITAS_PASSWORD": PASSWORD,
            "VERITAS_STUDENT_EMAIL": world.student.email,
            "VERITAS_TEACHER_EMAIL": world.teacher.email,
            "VERITAS_EXAM_ID": world.exam_id,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        signed_in = _read_step(process, "signed_in")
        # Enums: numbers in TS, without their prefix in TS names, with it in JSON.
        assert signed_in["roleIsStudent"] and signed_in["teacherRole"] == "TEACHER"
        user = signed_in["json"]["user"]
        assert (user["id"], user["role"]) == (world.student.user_id, "ROLE_STUDENT")
        # Timestamps: RFC 3339 strings in JSON, Timestamp messages (timestampDate) in TS.
        assert signed_in["json"]["tokens"]["accessTokenExpireTime"].endswith("Z")
        assert signed_in["accessExpires"].endswith("Z")

        failed = _read_step(process, "unauthenticated")
        assert failed["code"] == "Unauthenticated"

        # Field violations come as google.rpc.BadRequest details, which the client
        # decodes with the error_details schema generated beside it.
        invalid = _read_step(process, "invalid")
        assert invalid["code"] == "InvalidArgument"
        assert set(invalid["fields"]) == {"email", "password", "full_name", "enrollment_id"}

        dashboard = _read_step(process, "dashboard")
        assert dashboard["json"]["profile"]["id"] == world.student.user_id
        history = dashboard["json"]["examHistory"]
        assert [entry["attemptId"] for entry in history] == [world.attempt_id]
        assert history[0]["status"] == "ATTEMPT_STATUS_IN_PROGRESS"
        # Defaults (0, false, "", empty lists, UNSPECIFIED) are left out unless asked;
        # int64 is a string in JSON.
        assert "finishedAttemptCount" not in dashboard["json"].get("performance", {})
        assert dashboard["withDefaults"]["performance"]["finishedAttemptCount"] == "0"

        assert _read_step(process, "watching")["first"] == "heartbeat"
        anomaly = critical(world.attempt_id)
        assert stream(channel, world.student.metadata, [[anomaly]]).accepted_count == 1

        alert = _read_step(process, "alert")
        assert alert["json"]["alert"]["eventId"] == anomaly.event_id
        assert alert["json"]["alert"]["severity"] == "SEVERITY_CRITICAL"
        assert alert["json"]["alert"]["occurTime"] == anomaly.occur_time.ToJsonString()
        sent = anomaly.occur_time.ToDatetime(tzinfo=UTC)
        assert abs(datetime.fromisoformat(alert["occurTime"]) - sent) < timedelta(milliseconds=1)
        # int64: a bigint in TS, a string in JSON, and absent from JSON while 0.
        assert alert["droppedType"] == "bigint"
        assert "droppedAlertCount" not in alert["json"]
        assert alert["withDefaults"]["droppedAlertCount"] == "0"
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_frontend_program_type_checks_against_the_generated_declarations():
    """tsc (strict, with checkJs) over frontend.js and every .d.ts it reaches, the
    generated ones included."""
    _node_ready()
    result = subprocess.run(
        [str(WEB / "node_modules" / ".bin" / "tsc"), "-p", str(WEB)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
