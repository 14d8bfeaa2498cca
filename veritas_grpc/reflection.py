"""Server reflection that grpcurl and buf curl fully understand.

grpcio-reflection serves only grpc.reflection.v1alpha; buf curl asks for v1 first (and
falls back), newer clients ask only for v1. v1 is the same protocol, message for
message, under another package, so one servicer answers both.

The descriptor pool finds messages, fields, enums and services by name, but not
methods, so `grpcurl describe veritas.v1.AuthService.Login` failed with "Symbol not
found"; the servicer here answers a method with the file of its service, as the Go and
C++ servers do.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

# The error details the server sends (google.rpc.BadRequest, RetryInfo, ErrorInfo):
# imported so their file is in the pool, findable by symbol and by file name, whatever
# else the server happens to import.
from google.rpc import error_details_pb2  # noqa: F401
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PREFIX = f".{reflection_pb2.DESCRIPTOR.package}."
_V1_PREFIX = ".grpc.reflection.v1."


def _renamed(type_name: str) -> str:
    if type_name.startswith(_V1ALPHA_PREFIX):
        return _V1_PREFIX + type_name.removeprefix(_V1ALPHA_PREFIX)
    return type_name


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, made from the v1alpha file grpcio-reflection
    ships (the two differ only in their package), so reflection can describe itself."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE_NAME
    proto.package = _V1_PREFIX.strip(".")
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # messages and enums only
                field.type_name = _renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    return proto


def register_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE_NAME)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


class ReflectionServicer(reflection.aio.ReflectionServicer):
    """grpcio-reflection's servicer, also resolving method symbols (Service.Method)."""

    def _method_of_a_service(self, symbol: str) -> bool:
        service_name, _, method_name = symbol.rpartition(".")
        try:
            service = self._pool.FindServiceByName(service_name)
        except KeyError:
            return False
        return method_name in service.methods_by_name

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        if self._method_of_a_service(fully_qualified_name):
            fully_qualified_name = fully_qualified_name.rpartition(".")[0]
        return super()._file_containing_symbol(request, fully_qualified_name)


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1 and v1alpha, listing service_names and reflection itself."""
    pool = descriptor_pool.Default()
    register_v1_descriptor(pool)
    servicer = ReflectionServicer(
        (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME), pool=pool
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, handlers),)
    )
    server.add_registered_method_handlers(V1_SERVICE_NAME, handlers)
