"""`veritas serve --demo-scorer`: one reference scorer beside the server, as the demo
service account.

The server supervises it: starts it once it serves, starts it again if it dies (unless
its sign-in was refused), and stops it before the server stops, so that the scorer
finishes or releases its leases while the server still answers. The child runs in a
session of its own: Ctrl-C in a terminal reaches the server only, which stops the child
first; and the child stops by itself when the server process is gone (SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from veritas_grpc.cli_scorer import EXIT_SIGN_IN_REFUSED, PASSWORD_VARIABLE
from veritas_grpc.scorer.backoff import Backoff

log = logging.getLogger("veritas.cli")
# The scorer's own grace for in-flight jobs, and what it may take beyond it to release.
CHILD_GRACE_SECONDS = 5.0
CHILD_EXIT_MARGIN_SECONDS = 10.0


class ScorerChild:
    def __init__(self, email: str, password: str) -> None:
        self._email = email
        self._password = password
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self, target: str) -> None:
        self._supervisor = asyncio.create_task(self._supervise(target))

    async def _spawn(self, target: str) -> asyncio.subprocess.Process:
        argv = [sys.executable, "-m", "veritas_grpc.cli", "scorer", "--target", target]
        argv += ["--email", self._email, "--grace-seconds", str(CHILD_GRACE_SECONDS)]
        return await asyncio.create_subprocess_exec(
            *argv,
            "--parent-pid",
            str(os.getpid()),
            env={**os.environ, PASSWORD_VARIABLE: self._password},
            start_new_session=True,
        )

    async def _supervise(self, target: str) -> None:
        backoff = Backoff(base_seconds=1.0, cap_seconds=30.0)
        while not self._stopping:
            self._process = await self._spawn(target)
            log.info("reference scorer started", extra={"fields": {"pid": self._process.pid}})
            status = await self._process.wait()
            if self._stopping:
                return
            if status == EXIT_SIGN_IN_REFUSED:
                log.warning("the reference scorer cannot sign in: not restarted")
                return
            delay = 1.0 + backoff.next_delay()
            log.warning(
                "the reference scorer exited: restarting",
                extra={"fields": {"status": status, "retry_in": round(delay, 1)}},
            )
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """SIGTERM, and its grace to finish or release its jobs; then SIGKILL."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(
                    process.wait(), CHILD_GRACE_SECONDS + CHILD_EXIT_MARGIN_SECONDS
                )
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
