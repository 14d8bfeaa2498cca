import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.support import TEST_SECRET
from veritas_grpc.domain.errors import Unauthenticated
from veritas_grpc.domain.identity import Role
from veritas_grpc.security.tokens import AccessTokenCodec, hash_refresh_token, new_refresh_token

USER = uuid.uuid4()
SESSION = uuid.uuid4()


@pytest.fixture
def codec():
    return AccessTokenCodec(TEST_SECRET, "veritas", "veritas-api", ttl_seconds=900)


def _claims(**overrides):
    now = datetime.now(UTC)
    claims = {
        "sub": str(USER),
        "role": "teacher",
        "jti": uuid.uuid4().hex,
        "sid": str(SESSION),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "veritas",
        "aud": "veritas-api",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_issued_token_round_trips(codec):
    now = datetime.now(UTC)
    token = codec.issue(USER, Role.TEACHER, SESSION, now)
    principal = codec.verify(token.value)
    assert principal.user_id == USER
    assert principal.role is Role.TEACHER
    assert principal.session_id == SESSION
    assert principal.token_id == token.jti
    assert principal.token_expires_at == token.expires_at
    assert token.expires_at - now.replace(microsecond=0) == timedelta(minutes=15)
    header = jwt.get_unverified_header(token.value)
    assert header["alg"] == "HS256"
    assert set(jwt.decode(token.value, options={"verify_signature": False})) == {
        "sub",
        "role",
        "jti",
        "sid",
        "iat",
        "exp",
        "iss",
        "aud",
    }


def _in_five_minutes() -> int:
    return int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())


def _unsigned(claims):
    def part(obj):
        raw = json.dumps(obj, default=lambda d: int(d.timestamp())).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _tampered(codec):
    token = codec.issue(USER, Role.STUDENT, SESSION, datetime.now(UTC)).value
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


BAD_TOKENS = {
    "alg none": lambda codec: _unsigned(_claims()),
    "another key": lambda codec: jwt.encode(_claims(), "another-secret-" * 4, algorithm="HS256"),
    "another algorithm": lambda codec: jwt.encode(_claims(), TEST_SECRET, algorithm="HS512"),
    "another issuer": lambda codec: jwt.encode(_claims(iss="evil"), TEST_SECRET, "HS256"),
    "another audience": lambda codec: jwt.encode(_claims(aud="other"), TEST_SECRET, "HS256"),
    "expired": lambda codec: jwt.encode(
        _claims(exp=datetime.now(UTC) - timedelta(minutes=1)), TEST_SECRET, "HS256"
    ),
    "no jti": lambda codec: jwt.encode(_claims(jti=None), TEST_SECRET, "HS256"),
    "unknown role": lambda codec: jwt.encode(_claims(role="root"), TEST_SECRET, "HS256"),
    "subject not a uuid": lambda codec: jwt.encode(_claims(sub="42"), TEST_SECRET, "HS256"),
    "tampered": _tampered,
    # RFC 7519: NumericDate claims are JSON numbers, not strings that look like them.
    "exp as a string": lambda codec: jwt.encode(
        _claims(exp=str(_in_five_minutes())), TEST_SECRET, "HS256"
    ),
    "iat as a string": lambda codec: jwt.encode(
        _claims(iat=str(int(datetime.now(UTC).timestamp()))), TEST_SECRET, "HS256"
    ),
    "nbf as a string": lambda codec: jwt.encode(
        _claims(nbf=str(int(datetime.now(UTC).timestamp()))), TEST_SECRET, "HS256"
    ),
    "iat as true": lambda codec: jwt.encode(_claims(iat=True), TEST_SECRET, "HS256"),
    "exp beyond any date": lambda codec: jwt.encode(_claims(exp=10**20), TEST_SECRET, "HS256"),
    "garbage": lambda codec: "not.a.token",
    "empty": lambda codec: "",
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused(codec, case):
    with pytest.raises(Unauthenticated):
        codec.verify(BAD_TOKENS[case](codec))


def test_numeric_dates_may_be_integers_or_fractions(codec):
    for exp in (_in_five_minutes(), _in_five_minutes() + 0.5):
        token = jwt.encode(_claims(exp=exp), TEST_SECRET, "HS256")
        assert codec.verify(token).user_id == USER


def test_refresh_tokens_are_random_and_stored_hashed():
    first, second = new_refresh_token(), new_refresh_token()
    assert first != second and len(first) >= 43
    assert hash_refresh_token(first) != first
    assert len(hash_refresh_token(first)) == 64
