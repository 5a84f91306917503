"""The auditor's bundle: written for a period with a payout, checked by its own ``verify.py`` in
a separate Python process that may import only the standard library and ``cryptography``, and
refused by it after any edit."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fanli.kit.errors import InputError, NotFoundError
from fanli.oversight.export import export_bundle
from fanli.users.actor import PermissionDeniedError
from store.builders import people, staff
from store.conftest import NOW, Store
from store.test_settlements import World, _world

# Runs verify.py as an auditor would, then lists every top-level module it imported that is
# neither the standard library nor cryptography (and its compiled bindings). It must be empty.
AUDITED_RUN = """
import runpy, sys
before = set(sys.modules)
sys.argv = ["verify.py", sys.argv[1]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as done:
    code = done.code
allowed = set(sys.stdlib_module_names) | {"cryptography", "_openssl", "_cffi_backend", "cffi"}
foreign = sorted({m.split(".")[0] for m in set(sys.modules) - before} - allowed)
print("FOREIGN", foreign)
sys.exit(code)
"""


def _paid(store: Store, tmp_path: Path) -> World:
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id, document_number="CN-0001", key="pay-cn")
    return world


def _export(store: Store, folder: Path, key: Ed25519PrivateKey) -> dict[str, object]:
    with store.work() as session:
        return export_bundle(session, "2026-11", folder, key, actor=staff("eve"), now=NOW)


def _check(folder: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", AUDITED_RUN, str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stderr == ""
    return done.returncode, done.stdout


def test_a_bundle_verifies_on_its_own(store: Store, tmp_path: Path) -> None:
    _paid(store, tmp_path)
    key = Ed25519PrivateKey.generate()
    folder = tmp_path / "bundle"
    manifest = _export(store, folder, key)
    body = manifest["body"]
    assert isinstance(body, dict)
    assert sorted(body["files"]) == [
        "README.txt",
        "checkpoints.jsonl",
        "event_hashes.txt",
        "events.jsonl",
        "journal.csv",
        "payouts.csv",
        "public_key.pem",
        "settlements.csv",
        "verify.py",
    ]
    with (folder / "payouts.csv").open(encoding="utf-8") as stream:
        payouts = list(csv.DictReader(stream))
    assert [(p["form"], p["amount"], p["document_number"]) for p in payouts] == [
        ("credit_note", "200.0000", "CN-0001")  # as stored: four places (the bundle is the store)
    ]
    code, out = _check(folder)
    assert code == 0, out
    assert "FOREIGN []" in out
    assert "ok      1 payouts match their audit events" in out
    assert f"checkpoints match; the latest covers events 1 to {body['events_total']}" in out
    assert out.splitlines()[-2] == "the bundle verifies"


@pytest.mark.parametrize(
    ("file", "old", "new", "finding"),
    [
        ("payouts.csv", "200.0000", "2000.0000", "payouts.csv differs from the manifest"),
        ("events.jsonl", '"200.00"', '"2000.00"', "was changed"),
        ("event_hashes.txt", "0", "1", "do not match it, so history was rewritten"),
        ("checkpoints.jsonl", '"tree_size":', '"tree_size":1', "signature does not verify"),
    ],
)
def test_any_edit_to_a_bundle_is_refused(  # noqa: PLR0917
    store: Store, tmp_path: Path, file: str, old: str, new: str, finding: str
) -> None:
    _paid(store, tmp_path)
    folder = tmp_path / "bundle"
    _export(store, folder, Ed25519PrivateKey.generate())
    path = folder / file
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")
    code, out = _check(folder)
    assert code == 1
    assert finding in out, out
    assert out.splitlines()[-2] == "the bundle does NOT verify"


def test_a_bundle_signed_by_another_key_is_refused(store: Store, tmp_path: Path) -> None:
    _paid(store, tmp_path)
    folder = tmp_path / "bundle"
    _export(store, folder, Ed25519PrivateKey.generate())
    other = Ed25519PrivateKey.generate().public_key()
    (folder / "public_key.pem").write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, out = _check(folder)
    assert code == 1
    assert "FAILED  the manifest's signature does not verify with this public key" in out


def test_export_refusals(store: Store, tmp_path: Path) -> None:
    _paid(store, tmp_path)
    key = Ed25519PrivateKey.generate()
    with store.work() as session, pytest.raises(NotFoundError, match="no accounting period"):
        export_bundle(session, "2031-01", tmp_path / "b", key, actor=staff("eve"), now=NOW)
    # a code that names no month is said to be one, not a period not yet opened
    with store.work() as session, pytest.raises(InputError) as raised:
        export_bundle(session, "2026-13", tmp_path / "b", key, actor=staff("eve"), now=NOW)
    assert str(raised.value) == "'2026-13' is not an accounting period (YYYY-MM)"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with store.work() as session, pytest.raises(InputError, match="is not empty"):
        export_bundle(session, "2026-11", tmp_path / "full", key, actor=staff("eve"), now=NOW)
    with store.work() as session:
        fay = people(session, NOW)["fay"]
    with store.work() as session, pytest.raises(PermissionDeniedError, match="export audit"):
        export_bundle(session, "2026-11", tmp_path / "c", key, actor=fay, now=NOW)
    assert not (tmp_path / "c").exists()
