"""The reference scorer: a worker of the analysis queue, written against the public gRPC
API only (generated stubs over a real channel, signed in as a SERVICE account), so that
it doubles as the example for teams writing their own.

    claim (ClaimAnalysisJobs, long poll) -> read (GetAttemptEvidence, a stream)
    -> score (the built-in rules, or an external --command) -> save
    (CreateBehaviorAnalysis with the lease token) | FailAnalysisJob | ReleaseAnalysisJob

It imports the generated stubs and the built-in rules (veritas_grpc.domain.scoring),
nothing else of the server (an import-linter contract in pyproject.toml holds that).
"""
