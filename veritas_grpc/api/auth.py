"""veritas.v1.AuthService: proto in, service call, proto out."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc

from veritas_grpc.api import convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.client_address import IPNetwork, client_address
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.accounts import AccountService
from veritas_grpc.services.auth import AuthService
from veritas_grpc.services.enrolment import EnrolmentService


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        auth: AuthService,
        accounts: AccountService,
        database: BlockingRunner,
        passwords: BlockingRunner,
        trusted_proxies: Sequence[IPNetwork] = (),
        enrolment: EnrolmentService | None = None,
    ) -> None:
        self._auth = auth
        self._accounts = accounts
        self._run = database.run
        # Register and Login spend most of their time in bcrypt.
        self._run_hashing = passwords.run
        self._trusted_proxies = tuple(trusted_proxies)
        self._enrolment = enrolment

    def _client(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's address: the peer, or what a trusted proxy forwarded."""
        forwarded = [
            value
            for key, value in context.invocation_metadata() or ()
            if key == "x-forwarded-for" and isinstance(value, str)
        ]
        return client_address(context.peer() or "", forwarded, self._trusted_proxies)

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        account = await self._run_hashing(
            self._accounts.register_student,
            request.email,
            request.password,
            request.full_name,
            request.enrollment_id,
            self._client(context),
        )
        return auth_pb2.RegisterResponse(user=convert.user(account))

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        sign_in = await self._run_hashing(
            self._auth.login, request.email, request.password, self._client(context)
        )
        return auth_pb2.LoginResponse(
            tokens=convert.token_pair(sign_in.tokens), user=convert.user(sign_in.account)
        )

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshResponse:
        sign_in = await self._run(self._auth.refresh, request.refresh_token)
        return auth_pb2.RefreshResponse(
            tokens=convert.token_pair(sign_in.tokens), user=convert.user(sign_in.account)
        )

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        await self._run(self._auth.logout, current_principal(), request.refresh_token)
        return auth_pb2.LogoutResponse()

    async def SetPassword(
        self, request: auth_pb2.SetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SetPasswordResponse:
        assert self._enrolment is not None, "SetPassword needs the enrolment service"
        account = await self._run_hashing(
            self._enrolment.set_password,
            request.token,
            request.new_password,
            self._client(context),
        )
        return auth_pb2.SetPasswordResponse(user=convert.user(account))

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetCurrentUserResponse:
        account = await self._run(self._auth.current_user, current_principal())
        return auth_pb2.GetCurrentUserResponse(user=convert.user(account))
