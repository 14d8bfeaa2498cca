"""An agent in another language: the example Node.js agent (@grpc/grpc-js) streams events,
then resends them all, against the real server."""

import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.e2e.monitoring_helpers import scene
from veritas_grpc.config import PROJECT_ROOT
from veritas_grpc.db.engine import make_session_factory

AGENT = PROJECT_ROOT / "tests" / "agents" / "node"

pytestmark = pytest.mark.skipif(
    not (AGENT / "node_modules").exists() or shutil.which("node") is None,
    reason="run through `make test`, which installs the Node agent",
)


def _run_agent(server, token, events, batch):
    result = subprocess.run(
        [
            "node",
            str(AGENT / "agent.js"),
            "--address",
            server.address,
            "--token",
            token,
            "--batch",
            str(batch),
        ],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_node_agent_streams_and_resends(channel, auth_stub, make_account, server, services):
    world = scene(channel, auth_stub, make_account)
    now = datetime.now(UTC) - timedelta(seconds=2)
    stamp = {"seconds": str(int(now.timestamp())), "nanos": 0}
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "attempt_id": world.attempt_id,
            "event_type": "gaze_away" if n % 5 else "tab_switch",
            "severity": "SEVERITY_WARNING" if n % 5 == 0 else "SEVERITY_INFO",
            "is_anomaly": n % 5 == 0,
            "occur_time": stamp,
            "data_json": json.dumps({"n": n, "screen": "main"}),
            "detector": {"name": "gaze-js", "version": "0.9.1", "confidence": 0.9},
        }
        for n in range(120)
    ]
    events.append(dict(events[0]))  # the same event twice in one stream
    events.append({**events[1], "event_id": "not-a-uuid"})
    first = _run_agent(server, world.student.access_token, events, batch=50)
    assert (first["accepted_count"], first["duplicate_count"], first["rejected_count"]) == (
        "120",
        "1",
        "1",
    )
    assert first["rejections"][0]["index"] == "121"
    again = _run_agent(server, world.student.access_token, events[:120], batch=7)
    assert (again["accepted_count"], again["duplicate_count"]) == ("0", "120")
    with make_session_factory(services.engine)() as session:
        stored, counted, anomalies = session.execute(
            text(
                "SELECT (SELECT count(*) FROM monitoring_events WHERE attempt_id = :a), "
                "event_count, anomaly_count FROM exam_attempts WHERE id = :a"
            ),
            {"a": world.attempt_id},
        ).one()
    assert (stored, counted, anomalies) == (120, 120, 24)
