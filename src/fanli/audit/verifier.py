"""Checking Fanli's audit trail without trusting Fanli.

This one file is all an auditor needs. It imports only the Python standard library and
``cryptography``, and ``fanli audit export`` copies it unchanged into every bundle as
``verify.py``. Fanli's own ``fanli audit verify`` runs the same functions over the database, so
there is one implementation, and the test suite exercises it.

What it checks:

- **The chain.** Each event's ``hash`` is the sha256 of the canonical JSON of its fields, and
  those fields include ``prev_hash``, the previous event's hash. The first event's ``prev_hash`` is
  64 zeros. Canonical JSON sorts keys, puts no spaces and keeps non-ASCII text as UTF-8.
  ``first_break`` names the first event that does not match and says how it fails: changed,
  missing, inserted, or moved.
- **Checkpoints.** A checkpoint is an RFC 6962 Merkle tree head over the hashes of the first
  ``tree_size`` events, signed with the operator's Ed25519 key. Auditors keep the checkpoints
  outside the database. Someone who can write to the database could rewrite an event and then
  recompute every later hash; the chain would look intact, but the tree head of an earlier
  checkpoint would not match. Deleting the newest events shows the same way: the checkpoint
  counts more events than remain.

Run it on a bundle with ``python verify.py BUNDLE_DIRECTORY``. It prints what it checked, and
exits 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS: Final = "0" * 64

# The fields an event's hash covers. The hash itself is stored beside them.
HASHED_FIELDS: Final = (
    "seq",
    "occurred_at",
    "type",
    "actor",
    "entity_type",
    "entity_id",
    "inputs",
    "outcome",
    "prev_hash",
)

# The fields a checkpoint's signature covers.
CHECKPOINT_FIELDS: Final = ("tree_size", "root_hash", "last_hash", "made_at", "key_id")


def canonical(value: Any) -> str:
    """Canonical JSON of a value that is already plain (str, int, bool, None, list, dict)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of an event's ``HASHED_FIELDS``, in hex."""
    body = canonical({name: fields[name] for name in HASHED_FIELDS})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# ---- RFC 6962 Merkle tree heads --------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class TreeHeads:
    """Merkle tree heads of a growing list of leaves, in one pass.

    It keeps the roots of the perfect subtrees along the right edge (at most log2(n) of them).
    The head of n leaves folds them from the right. That is RFC 6962's tree, in which the left
    subtree holds the largest power of two below n. Heads for many sizes cost one pass over the
    leaves."""

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[tuple[int, bytes]] = []  # (height, root) of perfect subtrees

    def append(self, leaf: bytes) -> None:
        height, node = 0, leaf_hash(leaf)
        while self._edge and self._edge[-1][0] == height:
            _, left = self._edge.pop()
            node = node_hash(left, node)
            height += 1
        self._edge.append((height, node))
        self.size += 1

    def head(self) -> bytes:
        if not self._edge:
            return hashlib.sha256(b"").digest()
        root = self._edge[-1][1]
        for _, left in reversed(self._edge[:-1]):
            root = node_hash(left, root)
        return root


def tree_head(leaves: Iterable[bytes]) -> bytes:
    """The RFC 6962 Merkle tree head over ``leaves`` (the data, not yet hashed)."""
    heads = TreeHeads()
    for leaf in leaves:
        heads.append(leaf)
    return heads.head()


# ---- the chain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first event that does not match, and how."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"event {self.seq}: {self.reason}"


def _hash_as(event: Mapping[str, Any], seq: int) -> str:
    return event_hash({**event, "seq": seq})


