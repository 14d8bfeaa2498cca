"""The drills of their own (point-in-time recovery, failover): marked `drill` as a whole, so that
`make drills` runs them and a plain `pytest` or `make test` skips them (tests/conftest.py)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/drills/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.drill)
