"""The --command protocol, both ways, without the process around it.

To the command (its standard input), JSON lines in proto3 JSON (lowerCamelCase names,
enums by name, Timestamps as RFC 3339 strings, int64 as strings), every field present
even at its default:

    line 1      the AttemptEvidence (attempt, behaviorRules, studentPerformance,
                currentAnalysis, eventCount)
    lines 2...  one EvidenceEvent each ({"event": {...}, "reviewDecision": ...}), in
                (occurTime, eventId) order; then end of input

From the command (its standard output): one JSON object with the fields of
CreateBehaviorAnalysisRequest that a model sets, in proto3 JSON (snake_case names are
accepted too):

    integrityScore         required, 0 to 1
    dropoutLabel           required: "DROPOUT_LABEL_SAFE" (or "SAFE"), ..._INCAPABLE,
                           ..._COPY, ..._NO_INTEREST
    learningMomentumIndex  optional, any finite number
    llmSummary, llmReasoning, recommendations (a list of strings), model
                           ({"name": ..., "version": ...})

Any other field (attemptId, leaseToken, requestId: the scorer sets those) or anything
that is not such an object is a garbage answer: the job fails with the reason.
"""

from __future__ import annotations

import json
import math

from google.protobuf import json_format
from google.protobuf.message import Message
from veritas.v1 import analysis_pb2, common_pb2

from veritas_grpc.scorer.analysis import Analysis


class ScoringError(Exception):
    """The analysis could not be computed: the job fails with this message as reason."""


ANSWER_FIELDS = frozenset(
    {
        "integrity_score",
        "dropout_label",
        "learning_momentum_index",
        "llm_summary",
        "llm_reasoning",
        "recommendations",
        "model",
    }
)
_LABEL_PREFIX = "DROPOUT_LABEL_"


def json_line(message: Message) -> bytes:
    document = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _normalised(document: object) -> dict[str, object]:
    if not isinstance(document, dict):
        raise ScoringError("the answer is not a JSON object")
    answer = {_snake(key): value for key, value in document.items()}
    unknown = sorted(set(answer) - ANSWER_FIELDS)
    if unknown:
        raise ScoringError(f"the answer has fields a model does not set: {', '.join(unknown)}")
    for required in ("integrity_score", "dropout_label"):
        if required not in answer:
            raise ScoringError(f"the answer has no {required}")
    label = answer["dropout_label"]
    if isinstance(label, str) and not label.startswith(_LABEL_PREFIX):
        answer["dropout_label"] = _LABEL_PREFIX + label
    return answer


def parse_answer(output: bytes) -> Analysis:
    """The command's standard output as an Analysis, or ScoringError saying why not."""
    try:
        document = json.loads(output)
    except ValueError as error:
        raise ScoringError(f"the answer is not JSON: {error}") from None
    request = analysis_pb2.CreateBehaviorAnalysisRequest()
    try:
        json_format.ParseDict(_normalised(document), request)
    except json_format.ParseError as error:
        raise ScoringError(f"the answer is not an analysis: {error}") from None
    if not (math.isfinite(request.integrity_score) and 0 <= request.integrity_score <= 1):
        raise ScoringError("integrity_score must be between 0 and 1")
    if request.dropout_label == common_pb2.DROPOUT_LABEL_UNSPECIFIED:
        raise ScoringError("dropout_label must be SAFE, INCAPABLE, COPY or NO_INTEREST")
    lmi = None
    if request.HasField("learning_momentum_index"):
        lmi = request.learning_momentum_index
        if not math.isfinite(lmi):
            raise ScoringError("learning_momentum_index must be a finite number")
    return Analysis(
        integrity_score=request.integrity_score,
        dropout_label=request.dropout_label,
        learning_momentum_index=lmi,
        llm_summary=request.llm_summary,
        llm_reasoning=request.llm_reasoning,
        recommendations=tuple(request.recommendations),
        model_name=request.model.name,
        model_version=request.model.version,
    )
