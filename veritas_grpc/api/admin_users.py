"""veritas.v1.AdminService, accounts: ListUsers, GetUser, UpdateUser, DeactivateUser,
ReactivateUser, UnlockSignIn, RevokeSessions. Proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import admin_pb2

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.api.convert import user
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.user_admin import UserAdministration

Context = grpc.aio.ServicerContext


class UserAdminServicer:
    def __init__(self, users: UserAdministration, runner: BlockingRunner) -> None:
        self._users = users
        self._run = runner.run

    async def ListUsers(
        self, request: admin_pb2.ListUsersRequest, context: Context
    ) -> admin_pb2.ListUsersResponse:
        page = await self._run(
            self._users.list,
            current_principal(),
            convert.user_query(request),
            request.page_size,
            request.page_token,
        )
        return admin_pb2.ListUsersResponse(
            users=[user(view) for view in page.items], next_page_token=page.next_token
        )

    async def GetUser(
        self, request: admin_pb2.GetUserRequest, context: Context
    ) -> admin_pb2.GetUserResponse:
        detail = await self._run(self._users.get, current_principal(), request.user_id)
        return convert.user_detail(detail)

    async def UpdateUser(
        self, request: admin_pb2.UpdateUserRequest, context: Context
    ) -> admin_pb2.UpdateUserResponse:
        updated = await self._run(
            self._users.update,
            current_principal(),
            request.user.id,
            convert.user_change(request),
            list(request.update_mask.paths),
        )
        return admin_pb2.UpdateUserResponse(user=user(updated))

    async def DeactivateUser(
        self, request: admin_pb2.DeactivateUserRequest, context: Context
    ) -> admin_pb2.DeactivateUserResponse:
        view, revoked = await self._run(
            self._users.deactivate, current_principal(), request.user_id, request.reason
        )
        return admin_pb2.DeactivateUserResponse(user=user(view), revoked_session_count=revoked)

    async def ReactivateUser(
        self, request: admin_pb2.ReactivateUserRequest, context: Context
    ) -> admin_pb2.ReactivateUserResponse:
        view = await self._run(self._users.reactivate, current_principal(), request.user_id)
        return admin_pb2.ReactivateUserResponse(user=user(view))

    async def UnlockSignIn(
        self, request: admin_pb2.UnlockSignInRequest, context: Context
    ) -> admin_pb2.UnlockSignInResponse:
        cleared = await self._run(
            self._users.unlock_sign_in, current_principal(), request.email, request.client_address
        )
        return admin_pb2.UnlockSignInResponse(cleared_count=cleared)

    async def RevokeSessions(
        self, request: admin_pb2.RevokeSessionsRequest, context: Context
    ) -> admin_pb2.RevokeSessionsResponse:
        revoked = await self._run(self._users.revoke_sessions, current_principal(), request.user_id)
        return admin_pb2.RevokeSessionsResponse(revoked_session_count=revoked)
