"""Where the database is: VERITAS_DATABASE_URL, else the embedded server under the data dir.

`veritas serve`, `veritas migrate`, `veritas create-user` and plain Alembic all find the
database through this one function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from veritas_grpc.config import data_dir_from


def database_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    url = env.get("VERITAS_DATABASE_URL")
    if url:
        return url
    from veritas_grpc.db.embedded import start_embedded

    return start_embedded(data_dir_from(env))
