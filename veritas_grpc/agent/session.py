"""The agent's sign-in session: the access token to send, refreshed before it expires,
and every new pair written to the spool before it is used (refresh tokens rotate: a
restarted agent must continue with the newest, never present a used one again)."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from veritas_grpc.agent.credentials import (
    Credentials,
    PasswordCredentials,
    TokenCredentials,
    TokenState,
)
from veritas_grpc.agent.spool import Spool, StoredTokens
from veritas_grpc.agent.transport import CallFailed, Pair, Transport


class SignInFailed(Exception):
    """The server refuses the session (UNAUTHENTICATED) and the credentials cannot make
    a new one: the agent keeps its events and reports this."""


class Session:
    def __init__(
        self,
        credentials: Credentials,
        spool: Spool,
        transport: Transport,
        refresh_margin: float | None = None,
        call_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._spool = spool
        self._transport = transport
        self._margin = refresh_margin
        self._timeout = call_timeout
        self._clock = clock
        self.refreshes = 0
        self.logins = 0
        self._state = self._resume()

    def _resume(self) -> TokenState | None:
        """The spool's pair when it grew from these credentials (it is newer than what
        the caller holds: the caller's refresh token may have been used up since)."""
        stored = self._spool.tokens()
        if stored is not None and stored.origin == self._credentials.origin:
            return TokenState(stored.access, stored.refresh, stored.obtained_at, stored.lifetime)
        if isinstance(self._credentials, TokenCredentials):
            state = TokenState.given(self._credentials)
            self._save(state)
            return state
        return None  # password credentials: signed in at the first send

    async def access_token(self) -> str:
        """A token to send now: refreshed when due. A refresh that fails for transport
        reasons while the current token still works is tried again next time."""
        now = self._clock()
        if self._state is None:
            await self.renew()
        elif self._state.refresh_due(self._margin, now):
            try:
                await self.renew()
            except CallFailed as failure:
                if not failure.transient or self._state.expired(now):
                    raise
        assert self._state is not None
        return self._state.access

    async def renew(self) -> None:
        """A new pair: Refresh, else (password credentials) Login. Raises CallFailed
        for transport problems, SignInFailed when the session cannot be renewed."""
        if self._state is not None:
            try:
                pair = await self._transport.refresh(self._state.refresh, self._timeout)
                self.refreshes += 1
                return self._adopt(pair)
            except CallFailed as failure:
                if failure.code not in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    raise
                if not isinstance(self._credentials, PasswordCredentials):
                    raise SignInFailed(f"refresh refused: {failure.details}") from None
        await self._login()

    async def _login(self) -> None:
        assert isinstance(self._credentials, PasswordCredentials)
        try:
            pair = await self._transport.login(
                self._credentials.email, self._credentials.password, self._timeout
            )
        except CallFailed as failure:
            if failure.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                raise SignInFailed(f"sign-in refused: {failure.details}") from None
            raise
        self.logins += 1
        self._adopt(pair)

    def _adopt(self, pair: Pair) -> None:
        state = TokenState.issued(pair.access, pair.refresh, self._clock())
        self._save(state)  # before first use: a crash after this keeps the newest pair
        self._state = state

    def _save(self, state: TokenState) -> None:
        self._spool.save_tokens(
            StoredTokens(
                self._credentials.origin,
                state.access,
                state.refresh,
                state.obtained_at,
                state.lifetime,
            )
        )
