"""An upload keeps its sender's name, safe as a file name, with its extension."""

from __future__ import annotations

import pytest

from fanli.interfaces.uploads import upload_name


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("销售 2026年3月 (终版).csv", "销售 2026年3月 (终版).csv"),
        ("C:\\Users\\fay\\销售.xlsx", "销售.xlsx"),  # a browser on Windows sends the path
        ("a/b/../c.csv", "c.csv"),
        ("..", "upload"),
        ("...", "upload"),
        (" .csv", "upload.csv"),
        ("..csv", "upload..csv"),
        ("a.csv. ", "a.csv"),
        ("x\x00y|z?.csv", "x_y_z_.csv"),
        ("", "upload"),
        (None, "upload"),
        ("长" * 100 + ".parquet", "长" * 64 + ".parquet"),  # 200 bytes at the most
    ],
)
def test_upload_names(sent: str | None, kept: str) -> None:
    assert upload_name(sent) == kept
