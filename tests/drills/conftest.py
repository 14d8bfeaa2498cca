"""The long drills: `make drill-pitr` runs them (VERITAS_DRILLS=1), and .ci/run with it;
a plain `pytest` or `make test` skips them."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("VERITAS_DRILLS") == "1":
        return
    skip = pytest.mark.skip(reason="a long drill: make drill-pitr runs it")
    for item in items:
        if "tests/drills/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(skip)
