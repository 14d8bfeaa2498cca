"""deploy/prometheus/ with the real Prometheus (Debian's prometheus and promtool;
`make test-ops-metrics` installs them): the config and rules check, the rules' unit
tests pass, and a Prometheus scraping a test server reads its counters back."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import pytest
from veritas.v1 import auth_pb2, auth_pb2_grpc

from tests.e2e.exam_helpers import rpc_error
from tests.e2e.metrics_helpers import free_port
from tests.support import ServerProcess, unique_email
from veritas_grpc.config import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy" / "prometheus"
pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(
        not (shutil.which("promtool") and shutil.which("prometheus")),
        reason="Debian's prometheus is not installed (make test-ops-metrics installs it)",
    ),
]


@pytest.mark.parametrize(
    "check",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ],
    ids=" ".join,
)
def test_promtool_passes(check):
    done = subprocess.run(["promtool", *check], cwd=DEPLOY, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _query(address: str, promql: str) -> list[dict]:
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _get(address: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return json.load(response)


def _poll(what, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture
def prometheus(tmp_path):
    """A Prometheus scraping a test server every second, with the deployment's rules."""
    metrics_address = f"127.0.0.1:{free_port()}"
    # JSON is YAML: the deployment's scrape job, pointed at the test server.
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "veritas", "static_configs": [{"targets": [metrics_address]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    address = f"127.0.0.1:{free_port()}"
    running = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield address, metrics_address
    finally:
        running.terminate()
        running.wait(timeout=30)


def test_prometheus_reads_a_counter_of_the_server(database_url, prometheus):
    address, metrics_address = prometheus
    server = ServerProcess(database_url, VERITAS_METRICS_LISTEN=metrics_address)
    try:
        with grpc.insecure_channel(server.address) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            for _ in range(3):
                rpc_error(auth.Login, auth_pb2.LoginRequest(email=unique_email(), password="x"))
        failures = 'veritas_sign_in_failures_total{job="veritas",reason="unknown_email"}'
        result = _poll(lambda: [r for r in _query(address, failures) if r["value"][1] == "3"])
        assert result, _query(address, failures)
        serving = _query(address, 'veritas_health_serving{job="veritas"}')
        assert [r["value"][1] for r in serving] == ["1"]
        # The deployment's rules are loaded; those about the server itself are quiet (the
        # queue's depend on what earlier tests left in the shared database).
        groups = _get(address, "/api/v1/rules")["data"]["groups"]
        assert [g["name"] for g in groups] == ["veritas-exam-day"]
        states = {rule["name"]: rule["state"] for rule in groups[0]["rules"]}
        assert len(states) == 7
        assert states["VeritasDown"] == states["VeritasNotServing"] == "inactive"
    finally:
        server.stop()
