"""Shared set-up for the benchmarks: a database and a `veritas serve` process to measure."""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def database_url() -> str:
    """VERITAS_BENCH_DATABASE_URL, else a fresh, migrated database on the embedded server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from veritas_grpc.db import migrate
    from veritas_grpc.db.embedded import start_embedded

    configured = os.environ.get("VERITAS_BENCH_DATABASE_URL")
    if configured:
        migrate.upgrade(configured)
        return configured
    server = make_url(start_embedded(ROOT / ".veritas-data" / "bench", database="postgres"))
    name = f"veritas_bench_{secrets.token_hex(4)}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = server.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


@contextmanager
def server_process(url: str, root: Path | None = None, **env: str) -> Iterator[tuple[str, int]]:
    """Run `veritas serve` on a free port; yield (address, pid). root: serve the code of
    another checkout (its veritas_grpc and generated/ ahead of this one's)."""
    located = {}
    if root:
        inherited = os.environ.get("PYTHONPATH")
        ahead = f"{root}:{root / 'generated'}"
        located["PYTHONPATH"] = f"{ahead}:{inherited}" if inherited else ahead
    environment = {
        **os.environ,
        "VERITAS_ENV": "test",
        "VERITAS_DATABASE_URL": url,
        "VERITAS_LISTEN": "127.0.0.1:0",
        "VERITAS_JWT_SECRET": secrets.token_urlsafe(48),
        "VERITAS_LOG_LEVEL": "WARNING",
        **located,
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "veritas_grpc.cli", "serve"],
        cwd=root,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"serving on (\S+)", line)
            if match:
                yield match.group(1), process.pid
                break
        else:
            raise RuntimeError("the server did not start")
    finally:
        process.terminate()
        process.wait(timeout=30)


def process_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[int(len(ordered) * 0.99) - 1], 2),
        "n": len(ordered),
    }


# The lines of deploy/postgresql/postgresql.conf that change plans and can be set per
# database (memory and WAL sizes need a restart and are the host's).
PLANNER_SETTINGS = ("random_page_cost", "effective_io_concurrency", "jit", "work_mem")


def deploy_planner_settings() -> dict[str, str]:
    conf = ROOT / "deploy" / "postgresql" / "postgresql.conf"
    found = {}
    for line in conf.read_text().splitlines():
        name, _, value = line.split("#", 1)[0].partition("=")
        if name.strip() in PLANNER_SETTINGS:
            found[name.strip()] = value.strip()
    return found


def use_planner(url: str, which: str = "deploy") -> dict[str, str]:
    """Set (or reset: "default") the deploy's planner settings of the database, with
    ALTER DATABASE, for every connection that opens after this (the server's); what
    a new connection then shows."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    settings = deploy_planner_settings()
    database = make_url(url).database
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name, value in settings.items():
            change = f"SET {name} = '{value}'" if which == "deploy" else f"RESET {name}"
            connection.execute(text(f'ALTER DATABASE "{database}" {change}'))
    engine.dispose()
    engine = create_engine(url)
    with engine.connect() as connection:
        applied = {name: connection.execute(text(f"SHOW {name}")).scalar_one() for name in settings}
    engine.dispose()
    return applied
