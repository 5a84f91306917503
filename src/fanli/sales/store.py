"""The sales fact store: one immutable Parquet file per import batch, named by content hash.

Files are written once, to a temporary name and then renamed, so a reader never sees half a
file and a crash leaves at most an unregistered file (which a later import of the same content
reuses). Lines are sorted by invoice date in row groups of 128 Ki lines: the engine's date
bounds then skip whole row groups by their statistics.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_LINES = 128 * 1024


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
        if final.exists():
            return name
        ordered = table.sort_by([("invoice_date", "ascending"), ("line_id", "ascending")])
        partial = self.root / f".{name}.{os.getpid()}.partial"
        pq.write_table(ordered, partial, row_group_size=ROW_GROUP_LINES, compression="zstd")
        os.replace(partial, final)
        return name
