"""Reference scorers as a fleet: three drain 60 jobs (500 in `make drills`), each
completed exactly once; a
SIGKILLed one's jobs are redelivered when their leases expire, and a late save with an
old lease is refused; SIGTERM finishes in-flight jobs within the grace or releases them."""

from __future__ import annotations

import signal
import sys

import grpc
import pytest
from veritas.v1 import analysis_pb2, analysis_pb2_grpc, auth_pb2_grpc, common_pb2

from tests.e2e.conftest import login
from tests.e2e.scorer_world import ScorerWorld, ended_attempts, scorer_world, wait_until
from veritas_grpc.domain.identity import Role

pytestmark = pytest.mark.timeout(120)
# Shortest lease the contract allows: expiry is what the kill test waits for.
SHORT_LEASE = "10"


@pytest.fixture(scope="module")
def world(fresh_database):
    yield from scorer_world(fresh_database, analysis_retry_base_seconds=0.5)


@pytest.fixture(autouse=True)
def scorers_log_no_error(world: ScorerWorld):
    yield
    for scorer in world.scorers:
        scorer.stop()
        assert not scorer.errors(), scorer.errors()
    world.scorers.clear()


def _states(world: ScorerWorld, attempts: list[str]) -> dict[str, int]:
    states: dict[str, int] = {}
    for job in world.jobs_of(attempts):
        states[job["state"]] = states.get(job["state"], 0) + 1
    return states


def _all_in(world: ScorerWorld, attempts: list[str], state: str) -> bool:
    return _states(world, attempts) == {state: len(attempts)}


def _sleeper(tmp_path, seconds: float) -> str:
    """A --command that takes `seconds` and then answers."""
    program = tmp_path / f"sleep_{seconds}.py"
    program.write_text(
        "import sys, time\nsys.stdin.read()\n"
        f"time.sleep({seconds})\n"
        'print(\'{"integrityScore": 0.9, "dropoutLabel": "SAFE"}\')\n'
    )
    return f"{sys.executable} {program}"


@pytest.mark.parametrize("count", [60, pytest.param(500, marks=pytest.mark.drill)])
def test_three_scorers_drain_the_jobs_each_completed_exactly_once(world, count):
    attempts = ended_attempts(world.engine, count, events_per_attempt=3)
    scorers = [world.scorer("--concurrency", "4") for _ in range(3)]

    wait_until(lambda: _all_in(world, attempts, "DONE"), 30 + count / 5, f"all {count} jobs DONE")
    assert world.analyses_per_attempt(attempts) == {a: 1 for a in attempts}
    jobs = world.jobs_of(attempts)
    assert len({job["analysis_id"] for job in jobs}) == count
    assert all(job["failed_tries"] == 0 for job in jobs)
    for scorer in scorers:
        scorer.signal(signal.SIGTERM)
    assert [scorer.wait() for scorer in scorers] == [0, 0, 0]
    lines = [line for scorer in scorers for line in scorer.jobs()]
    assert len(lines) == count and {line["outcome"] for line in lines} == {"done"}
    assert len({line["job_id"] for line in lines}) == count


@pytest.mark.drill  # ~20 s: leases left to expire after a SIGKILL
def test_a_killed_scorers_jobs_are_redelivered_and_a_late_save_is_refused(world, tmp_path):
    # Meanwhile a live scorer's work outlasts its lease: extended, so it keeps the job.
    (long_work,) = ended_attempts(world.engine, 1)
    patient = world.scorer(
        "--concurrency", "1", "--lease-seconds", SHORT_LEASE, "--grace-seconds", "0.5",
        "--command", _sleeper(tmp_path, 13),
    )  # fmt: skip
    wait_until(lambda: _all_in(world, [long_work], "LEASED"), 30, "the patient scorer leases")
    held = ended_attempts(world.engine, 3)
    hanging = world.scorer(
        "--concurrency", "3", "--lease-seconds", SHORT_LEASE, "--command", _sleeper(tmp_path, 600)
    )
    wait_until(lambda: _all_in(world, held, "LEASED"), 30, "the hanging scorer leases all 3")
    # This test is a slow replica too: it leases one more job and sits on it.
    (late,) = ended_attempts(world.engine, 1)
    replica = login(auth_pb2_grpc.AuthServiceStub(world.channel), world.account(Role.SERVICE))
    queue = analysis_pb2_grpc.AnalysisServiceStub(world.channel)
    (lease,) = queue.ClaimAnalysisJobs(
        analysis_pb2.ClaimAnalysisJobsRequest(max_jobs=1, lease_seconds=10),
        metadata=replica.metadata,
    ).leases
    assert lease.job.attempt_id == late
    hanging.signal(signal.SIGKILL)
    hanging.wait()

    world.scorer()  # takes over once the leases expire
    (done,) = patient.wait_for_jobs("done", timeout=60)
    assert done["attempt_id"] == long_work and done["seconds"] > int(SHORT_LEASE)
    patient.signal(signal.SIGTERM)
    (job,) = world.jobs_of([long_work])
    assert job["state"] == "DONE" and job["failed_tries"] == 0  # never expired
    everything = [*held, late]
    wait_until(lambda: _all_in(world, everything, "DONE"), 60, "the jobs redelivered and done")
    assert world.analyses_per_attempt(everything) == {a: 1 for a in everything}
    for job in world.jobs_of(everything):
        assert job["failed_tries"] == 1  # the expired lease counts as a failed try
    with pytest.raises(grpc.RpcError) as refused:
        queue.CreateBehaviorAnalysis(
            analysis_pb2.CreateBehaviorAnalysisRequest(
                attempt_id=late,
                integrity_score=0.1,
                dropout_label=common_pb2.DROPOUT_LABEL_COPY,
                request_id="the-slow-replica",
                lease_token=lease.lease_token,
            ),
            metadata=replica.metadata,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert world.analyses_per_attempt([late]) == {late: 1}  # nothing was overwritten


def test_sigterm_finishes_jobs_within_the_grace_and_releases_the_rest(world, tmp_path):
    slow = ended_attempts(world.engine, 2)
    releasing = world.scorer(
        "--concurrency", "2", "--grace-seconds", "1", "--command", _sleeper(tmp_path, 600)
    )
    wait_until(lambda: _all_in(world, slow, "LEASED"), 30, "the slow scorer leases both")
    quick = ended_attempts(world.engine, 1)
    finishing = world.scorer(
        "--concurrency", "1", "--grace-seconds", "30", "--command", _sleeper(tmp_path, 1.5)
    )
    wait_until(lambda: _all_in(world, quick, "LEASED"), 30, "the other scorer leases its job")

    releasing.signal(signal.SIGTERM)
    finishing.signal(signal.SIGTERM)
    assert releasing.wait() == 0 and finishing.wait() == 0
    assert [line["outcome"] for line in releasing.jobs()] == ["released", "released"]
    assert [line["outcome"] for line in finishing.jobs()] == ["done"]
    assert _all_in(world, quick, "DONE")
    # Released, not failed: claimable at once, no try counted.
    assert _all_in(world, slow, "PENDING")
    assert all(job["failed_tries"] == 0 for job in world.jobs_of(slow))
    world.scorer()
    wait_until(lambda: _all_in(world, slow, "DONE"), 30, "the released jobs done by another")
