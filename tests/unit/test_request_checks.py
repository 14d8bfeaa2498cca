"""The NUL walk over any request message, and the bounds on what a status echoes."""

from google.protobuf import struct_pb2
from veritas.v1 import analysis_pb2, resources_pb2, teacher_pb2

from veritas_grpc.interceptors.errors import clip
from veritas_grpc.interceptors.request_checks import nul_paths


def test_paths_reach_nested_repeated_and_map_strings():
    exam = teacher_pb2.CreateExamRequest(
        exam=resources_pb2.Exam(
            title="a\x00",
            behavior_rules=[
                resources_pb2.BehaviorRule(event_type="ok"),
                resources_pb2.BehaviorRule(event_type="\x00"),
            ],
        )
    )
    assert list(nul_paths(exam)) == ["exam.title", "exam.behavior_rules[1].event_type"]
    analysis = analysis_pb2.CreateBehaviorAnalysisRequest(recommendations=["a", "b\x00", "c"])
    assert list(nul_paths(analysis)) == ["recommendations[1]"]
    value = struct_pb2.Struct()
    value.update({"fine": "x", "bad\x00key": "y", "list": ["ok", "n\x00"]})
    assert sorted(nul_paths(value)) == [
        "fields",
        "fields['list'].list_value.values[1].string_value",
    ]


def test_requests_without_nul_have_no_paths():
    assert list(nul_paths(teacher_pb2.CreateExamRequest(exam=resources_pb2.Exam(title="t")))) == []


def test_clip_counts_utf8_bytes_and_marks_the_cut():
    assert clip("short", 10) == "short"
    cut = clip("é" * 100, 20)
    assert cut.endswith("…") and len(cut.encode()) <= 20
    assert clip("x" * 20_000, 120) == "x" * 117 + "…"
