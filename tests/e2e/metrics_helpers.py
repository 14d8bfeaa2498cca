"""Scraping a server's /metrics in tests: samples by name and labels, and differences."""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

# (sample name, sorted label pairs)
Key = tuple[str, tuple[tuple[str, str], ...]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(address: str) -> dict[Key, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def moved(before: dict[Key, float], after: dict[Key, float], name: str) -> Counter[Key]:
    """How each sample of `name` moved between two scrapes (those that did not, left out)."""
    deltas: Counter[Key] = Counter()
    for sample, value in after.items():
        if sample[0] == name and value != before.get(sample, 0.0):
            deltas[sample] = value - before.get(sample, 0.0)
    return deltas


def grpc_key(name: str, service: str, method: str, grpc_type: str, **more: str) -> Key:
    return key(
        name,
        grpc_service=f"veritas.v1.{service}",
        grpc_method=method,
        grpc_type=grpc_type,
        **more,
    )
