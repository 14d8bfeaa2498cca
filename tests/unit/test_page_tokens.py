"""Page tokens are signed: the server parses only tokens it issued (issue 10, item 4)."""

import base64
import json
import uuid

import pytest

from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.services import paging
from veritas_grpc.services.paging import (
    PageTokenSigner,
    page_request,
    page_token_key,
    paginate,
    position,
    use_page_token_key,
)

SECRET = "a-server-secret-of-at-least-32-bytes-0123456789"
EXAM_ID = uuid.UUID("0b3c2a9e-5d1f-4c7a-9e2b-8f6d4a1c3e5b")


@pytest.fixture(autouse=True)
def server_key():
    """The key a server derives from its secret; the module's own restored after."""
    before = paging._signer
    use_page_token_key(page_token_key(SECRET))
    yield
    paging._signer = before


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(document: object) -> str:
    """A token as the server made them before they were signed: base64 of JSON."""
    return _b64(json.dumps(document).encode())


def _refused(token: str, scope: str = "exams") -> None:
    with pytest.raises(InvalidArgument) as error:
        page_request(10, token, scope)
    assert [v.field for v in error.value.violations] == ["page_token"]


def _next_token(scope: str = "exams") -> str:
    rows = [("2026-11-29T12:00:00+00:00", EXAM_ID), ("2026-11-30T12:00:00+00:00", EXAM_ID)]
    return paginate(rows, page_request(1, "", scope), lambda row: row).next_token


def test_a_token_the_server_issued_brings_back_its_position():
    request = page_request(10, _next_token(), "exams")
    assert request.after == ["2026-11-29T12:00:00+00:00", str(EXAM_ID)]
    assert position(request, str, uuid.UUID) == ("2026-11-29T12:00:00+00:00", EXAM_ID)


def test_deeply_nested_json_is_refused_without_being_parsed():
    _refused(_b64(b"[" * 5000))
    _refused(_b64(b"[" * 5000) + "." + _b64(b"x" * 32))


def test_a_well_formed_position_the_server_did_not_sign_is_refused():
    forged = {"s": "exams", "k": ["2026-11-29T12:00:00+00:00", str(EXAM_ID)]}
    _refused(_unsigned(forged))
    payload = _b64(json.dumps(forged).encode())
    _refused(f"{payload}.{_b64(b'0' * 32)}")


def test_a_token_altered_after_signing_is_refused():
    payload, mac = _next_token().split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["k"][0] = "2020-01-01T00:00:00+00:00"
    _refused(f"{_b64(json.dumps(document).encode())}.{mac}")


def test_a_token_of_another_listing_is_refused():
    _refused(_next_token("flagged:1"), scope="flagged:2")


@pytest.mark.parametrize(
    "token", ["garbage", ".", "a.b.c", "é.é", "x" * 5000 + "." + "y", "%%%.%%%", "\x00"]
)
def test_garbage_is_refused(token):
    _refused(token)


def test_processes_sharing_the_secret_accept_each_others_tokens():
    token = PageTokenSigner(page_token_key(SECRET)).sign("exams", ["a", "b"])
    assert PageTokenSigner(page_token_key(SECRET)).open(token, "exams") == ["a", "b"]
    with pytest.raises(InvalidArgument):
        PageTokenSigner(page_token_key(SECRET + "-other")).open(token, "exams")


def test_the_page_key_is_not_the_secret_itself():
    assert page_token_key(SECRET) != SECRET.encode()
    assert len(page_token_key(SECRET)) == 32


def test_a_dedicated_page_token_secret_must_be_long_enough():
    from veritas_grpc.config import ConfigError, load_settings

    env = {"VERITAS_ENV": "test", "VERITAS_JWT_SECRET": SECRET}
    assert load_settings(env).page_token_secret == ""
    assert load_settings({**env, "VERITAS_PAGE_TOKEN_SECRET": SECRET + "x"}).page_token_secret
    with pytest.raises(ConfigError):
        load_settings({**env, "VERITAS_PAGE_TOKEN_SECRET": "short"})
