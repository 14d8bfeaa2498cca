"""The scorer process: a channel, a session, a scorer (the rules, or --command), the
worker, and the signals that stop it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from dataclasses import dataclass

import grpc

from veritas_grpc.scorer.api import QueueApi
from veritas_grpc.scorer.command import CommandScorer
from veritas_grpc.scorer.jobs import Scorer
from veritas_grpc.scorer.rules import RulesScorer
from veritas_grpc.scorer.session import Session
from veritas_grpc.scorer.worker import Worker, WorkerSettings

log = logging.getLogger("veritas.scorer")
PARENT_CHECK_SECONDS = 1.0
# Evidence pages and analyses are far below this; the server's default limit.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ScorerConfig:
    target: str
    email: str
    password: str
    worker: WorkerSettings
    command: str | None = None
    command_timeout_seconds: float = 120.0
    # TLS (and mTLS with a client certificate); None: plaintext.
    credentials: grpc.ChannelCredentials | None = None
    # Stop when this process (`veritas serve`, supervising) is not our parent any more:
    # its pid, given by it, since it may be gone before we could ask for it.
    parent_pid: int | None = None


def build_scorer(config: ScorerConfig) -> Scorer:
    if config.command:
        return CommandScorer(shlex.split(config.command), config.command_timeout_seconds)
    return RulesScorer()


def open_channel(config: ScorerConfig) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Long polls sit idle for up to a minute: keep the connection known to be alive.
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if config.credentials is not None:
        return grpc.aio.secure_channel(config.target, config.credentials, options=options)
    return grpc.aio.insecure_channel(config.target, options=options)


async def _watch_parent(worker: Worker, parent: int) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    log.warning("the parent process is gone: stopping")
    worker.stop()


async def run_scorer(config: ScorerConfig) -> dict[str, int]:
    """Work until SIGTERM or SIGINT (a second one cuts the grace period short); return
    how many jobs ended how."""
    async with open_channel(config) as channel:
        session = Session(channel, config.email, config.password)
        worker = Worker(QueueApi(channel, session), build_scorer(config), config.worker)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        watcher = None
        if config.parent_pid is not None:
            watcher = asyncio.create_task(_watch_parent(worker, config.parent_pid))
        log.info(
            "scorer started",
            extra={
                "fields": {
                    "target": config.target,
                    "scorer": "command" if config.command else "rules",
                    "concurrency": config.worker.concurrency,
                    "lease_seconds": config.worker.lease_seconds,
                }
            },
        )
        try:
            await worker.run()
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return dict(worker.outcomes)
