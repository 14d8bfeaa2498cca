"""--command: a team's model as an external program, speaking protocol.py over its
standard input and output. Run without a shell (wrap it in `sh -c '...'` for one), in
a process group of its own so that a timeout kills whatever it started too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from veritas.v1 import analysis_pb2

from veritas_grpc.scorer.analysis import Analysis
from veritas_grpc.scorer.protocol import ScoringError, json_line, parse_answer

# Larger than the largest analysis the server accepts (120,000 characters of texts and
# 20 recommendations of 1,000), small enough that a runaway command cannot fill memory.
MAX_ANSWER_BYTES = 1 << 20
STDERR_TAIL_BYTES = 500


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > limit:
            raise ScoringError(f"the command wrote more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


async def _feed(
    stdin: asyncio.StreamWriter,
    evidence: analysis_pb2.AttemptEvidence,
    events: AsyncIterator[analysis_pb2.EvidenceEvent],
) -> int:
    """Write the evidence, one event at a time (bounded memory); a command that stops
    reading early (it decided on less) is not an error. Returns the events sent."""
    sent = 0
    try:
        stdin.write(json_line(evidence))
        await stdin.drain()
        async for item in events:
            stdin.write(json_line(item))
            sent += 1
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


async def _all_or_none(*work: Coroutine[Any, Any, Any]) -> list[Any]:
    """Their results, or the first exception once the others are cancelled (unlike
    gather, which leaves them running: a feeder would go on reading the stream)."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for the killed command. Its pipes are read to their end first: a pipe left
    with unread output (a runaway answer cut off) keeps its transport paused, and
    asyncio's wait() waits for the pipes to close as well as for the process."""
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                while await stream.read(65536):
                    pass
    await process.wait()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


class CommandScorer:
    def __init__(self, argv: Sequence[str], timeout_seconds: float) -> None:
        self._argv = list(argv)
        self._timeout = timeout_seconds

    async def analyse(
        self,
        evidence: analysis_pb2.AttemptEvidence,
        events: AsyncIterator[analysis_pb2.EvidenceEvent],
    ) -> Analysis:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            raise ScoringError(f"the command could not start: {error}") from None
        try:
            return await asyncio.wait_for(self._converse(process, evidence, events), self._timeout)
        except TimeoutError:
            raise ScoringError(f"the command took longer than {self._timeout:g} s") from None
        finally:
            # Also when the job is cancelled (a lost lease, a shutdown): no orphans.
            _kill_group(process)
            await _reap(process)

    async def _converse(
        self,
        process: asyncio.subprocess.Process,
        evidence: analysis_pb2.AttemptEvidence,
        events: AsyncIterator[analysis_pb2.EvidenceEvent],
    ) -> Analysis:
        assert process.stdin and process.stdout and process.stderr
        sent, output, errors, status = await _all_or_none(
            _feed(process.stdin, evidence, events),
            _read_capped(process.stdout, MAX_ANSWER_BYTES),
            _read_tail(process.stderr, STDERR_TAIL_BYTES),
            process.wait(),
        )
        if status != 0:
            said = errors.decode(errors="replace").strip()
            raise ScoringError(f"the command exited with status {status}: {said or '(no stderr)'}")
        analysis = parse_answer(output)
        return replace(analysis, event_count=sent)
