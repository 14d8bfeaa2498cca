"""The composition root: the one place that wires engine, services, servicers and
interceptors together. Nothing else creates an engine or a service."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from sqlalchemy import Engine
from veritas.v1 import auth_pb2, auth_pb2_grpc

from veritas_grpc.api.auth import AuthServicer
from veritas_grpc.api.blocking import BlockingRunner
from veritas_grpc.config import Settings
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.db.uow import UnitOfWork
from veritas_grpc.health import HealthMonitor
from veritas_grpc.interceptors.authentication import AuthenticationInterceptor
from veritas_grpc.interceptors.authorization import AuthorizationInterceptor
from veritas_grpc.interceptors.errors import ErrorInterceptor
from veritas_grpc.interceptors.request_log import RequestLogInterceptor
from veritas_grpc.security.passwords import PasswordHasher
from veritas_grpc.security.tokens import AccessTokenCodec
from veritas_grpc.services.accounts import AccountService
from veritas_grpc.services.auth import AuthService

# Every veritas.v1 service the server implements, by full name (for health and reflection).
SERVICE_NAMES = (auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,)


@dataclass
class Services:
    engine: Engine
    accounts: AccountService
    auth: AuthService

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings, database_url: str) -> Services:
    engine = make_engine(database_url, pool_size=settings.db_pool_size)
    session_factory = make_session_factory(engine)

    def uow_factory() -> UnitOfWork:
        return UnitOfWork(session_factory)

    hasher = PasswordHasher(settings.bcrypt_rounds)
    codec = AccessTokenCodec(
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_ttl_seconds,
    )
    return Services(
        engine=engine,
        accounts=AccountService(uow_factory, hasher),
        auth=AuthService(uow_factory, hasher, codec, settings),
    )


def interceptors(services: Services, runner: BlockingRunner) -> list[grpc.aio.ServerInterceptor]:
    # The first is outermost: the log sees the final status, the error mapper sees
    # authentication and authorization failures too.
    return [
        RequestLogInterceptor(),
        ErrorInterceptor(),
        AuthenticationInterceptor(services.auth, runner),
        AuthorizationInterceptor(),
    ]


def add_servicers(server: grpc.aio.Server, services: Services, runner: BlockingRunner) -> None:
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(services.auth, services.accounts, runner), server
    )


def health_monitor(settings: Settings, services: Services, runner: BlockingRunner) -> HealthMonitor:
    return HealthMonitor(
        services.engine, runner, SERVICE_NAMES, settings.health_check_interval_seconds
    )