def first_break(events: Iterable[Mapping[str, Any]]) -> Break | None:
    """The first event of ``events`` (in ``seq`` order) that does not match, or None.

    Each event is a mapping of ``HASHED_FIELDS`` and ``hash``; one that could not even be read
    carries its reason in ``unreadable``. When an event fails, its neighbours are consulted to
    say what happened and to name the right event: deleting an event and renumbering the rest,
    or inserting one, shifts the later events by one, and their hashes (which cover ``seq``)
    still match their old positions."""
    previous = GENESIS
    expected = 1
    rows = iter(events)
    event = next(rows, None)
    while event is not None:
        following = next(rows, None)
        seq = event["seq"]
        if seq != expected:
            return Break(
                expected, f"missing: the chain goes from event {expected - 1} to event {seq}"
            )
        if event.get("unreadable"):
            return Break(seq, f"changed: {event['unreadable']}")
        if _hash_as(event, seq) != event["hash"]:
            if seq > 1 and _hash_as(event, seq - 1) == event["hash"]:
                return Break(
                    seq - 1,
                    f"inserted: event {seq} holds what was event {seq - 1}, so an event was "
                    f"put in at {seq - 1} and the later ones renumbered",
                )
            if _hash_as(event, seq + 1) == event["hash"]:
                if following is not None and following["hash"] == event["prev_hash"]:
                    return Break(seq, f"moved: events {seq} and {seq + 1} changed places")
                return Break(
                    seq,
                    f"missing: event {seq} holds what was event {seq + 1}, so event {seq} was "
                    "deleted and the later ones renumbered",
                )
            return Break(seq, "changed: its hash does not match its content")
        if event["prev_hash"] != previous:
            if following is not None and _hash_as(following, seq) == following["hash"]:
                return Break(
                    seq,
                    f"inserted: it links to no earlier event, and event {seq + 1} holds what "
                    f"was event {seq}, so this one was put in and the later ones renumbered",
                )
            if seq == 1:
                return Break(1, "changed: the first event does not start the chain")
            return Break(
                seq - 1,
                f"changed: event {seq} names another predecessor, so event {seq - 1} was "
                "changed and its hash recomputed",
            )
        previous = event["hash"]
        expected += 1
        event = following
    return None


# ---- checkpoints -----------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of sha256 of its bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_text(checkpoint: Mapping[str, Any]) -> bytes:
    """What a checkpoint's signature covers: the canonical JSON of ``CHECKPOINT_FIELDS``."""
    return canonical({name: checkpoint[name] for name in CHECKPOINT_FIELDS}).encode("utf-8")


def signature_holds(checkpoint: Mapping[str, Any], public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(base64.b64decode(checkpoint["signature"]), signed_text(checkpoint))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key


def read_checkpoints(path: Path) -> list[dict[str, Any]]:
    """The checkpoints in a checkpoint file: one JSON object per line."""
    found = []
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text, so not a checkpoint file") from error
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error.msg})") from error
    return found


@dataclass(frozen=True)
class CheckpointReport:
    checked: int  # checkpoints whose tree head matched
    covered: int  # events covered by the largest matching checkpoint
    problems: list[str]
    first_missing: int | None = None  # an event a checkpoint counts that is not there


def check_checkpoints(
    hashes: Sequence[str], checkpoints: Iterable[Mapping[str, Any]], public_key: Ed25519PublicKey
) -> CheckpointReport:
    """Check the event hashes (``hashes[i]`` is event i + 1's) against signed checkpoints.

    Every checkpoint's signature must verify with ``public_key``. Its tree head must be that
    of the first ``tree_size`` hashes, and its ``last_hash`` that of event ``tree_size``. The
    heads come from one pass over the hashes, however many checkpoints there are."""
    wanted = sorted(checkpoints, key=lambda c: int(c.get("tree_size", 0)))
    problems: list[str] = []
    checked = covered = 0
    first_missing = None
    matched_size = 0
    heads = TreeHeads()
    for checkpoint in wanted:
        size = int(checkpoint.get("tree_size", 0))
        label = f"checkpoint of {size} events made {checkpoint.get('made_at')}"
        if not signature_holds(checkpoint, public_key):
            problems.append(f"{label}: its signature does not verify with this public key")
            continue
        if size > len(hashes):
            first_missing = len(hashes) + 1 if first_missing is None else first_missing
            problems.append(
                f"{label}: the trail has only {len(hashes)} events, so events "
                f"{len(hashes) + 1} to {size} are missing"
            )
            continue
        while heads.size < size:
            heads.append(bytes.fromhex(hashes[heads.size]))
        if heads.head().hex() != checkpoint["root_hash"] or (
            size and hashes[size - 1] != checkpoint.get("last_hash")
        ):
            problems.append(
                f"{label}: the first {size} events do not match it, so history was rewritten "
                f"between event {matched_size + 1} and event {size}"
            )
            continue
        checked += 1
        covered = max(covered, size)
        matched_size = size
    return CheckpointReport(checked, covered, problems, first_missing)


