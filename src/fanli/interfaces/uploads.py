"""Uploaded files: the name a file is kept and shown by, and refusals that name it as sent.

An upload is copied to a temporary folder under its sender's name, so that the batch list and
every message show the name the user knows. The name is cleaned only of what a file name
cannot hold (folders, control characters, characters Windows refuses) and shortened, keeping its
extension, to what a file system allows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

from fanli.kit.errors import InputError

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
# Most file systems allow 255 bytes per name; a temporary copy's folder adds none.
_MOST_BYTES = 200


def upload_name(filename: str | None) -> str:
    """The name an uploaded file is kept by: its sender's, without any folder, cleaned and cut
    to fit a file system (its extension kept, since it says how the file is read)."""
    # A browser on Windows may send C:\Users\...\销售.csv: the last part is the name.
    last = re.split(r"[/\\]", filename or "")[-1]
    name = _UNSAFE.sub("_", last).strip().rstrip(" .")
    if not name.strip("."):
        return "upload"  # nothing but dots: never a folder's name (., ..)
    if name.startswith("."):
        name = "upload" + name  # .csv is a name with an extension, not a hidden file
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    while stem and len((stem + suffix).encode("utf-8")) > _MOST_BYTES:
        stem = stem[:-1]
    return (stem + suffix) if stem else "upload" + suffix


Refusal = TypeVar("Refusal", bound=InputError)


def as_sent(error: Refusal, path: Path, name: str) -> Refusal:
    """``error`` naming the sender's file ``name`` where it named the server's copy ``path``
    (a workbook's sheet, when named, is kept); any other refusal as it is."""
    server = str(path)
    if error.file is None or not (error.file == server or error.file.startswith(server + " ")):
        return error
    return error.naming(name + error.file[len(server) :])
