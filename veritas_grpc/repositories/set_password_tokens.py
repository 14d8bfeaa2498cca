"""One-time set-password tokens, stored as the SHA-256 of their text. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from veritas_grpc.db.models import SetPasswordToken


class SetPasswordTokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def issue(
        self,
        user_id: uuid.UUID,
        token_hash: str,
        purpose: str,
        expires_at: datetime,
        created_by: uuid.UUID | None,
        now: datetime,
    ) -> int:
        """A new token for the account; its earlier unredeemed tokens stop working.
        Returns how many were superseded."""
        superseded = self.supersede(user_id, now)
        self._session.add(
            SetPasswordToken(
                user_id=user_id,
                token_hash=token_hash,
                purpose=purpose,
                expires_at=expires_at,
                created_by=created_by,
            )
        )
        self._session.flush()
        return superseded

    def supersede(self, user_id: uuid.UUID, now: datetime) -> int:
        result = self._session.execute(
            update(SetPasswordToken)
            .where(
                SetPasswordToken.user_id == user_id,
                SetPasswordToken.used_at.is_(None),
                SetPasswordToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return int(result.rowcount or 0)

    def issue_many(
        self,
        tokens: Sequence[tuple[uuid.UUID, str]],
        purpose: str,
        expires_at: datetime,
        created_by: uuid.UUID | None,
    ) -> None:
        """Tokens for accounts that have none yet (new accounts): one multi-row INSERT."""
        if not tokens:
            return
        self._session.execute(
            text(
                "INSERT INTO set_password_tokens "
                "(user_id, token_hash, purpose, expires_at, created_by) "
                "SELECT u, h, :purpose, :expires_at, :created_by "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:hashes AS text[])) AS v(u, h)"
            ),
            {
                "ids": [str(user_id) for user_id, _ in tokens],
                "hashes": [token_hash for _, token_hash in tokens],
                "purpose": purpose,
                "expires_at": expires_at,
                "created_by": created_by,
            },
        )

    def find(self, token_hash: str, for_update: bool = False) -> SetPasswordToken | None:
        query = select(SetPasswordToken).where(SetPasswordToken.token_hash == token_hash)
        if for_update:
            query = query.with_for_update()
        return self._session.scalar(query)

    def redeem(self, token: SetPasswordToken, now: datetime) -> None:
        token.used_at = now
        self._session.flush()
