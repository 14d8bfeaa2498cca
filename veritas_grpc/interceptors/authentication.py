"""Bearer-token authentication for every non-public method, unary and streaming alike.

A unary call's token is verified here (signature, claims, expiry) and checked against
the database's revocations by the call's first transaction on the primary, as its first
statement (services/token_checks.py), or at the call's end if it began none; either
way before the call answers, and a refusal replaces any answer. A server reading a
replica checks its replica-read methods' tokens before they run.

A stream is authenticated in full when it opens and stays bound to its token: once the token
expires, or when a re-check (every STREAM_RECHECK_SECONDS, at the next message in
either direction) finds it revoked, the stream ends with UNAUTHENTICATED and the client
reconnects with a fresh token. A re-check the database cannot answer does not end the
stream (a watch outlives an outage); it is tried again at the next message, and the
token's expiry still applies.

Ending an account's sessions (DeactivateUser, RevokeSessions) does not wait for that:
its commit NOTIFYs every server process (db.models.auth.SESSION_CHANNEL, heard by the
alert listener's connection), and OpenStreams re-checks at once each open stream of
that account, ending those refused even while they wait for their next message. A
stream waiting is ended by cancelling its wait (the path a client's cancellation takes
through the handler), turned into UNAUTHENTICATED at the wait. When the LISTEN
connection is re-established every open stream is re-checked, for notices missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.errors import Overloaded, Unauthenticated, Unavailable
from veritas_grpc.domain.identity import Principal, TokenCheck
from veritas_grpc.interceptors.metadata import metadata_value
from veritas_grpc.interceptors.principal import set_principal
from veritas_grpc.security.policy import is_public, is_unary
from veritas_grpc.services import token_checks
from veritas_grpc.services.auth import AuthService

log = logging.getLogger("veritas.auth")
BEARER = "bearer "
STREAM_RECHECK_SECONDS = 30.0


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    header = metadata_value(context, "authorization")
    if not header or header[: len(BEARER)].lower() != BEARER:
        raise Unauthenticated("missing bearer token")
    return header[len(BEARER) :].strip()


class _StreamGuard:
    """Keeps checking, while a stream lasts, that its token is still good."""

    def __init__(self, token: str, principal: Principal, auth: AuthService, runner: BlockingRunner):
        self._token = token
        self.user_id = principal.user_id
        self._expires_at = principal.token_expires_at
        self._auth = auth
        self._runner = runner
        self._checked_at = time.monotonic()
        # Set once a re-check refused the token: the stream ends with it.
        self._ended: Unauthenticated | None = None
        # The stream's task while it waits for its next message (to cancel it then).
        self._waiting: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._rechecking = False

    async def check(self) -> None:
        if self._ended is not None:
            raise self._ended
        if datetime.now(UTC) >= self._expires_at:
            raise Unauthenticated("access token expired; reconnect with a fresh token")
        if time.monotonic() - self._checked_at >= STREAM_RECHECK_SECONDS:
            try:
                await self._runner.run(self._auth.authenticate, self._token)
            except Unavailable:
                return  # the database is down: check again at the next message
            self._checked_at = time.monotonic()

    async def recheck(self) -> None:
        """Check the token now (a notice said the account's sessions ended); end the
        stream at once if it is refused."""
        if self._ended is not None or self._rechecking:
            return
        self._rechecking = True
        try:
            await self._runner.run(self._auth.authenticate, self._token)
            self._checked_at = time.monotonic()
        except Unauthenticated as refused:
            self._end(refused)
        except Exception:  # noqa: BLE001 - unknown now: check again at the next message
            self._checked_at = 0.0
        finally:
            self._rechecking = False

    def _end(self, error: Unauthenticated) -> None:
        self._ended = error
        if self._waiting is not None and not self._cancelled:
            self._cancelled = True
            self._waiting.cancel()

    async def _next(self, iterator: AsyncIterator[Any]) -> Any:
        """The iterator's next item; Unauthenticated if the stream is ended meanwhile.
        Raises StopAsyncIteration at its end."""
        if self._ended is not None:
            raise self._ended
        task = asyncio.current_task()
        self._waiting = task
        try:
            return await iterator.__anext__()
        except asyncio.CancelledError:
            if not self._cancelled or self._ended is None or task is None:
                raise
            task.uncancel()  # our cancellation, not the client's: answer it
            raise self._ended from None
        finally:
            self._waiting = None

    async def requests(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        iterator = requests.__aiter__()
        while True:
            try:
                request = await self._next(iterator)
            except StopAsyncIteration:
                return
            await self.check()
            yield request

    async def responses(
        self, responses: AsyncIterator[Any], streams: OpenStreams | None = None
    ) -> AsyncIterator[Any]:
        streams = streams if streams is not None else OpenStreams()
        streams.add(self)
        iterator = responses.__aiter__()
        try:
            while True:
                try:
                    response = await self._next(iterator)
                except StopAsyncIteration:
                    return
                await self.check()
                yield response
        finally:
            streams.discard(self)


class OpenStreams:
    """The authenticated streams open in this process, by account. Lives on the event
    loop; `publish` and `reconnected` are the alert listener's callbacks for
    SESSION_CHANNEL."""

    def __init__(self) -> None:
        self._by_user: dict[uuid.UUID, set[_StreamGuard]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    def add(self, guard: _StreamGuard) -> None:
        self._by_user.setdefault(guard.user_id, set()).add(guard)

    def discard(self, guard: _StreamGuard) -> None:
        guards = self._by_user.get(guard.user_id)
        if guards is not None:
            guards.discard(guard)
            if not guards:
                del self._by_user[guard.user_id]

    def count(self, user_id: uuid.UUID) -> int:
        return len(self._by_user.get(user_id, ()))

    def publish(self, payload: str) -> None:
        """A notice that an account's sessions ended: re-check its open streams now."""
        try:
            user_id = uuid.UUID(json.loads(payload)["user_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed session notice")
            return
        for guard in list(self._by_user.get(user_id, ())):
            self._recheck(guard)

    def reconnected(self) -> None:
        """Notices sent while the listener was not connected were lost: re-check all."""
        for guards in list(self._by_user.values()):
            for guard in list(guards):
                self._recheck(guard)

    def _recheck(self, guard: _StreamGuard) -> None:
        task = asyncio.get_running_loop().create_task(guard.recheck())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)


class AuthenticationInterceptor(AsyncServerInterceptor):
    def __init__(
        self,
        auth: AuthService,
        runner: BlockingRunner,
        streams: OpenStreams | None = None,
        checked_first: frozenset[str] = frozenset(),
    ) -> None:
        """checked_first: unary methods whose token is checked before they run, as a
        stream's is: those reading a replica (whose reads would otherwise be done, and
        timed, for a revoked token before its check on the primary)."""
        self._auth = auth
        self._runner = runner
        self._streams = streams if streams is not None else OpenStreams()
        self._checked_first = checked_first

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        if is_public(method_name):
            set_principal(None)
            result = method(request_or_iterator, context)
            return result if hasattr(result, "__aiter__") else await result
        token = bearer_token(context)
        if is_unary(method_name) and method_name not in self._checked_first:
            return await self._unary(method, request_or_iterator, context, token)
        principal = await self._runner.run(self._auth.authenticate, token)
        guard = _StreamGuard(token, principal, self._auth, self._runner)
        if hasattr(request_or_iterator, "__aiter__"):
            request_or_iterator = guard.requests(request_or_iterator)
        # Each RPC runs in its own asyncio task, so the principal stays with this call,
        # also while a response stream is produced after this method returns.
        set_principal(principal)
        result = method(request_or_iterator, context)
        if hasattr(result, "__aiter__"):
            return guard.responses(result, self._streams)
        if not hasattr(request_or_iterator, "__aiter__"):
            return await result
        self._streams.add(guard)  # a client stream: open until the answer
        try:
            return await result
        finally:
            self._streams.discard(guard)

    async def _unary(
        self,
        method: Callable[..., Any],
        request: Any,
        context: grpc.aio.ServicerContext,
        token: str,
    ) -> Any:
        """A unary call: the token's signature and expiry here, whether it was revoked
        in the call's first transaction on the primary (services/token_checks.py), or at
        its end if it began none (a refusal before any read, a read from the replica).
        Either way before it answers, and UNAUTHENTICATED then replaces any answer."""
        principal = self._auth.verify(token)
        check = token_checks.defer(principal)
        set_principal(principal)
        try:
            result = await method(request, context)
        except (Unavailable, Overloaded):
            # The database (or the server) could not answer: nor could it check the
            # token. An outage tells a caller nothing; the check would only wait again.
            if check.refused:
                raise Unauthenticated() from None
            raise
        except Exception:
            await self._settle(check)
            raise
        await self._settle(check)
        return result

    async def _settle(self, check: TokenCheck) -> None:
        if not check.done:
            check.done = True  # this check is it: a transaction it begins need not repeat it
            try:
                await self._runner.run(self._auth.ensure_unrevoked, check.principal)
            except Unauthenticated:
                check.refused = True
                raise
        if check.refused:
            raise Unauthenticated()
