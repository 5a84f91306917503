"""The auditor's bundle for one accounting period: what an external auditor takes away and
checks on their own machine, with nothing but Python and ``cryptography``.

``fanli audit export --period 2026-03 --out DIR`` writes:

| file | what |
| --- | --- |
| ``events.jsonl`` | the period's audit events, every hashed field plus the hash |
| ``event_hashes.txt`` | the hash of every event in the trail, in order (the checkpoints' leaves) |
| ``checkpoints.jsonl`` | every signed checkpoint, including one made for this export |
| ``journal.csv`` | the period's journal lines |
| ``settlements.csv`` | settlements for the period, and those paid in it |
| ``payouts.csv`` | the payouts posted in the period |
| ``public_key.pem`` | the operator's public key |
| ``verify.py`` | the standalone verifier (``fanli.audit.verifier``, copied unchanged) |
| ``manifest.json`` | every file's sha256, signed with the operator's key |

The period's events are those that occurred in it, plus every event of the settlements in the
bundle. The export records its own event, then signs a checkpoint that covers it.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import String, and_, cast, or_, select
from sqlalchemy.orm import Session

from fanli.audit import verifier
from fanli.audit.models import AuditEvent
from fanli.audit.service import record
from fanli.audit.trail import event_hashes, plain_events
from fanli.kit.errors import InputError, Month, NotFoundError, said
from fanli.ledger.models import AccountingPeriod, JournalEntry, JournalLine, RebatePeriod
from fanli.ledger.periods import parse_code
from fanli.oversight.checkpoints import sign_trail, stored_checkpoints
from fanli.settlements.models import Payout, Settlement
from fanli.users.actor import Actor, Role, require

README = """Fanli audit bundle for period {period}

Check it on your own machine (Python 3.10 or later, and the cryptography package):

    python -m pip install cryptography
    python verify.py .

Compare the public key fingerprint it prints with the one the company gave you.
"""


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([["" if value is None else str(value) for value in row] for row in rows])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_bundle(
    session: Session,
    period_code: str,
    folder: Path,
    key: Ed25519PrivateKey,
    *,
    actor: Actor,
    now: dt.datetime,
) -> dict[str, Any]:
    """Write the bundle for ``period_code`` into ``folder`` (new or empty); the manifest."""
    require(
        actor,
        Role.ADMINISTRATOR,
        Role.INTERNAL_AUDITOR,
        Role.EXTERNAL_AUDITOR,
        to=said("export audit bundles"),
    )
    parse_code(period_code)  # 2026-13 is no month, rather than a period not yet opened
    period = session.scalar(select(AccountingPeriod).where(AccountingPeriod.code == period_code))
    if period is None:
        raise NotFoundError.said(
            "there is no accounting period {period}", period=Month(period_code)
        )
    if folder.exists() and any(folder.iterdir()):
        raise InputError.said_at(
            "{folder} is not empty; a bundle goes into a new folder", folder=str(folder)
        )
    folder.mkdir(parents=True, exist_ok=True)

    entries = select(JournalEntry.id).where(JournalEntry.accounting_period_id == period.id)
    payouts = session.scalars(
        select(Payout).where(Payout.journal_entry_id.in_(entries)).order_by(Payout.id)
    ).all()
    in_bundle = or_(
        and_(Settlement.period_start < period.end, Settlement.period_end > period.start),
        Settlement.id.in_(select(Payout.settlement_id).where(Payout.journal_entry_id.in_(entries))),
    )
    settlements = session.scalars(select(Settlement).where(in_bundle).order_by(Settlement.id)).all()
    lines = session.execute(
        select(JournalEntry, JournalLine, RebatePeriod.agreement_code)
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .join(RebatePeriod, RebatePeriod.of(JournalLine))
        .where(JournalEntry.accounting_period_id == period.id)
        .order_by(JournalEntry.id, JournalLine.id)
    ).all()

    # The export is recorded, then the trail is signed: the bundle's checkpoint covers it.
    record(
        session,
        type="audit.exported",
        actor=actor.code,
        entity_type="accounting_period",
        entity_id=period.code,
        inputs={"period": period.code},
        outcome={
            "payouts": len(payouts),
            "settlements": len(settlements),
            "journal_lines": len(lines),
        },
        now=now,
    )
    sign_trail(session, key, now=now)

    start = dt.datetime.combine(period.start, dt.time(), dt.UTC)
    end = dt.datetime.combine(period.end, dt.time(), dt.UTC)  # a period's end is exclusive
    settled = select(cast(Settlement.id, String)).where(in_bundle)
    in_period = or_(
        and_(AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end),
        and_(AuditEvent.entity_type == "settlement", AuditEvent.entity_id.in_(settled)),
    )
    with (folder / "events.jsonl").open("w", encoding="utf-8") as out:
        for event in plain_events(session, where=in_period):
            out.write(verifier.canonical(event) + "\n")
    hashes = event_hashes(session)
    (folder / "event_hashes.txt").write_text("".join(h + "\n" for h in hashes), "utf-8")
    (folder / "checkpoints.jsonl").write_text(
        "".join(verifier.canonical(c) + "\n" for c in stored_checkpoints(session)), "utf-8"
    )
    _write_csv(
        folder / "journal.csv",
        ["entry_id", "kind", "entry_date", "memo", "line_id", "debit_account",
         "credit_account", "amount", "agreement_code", "version_id"],
        [
            [e.id, e.kind, e.entry_date, e.memo, line.id, line.debit_account,
             line.credit_account, line.amount, agreement_code, line.version_id]
            for e, line, agreement_code in lines
        ],
    )  # fmt: skip
    _write_csv(
        folder / "settlements.csv",
        ["id", "agreement_code", "beneficiary", "period_start", "period_end", "currency",
         "amount", "form", "status", "approved_hash", "proposed_by", "policy_version"],
        [
            [s.id, s.agreement_code, s.beneficiary, s.period_start, s.period_end, s.currency,
             s.amount, s.form, s.status, s.approved_hash, s.proposed_by, s.policy_version]
            for s in settlements
        ],
    )  # fmt: skip
    _write_csv(
        folder / "payouts.csv",
        ["id", "settlement_id", "form", "amount", "document_number", "bank_account_id",
         "paid_by", "paid_at", "journal_entry_id", "approved_hash"],
        [
            [p.id, p.settlement_id, p.form, p.amount, p.document_number, p.bank_account_id,
             p.paid_by, p.paid_at.isoformat(), p.journal_entry_id, p.approved_hash]
            for p in payouts
        ],
    )  # fmt: skip
    (folder / "public_key.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    shutil.copyfile(verifier.__file__, folder / "verify.py")
    (folder / "README.txt").write_text(README.format(period=period.code), "utf-8")

    files = sorted(p.name for p in folder.iterdir())
    body = {
        "period": period.code,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "made_at": now.astimezone(dt.UTC).isoformat(),
        "made_by": actor.code,
        "events_total": len(hashes),
        "key_id": verifier.key_id(key.public_key()),
        "files": {name: _sha256(folder / name) for name in files},
    }
    signature = key.sign(verifier.canonical(body).encode("utf-8"))
    manifest = {"body": body, "signature": base64.b64encode(signature).decode("ascii")}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest
