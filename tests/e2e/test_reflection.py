"""Server reflection as the real tools use it: grpcurl (v1alpha only) and buf curl (v1,
falling back to v1alpha), run as subprocesses against a real server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2
from veritas.v1 import options_pb2

from veritas_grpc.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME

BIN = Path(sys.executable).parent
CONTRACT_NUMBER = options_pb2.contract.number  # the veritas.v1.contract method option
ERROR_DETAILS_PROTO = Path(error_details_pb2.__file__).with_name("error_details.proto")


def _run(tool: str, *args: str, env_home: Path, stdin: str = "") -> subprocess.CompletedProcess:
    # buf keeps a cache under XDG_CACHE_HOME: a temporary one, not the user's.
    return subprocess.run(
        [str(BIN / tool), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(env_home), "HOME": str(env_home)},
    )


@pytest.fixture
def grpcurl(server, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return _run("grpcurl", "-plaintext", *args, env_home=tmp_path)

    return run


@pytest.fixture
def buf(tmp_path):
    return lambda *args: _run("buf", *args, env_home=tmp_path)


def _reflect(channel: grpc.Channel, service: str, request: reflection_pb2.ServerReflectionRequest):
    """One reflection request over v1 or v1alpha (the same messages on the wire)."""
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    [response] = list(call(iter([request]), timeout=10))
    return response


def test_grpcurl_lists_both_reflection_versions(server, grpcurl):
    listed = grpcurl(server.address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME, "veritas.v1.AuthService"} <= services


def test_grpcurl_describes_a_method_with_its_contract(server, grpcurl):
    described = grpcurl(server.address, "describe", "veritas.v1.AuthService.Login")
    assert described.returncode == 0, described.stderr
    assert "veritas.v1.AuthService.Login is a method" in described.stdout
    assert "(.veritas.v1.contract)" in described.stdout and "public:true" in described.stdout


def test_grpcurl_describes_reflection_v1_itself(server, grpcurl):
    described = grpcurl(server.address, "describe", V1_SERVICE_NAME)
    assert described.returncode == 0, described.stderr
    assert "stream .grpc.reflection.v1.ServerReflectionRequest" in described.stdout


def test_grpcurl_decodes_the_error_details(server, grpcurl):
    answer = grpcurl("-d", "{}", server.address, "veritas.v1.AuthService/Register")
    assert answer.returncode != 0
    assert '"@type":"type.googleapis.com/google.rpc.BadRequest"' in answer.stderr
    assert '"field_violations":[{"field":"email"' in answer.stderr


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_buf_curl_reflects_over_either_version(server, buf, protocol):
    url = f"http://{server.address}"
    listed = buf(
        "curl", "--protocol", "grpc", "--reflect-protocol", protocol, "--list-methods", url
    )
    assert listed.returncode == 0, listed.stderr
    assert "veritas.v1.AuthService/Login" in listed.stdout.split()
    health = buf(
        "curl",
        "--protocol",
        "grpc",
        "--reflect-protocol",
        protocol,
        "-d",
        "{}",
        f"{url}/grpc.health.v1.Health/Check",
    )
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout) == {"status": "SERVING"}


def test_buf_curl_error_details_decode_with_buf_convert(server, buf, tmp_path):
    """buf curl prints details of types it was not built with as base64, whatever the
    server's reflection offers (the README says so); buf convert decodes them."""
    answer = buf(
        "curl",
        "--protocol",
        "grpc",
        "-d",
        "{}",
        f"http://{server.address}/veritas.v1.AuthService/Register",
    )
    assert answer.returncode != 0
    [detail] = json.loads(answer.stderr)["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    encoded = detail["value"]
    (tmp_path / "detail.binpb").write_bytes(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    decoded = buf(
        "convert",
        str(ERROR_DETAILS_PROTO),
        "--type",
        "google.rpc.BadRequest",
        "--from",
        f"{tmp_path / 'detail.binpb'}#format=binpb",
        "--to",
        "-#format=json",
    )
    assert decoded.returncode == 0, decoded.stderr
    fields = {v["field"] for v in json.loads(decoded.stdout)["fieldViolations"]}
    assert {"email", "password"} <= fields


@pytest.mark.parametrize("service", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
@pytest.mark.parametrize(
    "symbol", ["google.rpc.BadRequest", "google.rpc.RetryInfo", "google.rpc.ErrorInfo"]
)
def test_error_detail_types_are_found_by_symbol(channel, service, symbol):
    response = _reflect(
        channel, service, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    assert response.WhichOneof("message_response") == "file_descriptor_response"
    assert _file_names(response)[0] == "google/rpc/error_details.proto"


@pytest.mark.parametrize("service", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
def test_error_details_are_found_by_file_name(channel, service):
    request = reflection_pb2.ServerReflectionRequest(
        file_by_filename="google/rpc/error_details.proto"
    )
    response = _reflect(channel, service, request)
    assert "google/rpc/error_details.proto" in _file_names(response)


def test_an_unknown_method_of_a_known_service_is_not_found(channel):
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="veritas.v1.AuthService.DropDatabase"
    )
    response = _reflect(channel, V1_SERVICE_NAME, request)
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def _file_names(response: reflection_pb2.ServerReflectionResponse) -> list[str]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(data).name
        for data in response.file_descriptor_response.file_descriptor_proto
    ]


@pytest.mark.parametrize("service", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
def test_the_contract_option_is_found_as_an_extension(channel, service):
    numbers = _reflect(
        channel,
        service,
        reflection_pb2.ServerReflectionRequest(
            all_extension_numbers_of_type="google.protobuf.MethodOptions"
        ),
    )
    assert CONTRACT_NUMBER in numbers.all_extension_numbers_response.extension_number
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_extension=reflection_pb2.ExtensionRequest(
            containing_type="google.protobuf.MethodOptions", extension_number=CONTRACT_NUMBER
        )
    )
    assert _file_names(_reflect(channel, service, request))[0] == "veritas/v1/options.proto"
