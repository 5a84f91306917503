"""The sales fact store: one immutable Parquet file per import batch, named by content hash.

Files are written once, to a temporary name and then renamed, so a reader never sees half a
file and a crash leaves at most an unregistered file (which a later import of the same content
reuses). Lines are sorted by invoice date in row groups of 128 Ki lines: the engine's date
bounds then skip whole row groups by their statistics. Snappy, not zstd: the files are read on
every accrual run, and snappy writes and reads faster for a modest size cost.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from fanli.kit import duck
from fanli.kit.sql import sql_literal

ROW_GROUP_LINES = 128 * 1024
LINK_COLUMN = "original_line_id"  # the invoice line a return reverses, or null


def durable_replace(partial: Path, final: Path) -> None:
    """Move a fully written file into place so that it survives a crash: the file's bytes and
    then the directory entry reach the disk before the database row that names it commits."""
    with partial.open("rb") as stream:
        os.fsync(stream.fileno())
    os.replace(partial, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class FactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def write_batch(self, table: pa.Table, content_hash: str) -> str:
        """Write ``table`` (sorted by invoice date) as ``sales-<hash>.parquet``; its name."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"sales-{content_hash}.parquet"
        final = self.root / name
        # A file of this name is never registered here (the import would have been recognised):
        # at most one left by a rolled-back import, perhaps with another mapping. Rewrite it.
        if LINK_COLUMN not in table.column_names:
            # every batch file has the same columns, so that they can be read as one
            table = table.append_column(LINK_COLUMN, pa.nulls(table.num_rows, pa.string()))
        partial = self.root / f".{name}.{os.getpid()}.partial"
        # DuckDB sorts and encodes on every core; pyarrow's writer would use one.
        # A database of its own, closed after: the sort's peak memory goes with it (kit.duck).
        with duckdb.connect() as connection:
            connection.register("batch", table)
            connection.execute(
                f"""COPY (SELECT * FROM batch ORDER BY invoice_date) TO {sql_literal(partial)}
                (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE {ROW_GROUP_LINES})"""
            )
        durable_replace(partial, final)
        return name

    def write_results(self, table: pa.Table, run_id: int) -> tuple[str, str]:
        """Write an accrual run's result rows; (file name, sha256 of the file)."""
        directory = self.root / "results"
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".run-{run_id}.{os.getpid()}.partial"
        with duck.connection() as connection:
            connection.register("results", table)
            connection.execute(
                f"COPY results TO {sql_literal(partial)} (FORMAT parquet, COMPRESSION snappy)"
            )
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        # Named by run and content: a rolled-back run's file never takes another's name.
        name = f"results/run-{run_id}-{digest[:16]}.parquet"
        durable_replace(partial, self.root / name)
        return name, digest
