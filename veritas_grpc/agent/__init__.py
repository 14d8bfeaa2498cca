"""The client library for monitoring agents (README, "The agent library").

    from veritas_grpc.agent import Agent, PasswordCredentials

    with Agent("exam.example.edu:50051", PasswordCredentials(email, password),
               attempt_id, spool_path="agent.spool") as agent:
        agent.record("gaze_away", "WARNING", is_anomaly=True, data={"seconds": 4.2})

It imports nothing of the server: the generated stubs (veritas.v1), grpc and the
standard library only (an import-linter contract in pyproject.toml holds it to that).
"""

from veritas_grpc.agent.agent import Agent, AgentStats
from veritas_grpc.agent.credentials import Credentials, PasswordCredentials, TokenCredentials
from veritas_grpc.agent.sender import Rejected
from veritas_grpc.agent.session import SignInFailed
from veritas_grpc.agent.spool import SpoolInUse

__all__ = [
    "Agent",
    "AgentStats",
    "Credentials",
    "PasswordCredentials",
    "Rejected",
    "SignInFailed",
    "SpoolInUse",
    "TokenCredentials",
]