# ---- an auditor bundle -----------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_bundle(folder: Path) -> tuple[list[str], list[str]]:
    """Check a bundle written by ``fanli audit export``: (what held, what did not)."""
    held: list[str] = []
    failed: list[str] = []
    public_key = load_public_key((folder / "public_key.pem").read_bytes())
    held.append(f"public key {key_id(public_key)} (compare it with the one you were given)")

    # 1. The manifest names every file and its sha256, and the operator's key signs it.
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    try:
        public_key.verify(
            base64.b64decode(manifest["signature"]), canonical(manifest["body"]).encode("utf-8")
        )
        held.append("the manifest's signature verifies")
    except (InvalidSignature, ValueError, KeyError):
        failed.append("the manifest's signature does not verify with this public key")
    body = manifest.get("body", {})
    for name, expected in sorted(body.get("files", {}).items()):
        path = folder / name
        if not path.exists():
            failed.append(f"{name} is listed in the manifest but missing")
        elif _sha256_file(path) != expected:
            failed.append(f"{name} differs from the manifest (sha256)")

    # 2. Every event's hash, in the list of all hashes, and each period event's content.
    hashes = (folder / "event_hashes.txt").read_text("utf-8").split()
    if len(hashes) != body.get("events_total"):
        failed.append(
            f"event_hashes.txt holds {len(hashes)} hashes, the manifest says "
            f"{body.get('events_total')}"
        )
    period_events = 0
    with (folder / "events.jsonl").open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            event = json.loads(line)
            seq = event["seq"]
            previous = GENESIS if seq == 1 else hashes[seq - 2] if seq - 2 < len(hashes) else None
            if event_hash(event) != event["hash"]:
                failed.append(f"events.jsonl line {number}: event {seq} was changed")
            elif seq > len(hashes) or hashes[seq - 1] != event["hash"]:
                failed.append(f"events.jsonl line {number}: event {seq} is not in the trail")
            elif event["prev_hash"] != previous:
                failed.append(f"events.jsonl line {number}: event {seq} is not linked")
            period_events += 1
    held.append(f"{period_events} events of the period recomputed and found in the trail")

    # 3. The signed checkpoints cover the trail.
    report = check_checkpoints(hashes, read_checkpoints(folder / "checkpoints.jsonl"), public_key)
    failed.extend(report.problems)
    if report.checked:
        held.append(
            f"{report.checked} checkpoints match; the latest covers events 1 to {report.covered}"
        )
    if report.covered < len(hashes):
        failed.append(
            f"events {report.covered + 1} to {len(hashes)} are not covered by a checkpoint"
        )

    # 4. Every payout in the bundle is the one its audit event recorded.
    paid = {}
    with (folder / "events.jsonl").open(encoding="utf-8") as stream:
        for line in stream:
            event = json.loads(line)
            if event["type"] == "settlement.paid":
                paid[str(event["outcome"].get("payout"))] = event["outcome"]
    with (folder / "payouts.csv").open(encoding="utf-8", newline="") as stream:
        payouts = list(csv.DictReader(stream))
    for row in payouts:
        recorded = paid.get(row["id"])
        if recorded is None:
            failed.append(f"payout {row['id']} has no settlement.paid event in the period")
        elif Decimal(str(recorded.get("amount"))) != Decimal(row["amount"]):
            failed.append(
                f"payout {row['id']}: {row['amount']} paid, {recorded.get('amount')} recorded"
            )
    held.append(f"{len(payouts)} payouts match their audit events")
    return held, failed


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python verify.py BUNDLE_DIRECTORY\n")
        return 2
    held, failed = verify_bundle(Path(args[0]))
    out = [f"ok      {line}" for line in held] + [f"FAILED  {line}" for line in failed]
    out.append("the bundle verifies" if not failed else "the bundle does NOT verify")
    sys.stdout.write("\n".join(out) + "\n")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
