"""The wheel `make dist` builds, installed into a fresh venv outside the checkout: the
migrations, the generated code and everything `veritas migrate`, `veritas serve` and
`veritas healthcheck` need come from the package, not from this tree.

`make test-dist` builds the wheel and its dependencies' wheelhouse and runs this; the
install takes a while, so `make test` skips it (.ci/run runs make test-dist)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from alembic.script import ScriptDirectory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text
from veritas.v1 import auth_pb2, auth_pb2_grpc

from tests.support import TEST_SECRET, unique_email, unique_enrollment
from veritas_grpc.db.migrate import alembic_config

WHEEL = os.environ.get("VERITAS_DIST_WHEEL")
WHEELHOUSE = os.environ.get("VERITAS_WHEELHOUSE")
CHECKOUT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (WHEEL and WHEELHOUSE), reason="make test-dist builds the wheel and runs this"
)


def outside_env(**env: str) -> dict[str, str]:
    """An environment that knows nothing of the checkout or its venv."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VERITAS_", "PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    return {**kept, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env}


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, cwd=root)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--no-index"]
        + ["--find-links", str(WHEELHOUSE), str(WHEEL)],
        check=True,
        cwd=root,
        env=outside_env(),
    )
    return venv / "bin"


def run(venv_bin: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_bin / argv[0]), *argv[1:]],
        cwd=venv_bin.parent.parent,
        env=outside_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_comes_from_the_venv_not_the_checkout(venv_bin):
    done = run(
        venv_bin,
        "python",
        "-c",
        "import json, veritas_grpc, veritas.v1.auth_pb2 as a, veritas_grpc.db.migrate as m;"
        "print(json.dumps([veritas_grpc.__file__, a.__file__, str(m.MIGRATIONS_DIR)]))",
    )
    assert done.returncode == 0, done.stderr
    for path in json.loads(done.stdout):
        assert Path(path).is_relative_to(venv_bin.parent), path
        assert not Path(path).resolve().is_relative_to(CHECKOUT), path


def _head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    assert head is not None
    return head


def _revision_of(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    return str(revision)


def test_migrate_serve_and_healthcheck(venv_bin, fresh_database):
    url = fresh_database("wheel")
    migrated = run(venv_bin, "veritas", "migrate", VERITAS_DATABASE_URL=url)
    assert migrated.returncode == 0, migrated.stderr
    assert _revision_of(url) == _head_revision()

    server = subprocess.Popen(
        [str(venv_bin / "veritas"), "serve"],
        cwd=venv_bin.parent.parent,
        env=outside_env(
            VERITAS_DATABASE_URL=url,
            VERITAS_JWT_SECRET=TEST_SECRET,
            VERITAS_LISTEN="127.0.0.1:0",
            VERITAS_BCRYPT_ROUNDS="4",
            VERITAS_LOG_LEVEL="WARNING",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = _wait_for_banner(server)
        probed = run(venv_bin, "veritas", "healthcheck", "--target", address)
        assert probed.returncode == 0, probed.stderr
        with grpc.insecure_channel(address) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="veritas.v1.AuthService"), timeout=10
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            email = unique_email("wheel")
            registered = auth_pb2_grpc.AuthServiceStub(channel).Register(
                auth_pb2.RegisterRequest(
                    email=email,
                    password="a long passphrase",
                    full_name="Wheel Student",
                    enrollment_id=unique_enrollment(),
                ),
                timeout=30,
            )
            assert registered.user.email == email
    finally:
        server.terminate()
        _, log = server.communicate(timeout=60)
    assert server.returncode == 0, log
    assert '"level": "ERROR"' not in log, log


def _wait_for_banner(server: subprocess.Popen[str]) -> str:
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"serving on (\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"the installed server did not start: {server.stderr.read()}")  # type: ignore[union-attr]
