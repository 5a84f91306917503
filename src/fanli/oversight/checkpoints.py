"""Signed checkpoints of the audit trail: an RFC 6962 tree head over every event so far, signed
with the operator's Ed25519 key.

The operator makes the key once (``fanli audit key``) and keeps the private half where the
database's administrators cannot reach it. Auditors receive the public half. Each checkpoint is:
- stored in the database, so that exports can carry it;
- appended, one JSON line each, to a checkpoint file that auditors copy and keep outside the
  database.

A checkpoint held outside is what makes a rewritten history detectable. Someone who can write
to the database could recompute every hash after the event they changed, but could not re-sign
the tree head an auditor already holds.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.audit.models import AuditCheckpoint
from fanli.audit.service import record
from fanli.audit.trail import event_hashes
from fanli.audit.verifier import GENESIS, canonical, key_id, signed_text, tree_head
from fanli.db.session import Lock, serialize
from fanli.kit.errors import InputError, said
from fanli.users.actor import Actor, Role, require

SIGNING_KEY = "audit-signing-key.pem"
PUBLIC_KEY = "audit-public-key.pem"


def create_key(folder: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair in ``folder``: the private key readable by its owner only, and
    the public key to hand to auditors. An existing key is never overwritten."""
    private_path, public_path = folder / SIGNING_KEY, folder / PUBLIC_KEY
    if private_path.exists() or public_path.exists():
        raise InputError.said_at(
            "{private} or {public} exists already; keys are not replaced",
            private=str(private_path),
            public=str(public_path),
        )
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise InputError.said_at(
            "{path}: not a readable Ed25519 private key ({problem})",
            path=str(path),
            problem=str(error),
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError.said_at("{path}: not an Ed25519 private key", path=str(path))
    return key


def make_checkpoint(
    session: Session, key: Ed25519PrivateKey, *, actor: Actor, now: dt.datetime
) -> dict[str, Any]:
    """Record that a checkpoint is made, then sign the tree head of every event so far, that
    event included (so a checkpoint always covers itself), and store it."""
    require(actor, Role.ADMINISTRATOR, Role.INTERNAL_AUDITOR, to=said("make audit checkpoints"))
    record(
        session,
        type="audit.checkpoint.made",
        actor=actor.code,
        entity_type="audit_trail",
        entity_id="checkpoint",  # its tree head covers this very event, so it cannot hold it
        inputs={"key_id": key_id(key.public_key())},
        outcome={},
        now=now,
    )
    return sign_trail(session, key, now=now)


def sign_trail(session: Session, key: Ed25519PrivateKey, *, now: dt.datetime) -> dict[str, Any]:
    """Sign and store the tree head of every event so far. The caller has just recorded the
    event that asks for it (a checkpoint, an export), so the checkpoint covers that event too.

    The chain lock (taken by that ``record``) is held to the end of the transaction, so no
    other event can fall between the last event and the signature."""
    serialize(session, Lock.AUDIT_CHAIN)
    public_id = key_id(key.public_key())
    hashes = event_hashes(session)
    body: dict[str, Any] = {
        "tree_size": len(hashes),
        "root_hash": tree_head(bytes.fromhex(h) for h in hashes).hex(),
        "last_hash": hashes[-1] if hashes else GENESIS,
        "made_at": now.astimezone(dt.UTC).isoformat(),
        "key_id": public_id,
    }
    signature = base64.b64encode(key.sign(signed_text(body))).decode("ascii")
    checkpoint = {**body, "signature": signature}
    session.add(
        AuditCheckpoint(
            tree_size=body["tree_size"],
            root_hash=body["root_hash"],
            last_hash=body["last_hash"],
            made_at=now,
            key_id=public_id,
            signature=signature,
            document=canonical(checkpoint),
        )
    )
    session.flush()
    return checkpoint


def append_to_file(path: Path, checkpoint: dict[str, Any]) -> None:
    """Append one checkpoint line to ``path`` and make sure it reached the disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(canonical(checkpoint) + "\n")
        out.flush()
        os.fsync(out.fileno())


def stored_checkpoints(session: Session) -> list[dict[str, Any]]:
    """The checkpoints the database holds, oldest first (exports carry them)."""
    rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id))
    return [json.loads(row.document) for row in rows]
