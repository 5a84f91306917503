"""Publishing the rebate policy."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.agreements.files import read_document
from fanli.audit.service import canonical_json, record
from fanli.compliance.models import PolicyVersion
from fanli.compliance.policy import Policy
from fanli.kit.errors import FanliError, InputError, said
from fanli.users.actor import Actor, Role, require


class PolicyError(FanliError):
    code = "policy_error"


def load_policy(path: Path) -> Policy:
    """Read and validate a policy document; a bad one names the file and the field."""
    data = read_document(path)
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        raise InputError(message, file=str(path), field=field) from None


def publish(session: Session, policy: Policy, *, actor: Actor, now: dt.datetime) -> PolicyVersion:
    """Make ``policy`` the next version, in force from its effective date."""
    require(actor, Role.COMPLIANCE, to=said("publish the rebate policy"))
    today = now.date()
    effective = policy.effective_from or today
    if effective < today:
        raise PolicyError.said(
            "the policy would take effect on {effective}, before today ({today}): a policy "
            "governs decisions from its publication on, never back-dated",
            effective=effective,
            today=today,
        )
    latest = session.scalar(select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(1))
    if latest is not None and effective < latest.effective_from:
        raise PolicyError.said(
            "the new policy takes effect on {effective}, before version {version} ({day})",
            effective=effective,
            version=latest.version,
            day=latest.effective_from,
        )
    policy = policy.model_copy(update={"effective_from": effective})
    document = policy.model_dump(mode="json", by_alias=True)
    sha256 = hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
    number = (session.scalar(select(func.max(PolicyVersion.version))) or 0) + 1
    version = PolicyVersion(
        version=number,
        title=policy.title,
        effective_from=effective,
        text=policy.text,
        document=document,
        sha256=sha256,
        published_by=actor.code,
        published_at=now,
    )
    session.add(version)
    session.flush()
    record(
        session,
        type="policy.published",
        actor=actor.code,
        entity_type="policy_version",
        entity_id=number,
        inputs={"title": policy.title, "effective_from": effective},
        outcome={"version": number, "sha256": sha256},
        now=now,
    )
    return version
