"""Whatever the payload check accepts, the events' data column (PostgreSQL json) takes
and gives back unchanged: one refused value would fail the batch it is written with."""

import pytest
from sqlalchemy import create_engine

from veritas_grpc.domain.payload import MAX_DATA_BYTES, payload_problem

NESTED = '{"a":' + "[" * 600 + '"x"' + "]" * 600 + "}"
CASES = [
    # Ordinary payloads
    '{"gaze_x":0.31,"duration_ms":1200}',
    ' {"a": 1}\n',
    '{"a":1}\n\r\t ',
    '{"a":-0,"b":1E+2,"c":true,"d":null,"e":[],"f":{}}',
    '{"a":"\\/","b":"\\uDBFF\\uDFFF","c":"\\uFFFF","d":"é😀"}',
    NESTED,
    # Numbers beyond a double but within numeric, and beyond numeric
    '{"a":1e400}',
    '{"a":-1e400}',
    '{"a":1e-400}',
    '{"a":123456789012345678901234567890}',
    '{"a":' + "9" * 400 + "}",
    '{"a":1e131071}',
    '{"a":1e131072}',
    '{"a":1e-16383}',
    '{"a":1e-16384}',
    '{"a":1.5e-16383}',
    '{"a":1e-20000}',
    '{"a":1e1000000}',
    '{"a":0.5e-16382}',
    # NUL, escaped or not, and a backslash that only looks like one
    '{"a":"\\u0000"}',
    '{"a":"x\\u0000"}',
    '{"\\u0000":1}',
    '{"a":[{"b":"c\\u0000"}]}',
    '{"a":"C:\\\\u0000"}',
    '{"a":"C:\\\\\\u0000"}',
    '{"a":"\\\\\\\\u0000"}',
    '{"a":' + "[" * 600 + '"C:\\\\u0000"' + "]" * 600 + "}",
    '{"a":' + "[" * 600 + '"\\u0000"' + "]" * 600 + "}",
    # Lone surrogates, constants, control characters, syntax
    '{"a":"\\ud800"}',
    '{"a":"\\udc00\\ud800"}',
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":"\x1f"}',
    '{"a":"tab\there"}',
    '{"a":"\x7f"}',
    '\ufeff{"a":1}',
    '{"a":1}\x00',
    '{"a":1}\u00a0',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":01}',
    '{"a":tru}',
    '{"a":1,}',
    '{"a":1 /*c*/}',
    '{"a":"\\u00"}',
    '{"a":"\\x"}',
    '{"a":1} {"b":2}',
]


@pytest.fixture(scope="module")
def column_keeps(database_url):
    """Whether the data column takes the text and gives it back unchanged."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    connection = engine.raw_connection()

    def keeps(text: str) -> bool:
        with connection.cursor() as cursor:
            try:
                cursor.execute(
                    "SELECT CAST(CAST(%s AS json) AS text), (SELECT data_type FROM "
                    "information_schema.columns WHERE table_name = 'monitoring_events' "
                    "AND column_name = 'data')",
                    (text,),
                )
            except Exception:  # noqa: BLE001 - any refusal is the answer
                return False
            back, column_type = cursor.fetchone()
            assert column_type == "json"
            return back == text

    yield keeps
    connection.close()
    engine.dispose()


@pytest.mark.parametrize("text", CASES, ids=range(len(CASES)))
def test_what_the_check_accepts_the_column_keeps(text, column_keeps):
    assert len(text.encode("utf-8", "surrogatepass")) <= MAX_DATA_BYTES
    if payload_problem(text) is None:
        assert column_keeps(text)


def test_the_check_accepts_ordinary_and_unusual_payloads():
    accepted = [text for text in CASES if payload_problem(text) is None]
    assert len(accepted) >= 20  # not a check that refuses everything
    assert '{"a":1e-20000}' in accepted and '{"a":"\\u0000"}' in accepted
