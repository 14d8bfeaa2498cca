"""Storage parameters for the exam-day tables (migration 0014; figures in
docs/BENCH_STORAGE.md).

Both tables are append-only: rows are inserted, never updated in place (save an
erasure's rare redaction of audit rows), and leave in bulk (a day's partition dropped, a
prefix of the audit chain pruned). So pages are filled to the brim (no room kept for
updates that never come), and autovacuum is triggered by row counts, not by a fraction
of the table: with the default fractions (20% of the rows inserted or dead), a daily
partition of 30 million events is vacuumed once per 6 million new rows, leaving that
many not all-visible (index-only scans fall back to the heap, and the next vacuum or the
anti-wraparound one has it all to do), and a pruned audit prefix waits for a fifth of the
table to be dead before its space is reused.

PostgreSQL takes no storage parameters on a partitioned table ("cannot specify storage
parameters for a partitioned table"), and partitions do not inherit any: each daily
partition gets them when it is created (repositories/partitions.py), and the migration
set them on those that existed.
"""

from __future__ import annotations

# Vacuum and analyze after this many new rows, whatever the partition's size.
_ROWS_BETWEEN_VACUUMS = 100_000

EVENT_PARTITION_STORAGE: dict[str, str] = {
    "fillfactor": "100",
    "autovacuum_vacuum_insert_threshold": str(_ROWS_BETWEEN_VACUUMS),
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_analyze_threshold": str(_ROWS_BETWEEN_VACUUMS),
    "autovacuum_analyze_scale_factor": "0",
}

AUDIT_LOG_STORAGE: dict[str, str] = {
    "fillfactor": "100",
    "autovacuum_vacuum_insert_threshold": str(_ROWS_BETWEEN_VACUUMS),
    "autovacuum_vacuum_insert_scale_factor": "0",
    # Dead rows come from pruning, a whole prefix at a time: reclaim it soon after.
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_scale_factor": "0",
}


def storage_clause(parameters: dict[str, str]) -> str:
    """The parameters as `WITH (...)` or `SET (...)` take them."""
    return ", ".join(f"{name} = {value}" for name, value in parameters.items())
