"""What the `veritas` commands share."""

from __future__ import annotations

from veritas_grpc import bootstrap
from veritas_grpc.config import ConfigError, load_settings
from veritas_grpc.db.locate import database_url


def audited_services(command: str) -> bootstrap.Services:
    """The services, for a command that writes to the audit trail: that needs the secret
    the server seals the chain with, or the rows could never be verified."""
    settings = load_settings(require_secret=False)
    if bootstrap.audit_chain_keys(settings) is None:
        raise ConfigError(
            f"{command} writes to the audit trail, which is sealed with the server's "
            "secret: set VERITAS_AUDIT_SECRET (or VERITAS_JWT_SECRET) as the server has it"
        )
    return bootstrap.build_services(settings, database_url())
