"""The --command protocol: the evidence as JSON lines to an external program, its answer
read back as one JSON object; failing, hanging and garbage-answering programs."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest
from veritas.v1 import common_pb2

from tests.unit.scorer_evidence import evidence, evidence_event, stream_of
from veritas_grpc.scorer.command import CommandScorer
from veritas_grpc.scorer.protocol import ScoringError, json_line, parse_answer

# A model in a few lines: counts the events it was sent, echoes what it saw.
COUNTING_MODEL = textwrap.dedent(
    """
    import json, sys
    first = json.loads(sys.stdin.readline())
    events = [json.loads(line) for line in sys.stdin]
    print(json.dumps({
        "integrityScore": 0.5,
        "dropoutLabel": "DROPOUT_LABEL_INCAPABLE",
        "learningMomentumIndex": -1.5,
        "llmSummary": f"{len(events)} events, status {first['attempt']['status']}",
        "recommendations": [e["event"]["eventType"] for e in events[:2]],
        "model": {"name": "counting", "version": "2"},
    }))
    """
)


def run(program: str, items=(), timeout: float = 10.0, **evidence_fields):
    scorer = CommandScorer([sys.executable, "-c", program], timeout)
    return asyncio.run(scorer.analyse(evidence(**evidence_fields), stream_of(items)))


def test_the_evidence_goes_as_json_lines_and_the_analysis_comes_back():
    items = [evidence_event("tab_switch", 0), evidence_event("gaze_away", 1)]
    analysis = run(COUNTING_MODEL, items)
    assert analysis.integrity_score == 0.5
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_INCAPABLE
    assert analysis.learning_momentum_index == -1.5
    assert analysis.llm_summary == "2 events, status ATTEMPT_STATUS_SUBMITTED"
    assert analysis.recommendations == ("tab_switch", "gaze_away")
    assert (analysis.model_name, analysis.model_version) == ("counting", "2")
    assert analysis.event_count == 2


def test_lines_are_proto3_json_with_every_field_present():
    line = json_line(evidence_event("tab_switch", 0, dismissed=True))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    document = json.loads(line)
    assert document["reviewDecision"] == "REVIEW_DECISION_DISMISSED"
    assert document["event"]["occurTime"] == "2026-11-29T10:00:00Z"
    assert document["event"]["description"] == ""  # defaults present, not left out


def test_many_events_stream_through_without_a_deadlock():
    # Far more than a pipe holds: the answer is read while the events are written.
    items = [evidence_event("tab_switch", i) for i in range(5000)]
    assert run(COUNTING_MODEL, items).event_count == 5000


def test_a_command_that_stops_reading_early_is_fine():
    answer = '{"integrity_score": 1, "dropout_label": "SAFE"}'
    items = [evidence_event("tab_switch", i) for i in range(5000)]
    analysis = run(f"print({answer!r})", items)
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_SAFE


def test_a_failing_command_fails_with_its_status_and_stderr():
    program = "import sys; sys.stderr.write('model weights not found'); sys.exit(3)"
    with pytest.raises(ScoringError, match="status 3: model weights not found"):
        run(program)


def test_a_hanging_command_is_killed_at_its_timeout():
    with pytest.raises(ScoringError, match="longer than 0.5 s"):
        run("import time; time.sleep(60)", timeout=0.5)


def test_a_runaway_answer_is_cut_off():
    with pytest.raises(ScoringError, match="more than 1048576 bytes"):
        run("import sys; sys.stdout.write('x' * 3_000_000)")


def test_a_missing_program_fails_the_job():
    scorer = CommandScorer(["/nonexistent/model"], 5)
    with pytest.raises(ScoringError, match="could not start"):
        asyncio.run(scorer.analyse(evidence(), stream_of([])))


@pytest.mark.parametrize(
    ("output", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"dropoutLabel": "SAFE"}', "no integrity_score"),
        (b'{"integrityScore": 0.5}', "no dropout_label"),
        (b'{"integrityScore": 1.5, "dropoutLabel": "SAFE"}', "between 0 and 1"),
        (b'{"integrityScore": "NaN", "dropoutLabel": "SAFE"}', "between 0 and 1"),
        (b'{"integrityScore": 0.5, "dropoutLabel": "MAYBE"}', "not an analysis"),
        (b'{"integrityScore": 0.5, "dropoutLabel": "DROPOUT_LABEL_UNSPECIFIED"}', "SAFE, "),
        (b'{"integrityScore": 0.5, "dropoutLabel": "SAFE", "leaseToken": "x"}', "lease_token"),
        (b'{"integrityScore": 0.5, "dropoutLabel": "SAFE", "recommendations": 3}', "analysis"),
        (
            b'{"integrityScore": 0.5, "dropoutLabel": "SAFE", "learningMomentumIndex": "Infinity"}',
            "finite",
        ),
    ],
)
def test_garbage_answers_are_refused_with_the_reason(output, why):
    with pytest.raises(ScoringError, match=why):
        parse_answer(output)


def test_snake_case_names_and_short_labels_are_accepted():
    analysis = parse_answer(b'{"integrity_score": 0, "dropout_label": "NO_INTEREST"}')
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_NO_INTEREST
    assert analysis.learning_momentum_index is None
